#pragma once
// Test bodies shared by every non-host executor (thrust<omp>, thrust<cuda>, cuda). Each body is
// a function template over the executor and a Mirror that moves std::vector data into and out
// of the executor's memory space:
//   Mirror::upload(ex, std::vector<T>) -> buffer in ex's space
//   Mirror::download(ex, buffer)       -> std::vector<T>
// References are a plain double loop (elementwise ops, reductions) or dppf::host_executor (optimizer
// steps). `exact` executors (those running the host order on the host) must match dppf::host_executor
// bitwise; the others within the tolerances stated next to each check.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include <dppf/optimizers/adamw.hpp>
#include <dppf/algorithms.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>

#include "../support.hpp"

namespace dppf_gpu_test {

inline const std::size_t sizes[] = {0, 1, 7, 1000003};
inline const std::size_t offsets[] = {0, 1, 3};  // misaligned starts for the vectorized paths

// Writes a known function of the index into every element (checks that every index is visited
// exactly once, with the right index).
struct index_pattern {
  template <class T>
  DPPF_HOST_DEVICE void operator()(std::size_t i, T& x) const {
    x = static_cast<T>(i % 1024) * T(0.5) - x;
  }
};

// Element i's weight times the product x*y (an indexed reduction).
struct indexed_product {
  template <class T>
  DPPF_HOST_DEVICE double operator()(std::size_t i, const T& x, const T& y) const {
    return static_cast<double>(i % 7) * static_cast<double>(x) * static_cast<double>(y);
  }
};

template <class T>
std::vector<T> slice(const std::vector<T>& v, std::size_t off, std::size_t n) {
  return {v.begin() + static_cast<std::ptrdiff_t>(off), v.begin() + static_cast<std::ptrdiff_t>(off + n)};
}

// axpy, the indexed transform and the reductions, on every element of sub-buffers at odd
// offsets, against plain double loops.
template <class Mirror, class T, class E>
void check_elementwise(const E& ex, bool exact) {
  std::uint64_t seed = 100;
  for (const std::size_t n : sizes)
    for (const std::size_t off : offsets) {
      CAPTURE(n);
      CAPTURE(off);
      const auto x0 = dppf_test::random_vector<T>(n + off, ++seed);
      const auto y0 = dppf_test::random_vector<T>(n + off, ++seed);
      auto x = Mirror::upload(ex, x0);
      auto y = Mirror::upload(ex, y0);
      auto xs = dppf::view(x).subspan(off, n);
      auto ys = dppf::view(y).subspan(off, n);
      const T a = T(0.75);

      dppf::axpy(ex, a, xs, ys);
      ex.synchronize();
      const auto got = Mirror::download(ex, y);
      // y[i] + a x[i]: one rounding, or two without FMA contraction: |err| <= 2 eps (|a x| + |y|).
      const double eps = std::numeric_limits<T>::epsilon();
      std::size_t bad = 0;
      for (std::size_t i = 0; i < off; ++i) bad += got[i] != y0[i];  // outside the slice: untouched
      for (std::size_t i = 0; i < n; ++i) {
        const double xi = x0[off + i], yi = y0[off + i];
        const double ref = yi + double(a) * xi;
        const double tol = 2 * eps * (std::abs(double(a) * xi) + std::abs(yi));
        bad += !(std::abs(double(got[off + i]) - ref) <= tol);
      }
      CHECK(bad == 0);
      if (exact) {  // the same roundings as dppf::host_executor, element for element
        auto want = slice(y0, off, n);
        dppf::axpy(dppf::host_executor{}, a, std::span<const T>(slice(x0, off, n)), want);
        CHECK(slice(got, off, n) == want);
      }

      ex.transform_indexed(index_pattern{}, xs);
      ex.synchronize();
      const auto gx = Mirror::download(ex, x);
      bad = 0;
      for (std::size_t i = 0; i < n; ++i) bad += gx[off + i] != static_cast<T>(i % 1024) * T(0.5) - x0[off + i];
      CHECK(bad == 0);

      // Reductions in double: each product of floats is exact in double, so the only error is
      // the summation's: |err| <= n eps_double sum |terms|.
      const auto xr = slice(gx, off, n), yr = slice(got, off, n);
      double ref_dot = 0, ref_abs = 0, ref_idx = 0, ref_idx_abs = 0, ref_sum = 0, ref_sum_abs = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double p = double(xr[i]) * double(yr[i]);
        ref_dot += p;
        ref_abs += std::abs(p);
        ref_idx += double(i % 7) * p;
        ref_idx_abs += std::abs(double(i % 7) * p);
        ref_sum += xr[i];
        ref_sum_abs += std::abs(double(xr[i]));
      }
      const double deps = std::numeric_limits<double>::epsilon() * double(n + 1);
      const double dot = dppf::dot(ex, xs, ys);
      const double idx = ex.transform_reduce_indexed(indexed_product{}, xs, ys);
      const double sum = dppf::sum(ex, xs);
      CHECK(std::abs(dot - ref_dot) <= deps * ref_abs);
      CHECK(std::abs(idx - ref_idx) <= deps * ref_idx_abs);
      CHECK(std::abs(sum - ref_sum) <= deps * ref_sum_abs);
      if (exact) {
        const dppf::host_executor h;
        CHECK(dot == dppf::dot(h, std::span<const T>(xr), std::span<const T>(yr)));
        CHECK(idx == h.transform_reduce_indexed(indexed_product{}, std::span<const T>(xr), std::span<const T>(yr)));
        CHECK(sum == dppf::sum(h, std::span<const T>(xr)));
      }
    }
}

