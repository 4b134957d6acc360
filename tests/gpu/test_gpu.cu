// The GPU executors and the single-GPU group, against the host on random inputs: the test
// bodies of executor_cases.hpp (odd sizes, misaligned offsets, every element; tolerances stated
// there), plus what only the device has: 64-bit sizes, multi-tensor apply, determinism of the
// reductions, and dppf::device_group.

#include <dppf/executors/cuda.cuh>
#include <dppf/communicators/device_group.cuh>
#include <dppf/executors/thrust.hpp>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/trainer.hpp>
#include <dppf/consensus/diloco.hpp>
#include <dppf/consensus/elastic.hpp>
#include <dppf/consensus/grawa.hpp>
#include <dppf/consensus/leader.hpp>
#include <dppf/consensus/local_sgd.hpp>
#include <dppf/consensus/pull_push.hpp>

#include <thrust/system/cuda/execution_policy.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gpu/device_mirror.hpp"
#include "gpu/executor_cases.hpp"

using dppf_gpu_test::device_mirror;

namespace {

// One stream per test, destroyed at the end.
struct stream_guard {
  cudaStream_t s = nullptr;
  stream_guard() { dppf::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~stream_guard() { cudaStreamDestroy(s); }
};

auto thrust_on(cudaStream_t s) { return dppf::thrust_executor{thrust::cuda::par_nosync.on(s)}; }

static_assert(dppf::executor<dppf::cuda_executor>);
static_assert(dppf::executor<decltype(thrust_on(nullptr))>);
static_assert(std::same_as<decltype(thrust_on(nullptr))::memory_space, dppf::device_space>);
static_assert(std::same_as<dppf::buffer_t<dppf::cuda_executor, float>, dppf::device_array<float>>);
static_assert(dppf::communicator<dppf::device_communicator>);

struct index_value {
  DPPF_HOST_DEVICE void operator()(std::size_t i, float& x) const { x = static_cast<float>(i % 8); }
};
struct as_double {
  DPPF_HOST_DEVICE double operator()(const float& x) const { return x; }
};

}  // namespace

TEST_CASE("cuda executor matches a double loop on every element") {
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  dppf_gpu_test::check_elementwise<device_mirror, float>(ex, false);
  dppf_gpu_test::check_elementwise<device_mirror, double>(ex, false);
}

TEST_CASE("thrust cuda executor matches a double loop on every element") {
  stream_guard s;
  const auto ex = thrust_on(s.s);
  dppf_gpu_test::check_elementwise<device_mirror, float>(ex, false);
  dppf_gpu_test::check_elementwise<device_mirror, double>(ex, false);
}

TEST_CASE("cuda executor sgd and adamw steps match dppf::host_executor") {
  stream_guard s;
  dppf_gpu_test::check_optimizers<device_mirror, float>(dppf::cuda_executor{s.s}, false);
  dppf_gpu_test::check_optimizers<device_mirror, double>(dppf::cuda_executor{s.s}, false);
}

TEST_CASE("thrust cuda executor sgd and adamw steps match dppf::host_executor") {
  stream_guard s;
  dppf_gpu_test::check_optimizers<device_mirror, float>(thrust_on(s.s), false);
}

TEST_CASE("gpu executors reject buffers of different sizes") {
  stream_guard s;
  dppf_gpu_test::check_size_mismatch<device_mirror, float>(dppf::cuda_executor{s.s});
  dppf_gpu_test::check_size_mismatch<device_mirror, float>(thrust_on(s.s));
}

TEST_CASE("cuda reductions give the same bits run to run") {
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  const auto x = dppf::to_device(dppf_test::random_vector<float>(3000017, 21), s.s);
  const double first = dppf::squared_norm(ex, x);
  for (int k = 0; k < 5; ++k) CHECK(dppf::squared_norm(ex, x) == first);
}

TEST_CASE("cuda reductions give the same bits for the same data at an aligned and a misaligned offset") {
  // Offset 0 takes the vector loads, offset 1 the scalar ones: both must add the same elements
  // in the same order (a different partition changed the last bits).
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  for (const std::size_t n : {std::size_t{1000}, std::size_t{3000017}}) {
    CAPTURE(n);
    const auto h = dppf_test::random_vector<float>(n, 31);
    const auto hy = dppf_test::random_vector<float>(n, 32);
    std::vector<float> shifted(n + 1, 0.0f), shifted_y(n + 1, 0.0f);
    std::copy(h.begin(), h.end(), shifted.begin() + 1);
    std::copy(hy.begin(), hy.end(), shifted_y.begin() + 1);
    const auto a = dppf::to_device(h, s.s), ay = dppf::to_device(hy, s.s);
    const auto b = dppf::to_device(shifted, s.s), by = dppf::to_device(shifted_y, s.s);
    const auto bs = dppf::view(b).subspan(1, n), bys = dppf::view(by).subspan(1, n);
    CHECK(dppf::detail::cuda_aligned(4, a.data()));
    CHECK_FALSE(dppf::detail::cuda_aligned(4, bs.data()));
    CHECK(dppf::squared_norm(ex, a) == dppf::squared_norm(ex, bs));
    CHECK(dppf::sum(ex, a) == dppf::sum(ex, bs));
    CHECK(dppf::dot(ex, a, ay) == dppf::dot(ex, bs, bys));
    const auto hd = dppf_test::random_vector<double>(n, 33);
    std::vector<double> shifted_d(n + 1, 0.0);
    std::copy(hd.begin(), hd.end(), shifted_d.begin() + 1);
    const auto ad = dppf::to_device(hd, s.s), bd = dppf::to_device(shifted_d, s.s);
    CHECK(dppf::squared_norm(ex, ad) == dppf::squared_norm(ex, dppf::view(bd).subspan(1, n)));
  }
}

TEST_CASE("cuda errors reported or deliberately ignored are not reported again by a later launch") {
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  // An allocation that cannot succeed: reported once, as its own cuda_error ...
  CHECK_THROWS_AS((void)dppf::device_array<float>(std::size_t{1} << 60, s.s), dppf::cuda_error);
  CHECK(cudaGetLastError() == cudaSuccess);
  // ... so the next launch check passes.
  auto x = ex.allocate<float>(1000);
  CHECK_NOTHROW(ex.transform_indexed(index_value{}, x));
  // A result ignored on purpose (as a failed cudaFreeAsync is) is cleared too.
  dppf::detail::cuda_discard(cudaSetDevice(1 << 20));
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK_NOTHROW(ex.transform_indexed(index_value{}, x));
  ex.synchronize();
}

TEST_CASE("device_group runs every worker on the stream's device") {
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  const int target = devices - 1;  // the last GPU: k > 0 where there are several
  dppf::cuda_check(cudaSetDevice(target), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  dppf::cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  dppf::cuda_check(cudaSetDevice(0), "cudaSetDevice");  // the group must not depend on the caller's device
  {
    dppf::device_group group(3, stream);
    CHECK(group.device() == target);
    std::vector<int> current(3, -1);
    std::vector<float> got(3, 0.0f);
    group.run([&](dppf::device_communicator c) {
      const auto r = std::size_t(c.rank());
      dppf::cuda_check(cudaGetDevice(&current[r]), "cudaGetDevice");
      auto x = dppf::to_device(std::vector<float>(5, float(r + 1)), stream);
      c.all_reduce(x, dppf::reduce_op::sum);
      got[r] = dppf::to_host(x, stream)[4];
    });
    CHECK(current == std::vector<int>(3, target));
    CHECK(got == std::vector<float>(3, 6.0f));
  }
  cudaStreamDestroy(stream);
}

TEST_CASE("cuda executor handles buffers beyond 2^31 elements") {
  const std::size_t n = (std::size_t{1} << 31) + 7;
  std::size_t free_bytes = 0, total = 0;
  dppf::cuda_check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  if (free_bytes < n * sizeof(float) + (std::size_t{1} << 30)) {
    MESSAGE("skipped: needs " << n * sizeof(float) / (1 << 20) << " MiB of free device memory");
    return;
  }
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  auto x = ex.allocate<float>(n);
  ex.transform_indexed(index_value{}, x);
  // Sum of i % 8 over [0, n): whole periods of 28 plus the tail 0 + 1 + ... + 6.
  const double want = double(n / 8) * 28.0 + 21.0;
  CHECK(ex.transform_reduce(as_double{}, x) == want);
  std::vector<float> tail(16);
  dppf::cuda_check(cudaMemcpy(tail.data(), x.data() + (n - 16), 16 * sizeof(float), cudaMemcpyDeviceToHost), "copy");
  for (std::size_t k = 0; k < 16; ++k) CHECK(tail[k] == float((n - 16 + k) % 8));
}

TEST_CASE("cuda multi-tensor apply updates every tensor of a list like per-tensor host steps") {
  stream_guard s;
  const dppf::cuda_executor ex{s.s};
  // Odd sizes, an empty tensor, and more tensors than one launch holds.
  std::vector<std::size_t> sizes = {1, 7, 0, 1000003, 33};
  for (int k = 0; k < 300; ++k) sizes.push_back(std::size_t(k % 17 + 1));
  const dppf::detail::sgd_update<float> f{-0.1f, 0.9f, 1.0f, 5e-4f, true, false, false};
  std::vector<dppf::device_array<float>> p, g, m;
  std::vector<std::vector<float>> hp, hg, hm;
  std::uint64_t seed = 500;
  for (const std::size_t n : sizes) {
    hp.push_back(dppf_test::random_vector<float>(n, ++seed));
    hg.push_back(dppf_test::random_vector<float>(n, ++seed));
    hm.push_back(dppf_test::random_vector<float>(n, ++seed));
    p.push_back(dppf::to_device(hp.back(), s.s));
    g.push_back(dppf::to_device(hg.back(), s.s));
    m.push_back(dppf::to_device(hm.back(), s.s));
  }
  std::vector<dppf::device_span<float>> lp, lm;
  std::vector<dppf::device_span<const float>> lg;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    lp.push_back(dppf::view(p[t]));
    lg.push_back(dppf::view(std::as_const(g[t])));
    lm.push_back(dppf::view(m[t]));
  }
  ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(lp), std::span<const dppf::device_span<const float>>(lg),
                          std::span<const dppf::device_span<float>>(lm));
  ex.synchronize();
  const dppf::host_executor h;
  std::size_t bad = 0;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    h.transform(f, hp[t], std::as_const(hg[t]), hm[t]);
    // The tolerance of executor_cases.hpp: 8 eps (|host value| + rms of the host buffer).
    bad += dppf_gpu_test::count_mismatches<device_mirror, float>(ex, p[t], hp[t], false);
    bad += dppf_gpu_test::count_mismatches<device_mirror, float>(ex, m[t], hm[t], false);
  }
  CHECK(bad == 0);
  // A tensor whose buffers disagree is named.
  std::vector<dppf::device_span<float>> short_m = lm;
  short_m[3] = short_m[3].subspan(0, 5);
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(lp),
                                std::span<const dppf::device_span<const float>>(lg),
                                std::span<const dppf::device_span<float>>(short_m));
      },
      "tensor 3");
  // A bad tensor in a later launch's group is found before the first launch: nothing changes.
  REQUIRE(sizes.size() > 2 * dppf::detail::cuda_table_capacity<float, const float, float>);
  const std::size_t late = sizes.size() - 1;
  short_m = lm;
  short_m[late] = short_m[late].subspan(0, 0);
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(lp),
                                std::span<const dppf::device_span<const float>>(lg),
                                std::span<const dppf::device_span<float>>(short_m));
      },
      "tensor " + std::to_string(late));
  ex.synchronize();
  bad = 0;
  for (std::size_t t = 0; t < sizes.size(); ++t) bad += dppf_gpu_test::count_mismatches<device_mirror, float>(ex, p[t], hp[t], false);
  CHECK(bad == 0);
}

