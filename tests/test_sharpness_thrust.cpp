// The random fills and the sharpness estimators on dppf::thrust_executor over Thrust's OpenMP and cpp
// systems (g++, THRUST_DEVICE_SYSTEM_OMP): the same numbers as dppf::host_executor, bit for bit.
#include <doctest/doctest.h>

#include <dppf/executors/host.hpp>
#include <dppf/sharpness.hpp>
#include <dppf/executors/thrust.hpp>

#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/omp/execution_policy.h>

#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "support.hpp"

namespace {

template <class E>
std::vector<double> everything(const E& ex, const std::vector<double>& x) {
  std::vector<double> out;
  const auto n = x.size();
  std::vector<double> buf(n);
  dppf::fill_normal(ex, buf, {5, 1});
  out.insert(out.end(), buf.begin(), buf.end());
  dppf::fill_uniform(ex, buf, {5, 2}, -1.0, 1.0);
  out.insert(out.end(), buf.begin(), buf.end());
  dppf::fill_rademacher(ex, buf, {5, 3});
  out.insert(out.end(), buf.begin(), buf.end());
  // f = 1/2 sum_i (1 + i mod 7) x_i^2, evaluated in a plain loop.
  const auto loss = [](std::span<const double> y) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += 0.5 * static_cast<double>(1 + i % 7) * y[i] * y[i];
    return s;
  };
  const auto loss_and_grad = [&](std::span<const double> y, std::span<double> g) {
    for (std::size_t i = 0; i < y.size(); ++i) g[i] = static_cast<double>(1 + i % 7) * y[i];
    return loss(y);
  };
  out.push_back(dppf::mean_valley(ex, loss, x, {.directions = 3, .delta = 0.1, .two_sided = true, .seed = 2}).value);
  out.push_back(dppf::hessian_top_eigenvalue(ex, loss_and_grad, x, {.max_iters = 4}).value);
  out.push_back(dppf::hessian_trace(ex, loss_and_grad, x, {.samples = 3}).value);
  out.push_back(dppf::sam_sharpness(ex, loss_and_grad, x).value);
  out.push_back(dppf::average_sharpness(ex, loss, x, {.samples = 3}).value);
  const auto ls = dppf::landscape_1d(ex, loss, x, dppf::linspace(-1, 1, 3), dppf::random_directions{.seed = 4});
  out.insert(out.end(), ls.values.begin(), ls.values.end());
  return out;
}

bool bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint64_t>(a[i]) != std::bit_cast<std::uint64_t>(b[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("random fills and sharpness estimators on thrust omp and cpp equal dppf::host_executor bit for bit") {
  const auto x = dppf_test::random_vector<double>(40000, 3, 0.01);
  const auto reference = everything(dppf::host_executor{}, x);
  CHECK(bitwise_equal(everything(dppf::thrust_executor{thrust::omp::par}, x), reference));
  CHECK(bitwise_equal(everything(dppf::thrust_executor{thrust::cpp::par}, x), reference));
}
