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
#include <cmath>
#include <limits>
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

// A pattern that depends on the high index bits too: an index truncated to 32 (or 31) bits
// writes the wrong value, not just the right value at the wrong place.
DPPF_HOST_DEVICE inline float high_bits_pattern(std::size_t i) { return static_cast<float>((i >> 28) * 8 + i % 8); }
struct index_value {
  DPPF_HOST_DEVICE void operator()(std::size_t i, float& x) const { x = high_bits_pattern(i); }
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

namespace {

// torch.optim.SGD and torch.optim.AdamW on one buffer, in double and written out from PyTorch's
// documented algorithms (not from dppf's functors): the independent reference of the GPU steps.
// buffers() lists the state in the order the optimizer's for_each_buffer names it.
struct sgd_reference {
  explicit sgd_reference(dppf::sgd_options options) : o(options) {}
  dppf::sgd_options o;
  std::vector<double> m;
  long step = 0;
  void operator()(std::vector<double>& p, const std::vector<double>& g) {
    if (o.momentum != 0 && m.empty()) m.assign(p.size(), 0.0);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double d = (o.maximize ? -g[i] : g[i]) + o.weight_decay * p[i];
      if (o.momentum != 0) {
        m[i] = step == 0 ? d : o.momentum * m[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * m[i] : m[i];
      }
      p[i] -= o.lr * d;
    }
    ++step;
  }
  std::vector<std::vector<double>> buffers() const { return m.empty() ? std::vector<std::vector<double>>{} : std::vector<std::vector<double>>{m}; }
};

struct adamw_reference {
  explicit adamw_reference(dppf::adamw_options options) : o(options) {}
  dppf::adamw_options o;
  std::vector<double> m, v, vmax;
  long step = 0;
  void operator()(std::vector<double>& p, const std::vector<double>& g) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0), vmax.assign(o.amsgrad ? p.size() : 0, 0.0);
    ++step;
    const double bc1 = 1 - std::pow(o.beta1, double(step)), bc2 = 1 - std::pow(o.beta2, double(step));
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double gi = o.maximize ? -g[i] : g[i];
      p[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      double second = v[i];
      if (o.amsgrad) second = vmax[i] = std::max(vmax[i], v[i]);
      p[i] -= o.lr / bc1 * m[i] / (std::sqrt(second) / std::sqrt(bc2) + o.eps);
    }
  }
  std::vector<std::vector<double>> buffers() const {
    std::vector<std::vector<double>> b{m, v};
    if (o.amsgrad) b.push_back(vmax);
    return b;
  }
};

// Elements of got (in T) farther from the double reference than 16 eps_T (|ref| + rms(ref)):
// a few roundings of T per operation and step, the rms term for moments that cancel.
template <class T>
std::size_t far_from(const std::vector<T>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double sq = 0;
  for (const double r : ref) sq += r * r;
  const double rms = ref.empty() ? 0.0 : std::sqrt(sq / double(ref.size()));
  const double eps = std::numeric_limits<T>::epsilon();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += !(std::abs(double(got[i]) - ref[i]) <= 16 * eps * (std::abs(ref[i]) + rms));
  return bad;
}

// Three steps on the GPU against the double reference, parameters and every state buffer.
template <class T, class Opt, class Ref>
void check_against_double(cudaStream_t s, const Opt& opt, Ref ref, std::size_t n, std::uint64_t seed) {
  CAPTURE(n);
  const dppf::cuda_executor ex{s};
  const auto p0 = dppf_test::random_vector<T>(n, seed);
  std::vector<double> p_ref(p0.begin(), p0.end());
  auto p = dppf::to_device(p0, s);
  auto state = opt.template init<T>(ex, n);
  for (int k = 0; k < 3; ++k) {
    const auto g = dppf_test::random_vector<T>(n, seed + 10 + std::uint64_t(k));
    opt.step(ex, p, dppf::to_device(g, s), state);
    ref(p_ref, std::vector<double>(g.begin(), g.end()));
  }
  CHECK(far_from(dppf::to_host(p, s), p_ref) == 0);
  const auto want = ref.buffers();
  std::size_t k = 0;
  state.for_each_buffer([&](const char* name, auto& b) {
    CAPTURE(name);
    REQUIRE(k < want.size());
    CHECK(far_from(dppf::to_host(b, s), want[k++]) == 0);
  });
  CHECK(k == want.size());
}

template <class T>
void check_optimizers_against_double(cudaStream_t s) {
  for (const std::size_t n : {std::size_t{7}, std::size_t{1000003}}) {
    const dppf::sgd_options sgd_cases[] = {{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true},
                                           {.lr = 0.05, .momentum = 0.5, .dampening = 0.25, .maximize = true},
                                           {.lr = 0.01}};
    std::uint64_t seed = 700;
    for (const auto& o : sgd_cases) check_against_double<T>(s, dppf::sgd{o}, sgd_reference{o}, n, ++seed);
    const dppf::adamw_options adamw_cases[] = {{.lr = 1e-2, .weight_decay = 0.1}, {.lr = 1e-3, .amsgrad = true, .maximize = true}};
    for (const auto& o : adamw_cases) check_against_double<T>(s, dppf::adamw{o}, adamw_reference{o}, n, ++seed);
  }
}

}  // namespace