TEST_CASE("device_group averages device buffers in rank order like a double loop") {
  const int m = 3;
  const std::size_t n = 100003;
  std::vector<std::vector<float>> in;
  for (int r = 0; r < m; ++r) in.push_back(dppf_test::random_vector<float>(n, 900 + std::uint64_t(r)));
  std::vector<float> want(n);
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int r = 0; r < m; ++r) acc += in[std::size_t(r)][i];
    want[i] = static_cast<float>(acc * (1.0 / m));
  }
  stream_guard s;
  dppf::device_group group(m, s.s);
  std::vector<std::vector<float>> got(m), bcast(m);
  std::vector<double> scalars(m);
  group.run([&](dppf::device_communicator c) {
    const auto r = std::size_t(c.rank());
    const dppf::cuda_executor ex{s.s};
    auto x = dppf::to_device(in[r], s.s);
    auto y = ex.allocate<float>(n);
    c.all_reduce(x, y, dppf::reduce_op::avg);
    got[r] = dppf::to_host(y, s.s);
    c.broadcast(x, 2);
    bcast[r] = dppf::to_host(x, s.s);
    scalars[r] = c.all_reduce(double(r + 1), dppf::reduce_op::max);
  });
  for (int r = 0; r < m; ++r) {
    CHECK(got[std::size_t(r)] == want);
    CHECK(bcast[std::size_t(r)] == in[2]);
    CHECK(scalars[std::size_t(r)] == 3.0);
  }
}