// Compares every element of a buffer after the same steps on ex and on dppf::host_executor: bitwise when
// exact; otherwise within 8 eps (|host value| + rms of the host buffer). A device contracts
// a * b + c into one FMA (one rounding instead of two), so each operation may differ by an
// ulp of its operands, not of its result: where a moment cancels (m * beta + (1 - beta) g
// close to 0) the difference is an ulp of the buffer's scale, hence the rms term.
template <class Mirror, class T, class E, class DeviceBuf>
std::size_t count_mismatches(const E& ex, const DeviceBuf& got, const std::vector<T>& want, bool exact) {
  const auto g = Mirror::download(ex, got);
  REQUIRE(g.size() == want.size());
  const double eps = std::numeric_limits<T>::epsilon();
  double sq = 0;
  for (const T w : want) sq += double(w) * double(w);
  const double rms = want.empty() ? 0.0 : std::sqrt(sq / double(want.size()));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (exact)
      bad += g[i] != want[i];
    else
      bad += !(std::abs(double(g[i]) - double(want[i])) <= 8 * eps * (std::abs(double(want[i])) + rms));
  }
  return bad;
}

// Three steps of an optimizer on ex and on dppf::host_executor from the same inputs.
template <class Mirror, class T, class E, class Opt>
void check_optimizer(const E& ex, const Opt& opt, bool exact, std::size_t n, std::uint64_t seed) {
  CAPTURE(n);
  const dppf::host_executor h;
  auto p_host = dppf_test::random_vector<T>(n, seed);
  auto p = Mirror::upload(ex, p_host);
  auto s_host = opt.template init<T>(h, n);
  auto s = opt.template init<T>(ex, n);
  for (int k = 0; k < 3; ++k) {
    const auto g_host = dppf_test::random_vector<T>(n, seed + 10 + std::uint64_t(k));
    const auto g = Mirror::upload(ex, g_host);
    opt.step(h, p_host, g_host, s_host);
    opt.step(ex, p, g, s);
  }
  ex.synchronize();
  CHECK(s.step == s_host.step);
  CHECK(count_mismatches<Mirror, T>(ex, p, p_host, exact) == 0);
  // Every state buffer too, by name.
  std::vector<std::vector<T>> want;
  s_host.for_each_buffer([&](const char*, auto& b) { want.emplace_back(b.begin(), b.end()); });
  std::size_t k = 0;
  s.for_each_buffer([&](const char* name, auto& b) {
    CAPTURE(name);
    REQUIRE(k < want.size());
    CHECK(count_mismatches<Mirror, T>(ex, b, want[k++], exact) == 0);
  });
  CHECK(k == want.size());
}

template <class Mirror, class T, class E>
void check_optimizers(const E& ex, bool exact) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1000003}}) {
    check_optimizer<Mirror, T>(ex, dppf::sgd{{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}}, exact,
                               n, 7);
    check_optimizer<Mirror, T>(ex, dppf::sgd{{.lr = 0.05, .momentum = 0.5, .dampening = 0.25}}, exact, n, 8);
    check_optimizer<Mirror, T>(ex, dppf::sgd{{.lr = 0.01}}, exact, n, 9);
    check_optimizer<Mirror, T>(ex, dppf::adamw{{.lr = 1e-2, .weight_decay = 0.1}}, exact, n, 10);
    check_optimizer<Mirror, T>(ex, dppf::adamw{{.lr = 1e-3, .amsgrad = true, .maximize = true}}, exact, n, 11);
  }
}

// Buffers of different lengths are rejected before any work, naming both sizes.
template <class Mirror, class T, class E>
void check_size_mismatch(const E& ex) {
  auto x = Mirror::upload(ex, std::vector<T>(5, T(1)));
  auto y = Mirror::upload(ex, std::vector<T>(4, T(2)));
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::axpy(ex, T(1), x, y); }, "different sizes (5 and 4)");
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)dppf::dot(ex, x, y); }, "different sizes (5 and 4)");
  ex.synchronize();
  const auto y_after = Mirror::download(ex, y);
  CHECK(y_after == std::vector<T>(4, T(2)));  // nothing changed
}

}  // namespace dppf_gpu_test