TEST_CASE("cuda executor sgd and adamw steps match a double-precision replay of PyTorch's algorithms") {
  stream_guard s;
  check_optimizers_against_double<float>(s.s);
  check_optimizers_against_double<double>(s.s);
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
  // Closed form: each of the 8 runs of 2^28 elements with i >> 28 = b adds 8 b 2^28 and 2^25
  // periods of 0 + 1 + ... + 7 = 28; the 7 elements past 2^31 add 8 * 8 * 7 and 0 + ... + 6.
  // Every term and partial sum is an integer below 2^53: exact in double.
  double want = 0;
  for (int b = 0; b < 8; ++b) want += 8.0 * b * double(std::size_t{1} << 28) + double(std::size_t{1} << 25) * 28.0;
  want += 8.0 * 8.0 * 7.0 + 21.0;
  CHECK(ex.transform_reduce(as_double{}, x) == want);
  // Elements around every boundary of the high bits, and the last ones.
  std::vector<std::size_t> probes;
  for (std::size_t b = 1; b <= 8; ++b)
    for (std::size_t k = 0; k < 4; ++k) probes.push_back((b << 28) - 2 + k);
  for (std::size_t k = 1; k <= 4; ++k) probes.push_back(n - k);
  for (const std::size_t i : probes) {
    if (i >= n) continue;
    float got = 0;
    dppf::cuda_check(cudaMemcpy(&got, x.data() + i, sizeof(float), cudaMemcpyDeviceToHost), "copy");
    CAPTURE(i);
    CHECK(got == high_bits_pattern(i));
  }
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

TEST_CASE("trainer on device_group and the cuda executor matches a double-precision LocalSGD replay") {
  // M workers, SGD with momentum, a sync (the mean of the parameters, and of five statistics)
  // after every second step: replayed in double with plain loops, each worker's gradient
  // computed from its own parameters (0.5 |x - target_r|^2 plus fixed noise).
  const int m = 3, steps = 6, tau = 2;
  const std::size_t n = 10007;
  const dppf::sgd_options o{.lr = 0.1, .momentum = 0.9};
  std::vector<std::vector<float>> start, noise_of;
  for (int r = 0; r < m; ++r) start.push_back(dppf_test::random_vector<float>(n, 70 + std::uint64_t(r)));
  for (int k = 0; k < m * steps; ++k) noise_of.push_back(dppf_test::random_vector<float>(n, 1000 + std::uint64_t(k), 0.01));
  const auto grad = [&](int r, int k, const auto& x) {
    std::vector<double> g(n);
    for (std::size_t i = 0; i < n; ++i) g[i] = double(x[i]) - 0.1 * r + noise_of[std::size_t(r * steps + k)][i];
    return g;
  };
  std::vector<std::vector<float>> stats0;
  for (int r = 0; r < m; ++r) stats0.push_back(dppf_test::random_vector<float>(5, 60 + std::uint64_t(r)));

  // The reference.
  std::vector<std::vector<double>> x(static_cast<std::size_t>(m)), stats(static_cast<std::size_t>(m));
  std::vector<sgd_reference> opt(std::size_t(m), sgd_reference{o});
  for (int r = 0; r < m; ++r) {
    x[std::size_t(r)].assign(start[std::size_t(r)].begin(), start[std::size_t(r)].end());
    stats[std::size_t(r)].assign(stats0[std::size_t(r)].begin(), stats0[std::size_t(r)].end());
  }
  for (int k = 0; k < steps; ++k) {
    for (int r = 0; r < m; ++r) opt[std::size_t(r)](x[std::size_t(r)], grad(r, k, x[std::size_t(r)]));
    if ((k + 1) % tau != 0) continue;
    for (auto* v : {&x, &stats}) {
      std::vector<double> mean((*v)[0].size(), 0.0);
      for (const auto& xr : *v)
        for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += xr[i] / m;
      for (auto& xr : *v) xr = mean;
    }
  }

  // The GPU run.
  std::vector<std::vector<float>> got_x(static_cast<std::size_t>(m)), got_stats(static_cast<std::size_t>(m));
  stream_guard s;
  dppf::device_group(m, s.s).run([&](dppf::device_communicator comm) {
    const int r = comm.rank();
    const dppf::cuda_executor ex{s.s};
    auto xd = dppf::to_device(start[std::size_t(r)], s.s);
    auto st = dppf::to_device(stats0[std::size_t(r)], s.s);
    dppf::trainer tr{dppf::sgd{o}, dppf::local_sgd{}, comm, ex, {.tau = tau}};
    for (int k = 0; k < steps; ++k) {
      const auto g = grad(r, k, dppf::to_host(xd, s.s));
      tr.step(xd, dppf::to_device(std::vector<float>(g.begin(), g.end()), s.s), 1.0, st);
    }
    got_x[std::size_t(r)] = dppf::to_host(xd, s.s);
    got_stats[std::size_t(r)] = dppf::to_host(st, s.s);
  });
  // Six steps and three syncs, each a few float roundings per element, compounding through the
  // momentum: 1e-5 (|x| + rms(x)) is about 80 ulps of the scale, and a wrong sync, a missed
  // momentum term or a step on the wrong worker is off by orders of magnitude more.
  for (std::size_t r = 0; r < std::size_t(m); ++r) {
    CAPTURE(r);
    double sq = 0;
    for (const double v : x[r]) sq += v * v;
    const double rms = std::sqrt(sq / double(n));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad += !(std::abs(double(got_x[r][i]) - x[r][i]) <= 1e-5 * (std::abs(x[r][i]) + rms));
    CHECK(bad == 0);
    for (std::size_t i = 0; i < 5; ++i) CHECK(std::abs(double(got_stats[r][i]) - stats[r][i]) <= 1e-6 * (std::abs(stats[r][i]) + 1e-3));
  }
}