TEST_CASE("device_group rejects mismatched sizes on every rank") {
  stream_guard s;
  dppf::device_group group(2, s.s);
  std::vector<int> raised(2, 0);
  group.run([&](dppf::device_communicator c) {
    auto x = dppf::cuda_executor{s.s}.allocate<float>(c.rank() == 0 ? 4 : 5);
    try {
      c.all_reduce(x, dppf::reduce_op::sum);
    } catch (const std::invalid_argument& e) {
      raised[std::size_t(c.rank())] = std::string(e.what()).find("rank 0 has 4 elements") != std::string::npos;
    }
  });
  CHECK(raised == std::vector<int>{1, 1});
}

TEST_CASE("device_group: one rank's bad arguments raise on every rank, none waits") {
  stream_guard s;
  // A short timeout: a rank left waiting at a barrier would fail with a timeout, not pass.
  dppf::device_group group(2, s.s, {.timeout = std::chrono::seconds(20)});
  std::vector<std::string> caught(2);
  group.run([&](dppf::device_communicator c) {
    auto x = dppf::cuda_executor{s.s}.allocate<float>(4);
    auto y = dppf::cuda_executor{s.s}.allocate<float>(c.rank() == 0 ? 5 : 4);
    try {
      c.all_reduce(x, y, dppf::reduce_op::avg);
    } catch (const std::exception& e) {
      caught[std::size_t(c.rank())] = e.what();
    }
    // The group is usable afterwards: the barriers stayed aligned.
    c.all_reduce(x, dppf::reduce_op::sum);
  });
  CHECK(caught[0].find("output has 5 elements, expected 4") != std::string::npos);
  CHECK(caught[1].find("rank 0 rejected its arguments") != std::string::npos);
}

namespace {

// Runs `steps` trainer steps of M workers with rule `make_rule()` on (threads, host) and on
// (device_group, cuda), from the same per-rank parameters and gradients (the gradient of
// 0.5 |x - target_r|^2 plus noise, computed on the host and uploaded) and five non-trainable
// statistics averaged at every sync, and returns each rank's final parameters followed by its
// statistics, from both.
template <class Optimizer, class MakeRule>
std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> run_both(const Optimizer& opt, MakeRule make_rule,
                                                                                    int m, std::size_t n, int steps) {
  std::vector<std::vector<float>> start, host_out(static_cast<std::size_t>(m)), dev_out(static_cast<std::size_t>(m));
  for (int r = 0; r < m; ++r) start.push_back(dppf_test::random_vector<float>(n, 70 + std::uint64_t(r)));
  auto grads = [&](int r, int k, const std::vector<float>& x) {
    auto g = dppf_test::random_vector<float>(n, 1000 + std::uint64_t(r * 100 + k), 0.01);
    for (std::size_t i = 0; i < n; ++i) g[i] += x[i] - float(r) * 0.1f;
    return g;
  };
  dppf::thread_group(m).run([&](dppf::thread_communicator comm) {
    const auto r = std::size_t(comm.rank());
    std::vector<float> x = start[r], stats = dppf_test::random_vector<float>(5, 60 + r);
    dppf::trainer tr{opt, make_rule(), comm, dppf::host_executor{}, {.tau = 2}};
    for (int k = 0; k < steps; ++k) tr.step(x, grads(comm.rank(), k, x), 1.0 + comm.rank(), stats);
    x.insert(x.end(), stats.begin(), stats.end());
    host_out[r] = x;
  });
  stream_guard s;
  dppf::device_group(m, s.s).run([&](dppf::device_communicator comm) {
    const auto r = std::size_t(comm.rank());
    const dppf::cuda_executor ex{s.s};
    auto x = dppf::to_device(start[r], s.s);
    auto stats = dppf::to_device(dppf_test::random_vector<float>(5, 60 + r), s.s);
    dppf::trainer tr{opt, make_rule(), comm, ex, {.tau = 2}};
    for (int k = 0; k < steps; ++k) {
      // The host computes the gradient from the device's current parameters.
      const auto g = dppf::to_device(grads(comm.rank(), k, dppf::to_host(x, s.s)), s.s);
      tr.step(x, g, 1.0 + comm.rank(), stats);
    }
    dev_out[r] = dppf::to_host(x, s.s);
    const auto st = dppf::to_host(stats, s.s);
    dev_out[r].insert(dev_out[r].end(), st.begin(), st.end());
  });
  return {host_out, dev_out};
}

template <class Optimizer, class MakeRule>
void check_trainer(const char* name, const Optimizer& opt, MakeRule make_rule) {
  CAPTURE(name);
  const auto [host_out, dev_out] = run_both(opt, make_rule, 3, 10007, 6);
  // Six optimizer steps and three syncs: per-operation FMA differences (an ulp of the operands)
  // and the reductions' different summation order (double, ~1e-16 relative) compound to a few
  // dozen ulps at most; the check allows 1e-5 (|x| + rms(x)), about 80 ulps of the scale.
  std::size_t bad = 0;
  for (std::size_t r = 0; r < host_out.size(); ++r) {
    double sq = 0;
    for (const float v : host_out[r]) sq += double(v) * double(v);
    const double rms = std::sqrt(sq / double(host_out[r].size()));
    for (std::size_t i = 0; i < host_out[r].size(); ++i)
      bad += !(std::abs(double(dev_out[r][i]) - double(host_out[r][i])) <= 1e-5 * (std::abs(double(host_out[r][i])) + rms));
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("trainer on device_group and the cuda executor matches threads and host for every rule") {
  const dppf::sgd sgd{{.lr = 0.1, .momentum = 0.9}};
  check_trainer("pull_push", sgd, [] { return dppf::pull_push{{.alpha = 0.1, .lambda = 0.05}}; });
  check_trainer("local_sgd", sgd, [] { return dppf::local_sgd{}; });
  check_trainer("elastic", sgd, [] { return dppf::elastic{}; });
  check_trainer("leader", sgd, [] { return dppf::leader{}; });
  check_trainer("grawa", sgd, [] { return dppf::grawa{}; });
  check_trainer("diloco", sgd, [] { return dppf::diloco{}; });
  check_trainer("pull_push with adamw", dppf::adamw{{.lr = 1e-2}}, [] { return dppf::pull_push{{.alpha = 0.5, .lambda = 0.01}}; });
}
