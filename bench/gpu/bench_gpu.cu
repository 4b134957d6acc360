// GPU benchmarks: achieved bytes per second of each fused operation and its fraction of the
// device-to-device copy bandwidth measured in the same run (the floor of the model in
// docs/performance.md). fp32, one buffer set of n elements; each figure is the best of `reps` timed
// launches (CUDA events) after a warm-up.
//
//   bench_gpu [--n N] [--reps R] [--csv]
//
// Exits with 77 when no CUDA device is present.

#include <dppf/optimizers/adamw.hpp>
#include <dppf/algorithms.hpp>
#include <dppf/executors/cuda.cuh>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/executors/thrust.hpp>

#include <thrust/system/cuda/execution_policy.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

struct options {
  std::size_t n = std::size_t{1} << 26;
  int reps = 20;
  bool csv = false;
};

// DPPF sync, local passes (section 1.1): the distance pass and the update pass.
struct distance_sq {
  DPPF_HOST_DEVICE double operator()(const float& x, const float& mean) const {
    const double d = double(x) - double(mean);
    return d * d;
  }
};
struct pull_push_update {
  float keep;  // 1 - alpha + lambda / r
  DPPF_HOST_DEVICE void operator()(float& x, const float& mean) const { x = mean + keep * (x - mean); }
};

// A CSV field: quoted when it holds a comma or a quote (device names are free text).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (const char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// Best time of `reps` runs of f, in seconds.
double best_seconds(cudaStream_t s, int reps, const std::function<void()>& f) {
  using dppf::cuda_check;
  cudaEvent_t a, b;
  cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  f();  // warm-up
  cuda_check(cudaStreamSynchronize(s), "benchmark warm-up");
  double best = 1e30;
  for (int k = 0; k < reps; ++k) {
    cudaEventRecord(a, s);
    f();
    cudaEventRecord(b, s);
    cuda_check(cudaEventSynchronize(b), "benchmark");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    best = std::min(best, double(ms) * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  dppf::cuda_check(cudaGetLastError(), "benchmark");
  return best;
}

void run(const options& o, const cudaDeviceProp& prop, cudaStream_t s);

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--n") && i + 1 < argc)
      o.n = std::strtoull(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      o.reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--csv"))
      o.csv = true;
    else {
      std::fprintf(stderr, "usage: %s [--n N] [--reps R] [--csv]\n", argv[0]);
      return 2;
    }
  }
  if (o.n < 64 || o.reps < 1) {
    std::fprintf(stderr, "%s: --n must be at least 64 and --reps at least 1\n", argv[0]);
    return 2;
  }
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("no CUDA device (%s): GPU benchmarks skipped\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaStream_t s = nullptr;
  try {
    dppf::cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    dppf::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    run(o, prop, s);  // every device buffer is freed (in order on s) before s goes
    dppf::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
  cudaStreamDestroy(s);
  return 0;
}

namespace {

void run(const options& o, const cudaDeviceProp& prop, cudaStream_t s) {
  const std::size_t n = o.n;
  const dppf::cuda_executor ex{s};
  const dppf::thrust_executor tx{thrust::cuda::par_nosync.on(s)};

  auto p = ex.allocate<float>(n), g = ex.allocate<float>(n), q = ex.allocate<float>(n);
  dppf::fill(ex, p, 1.0f);
  dppf::fill(ex, g, 0.001f);
  dppf::fill(ex, q, 0.5f);

  struct row {
    std::string name;
    double bytes, seconds;
  };
  std::vector<row> rows;
  const double fb = double(n) * sizeof(float);
  auto add = [&](std::string name, double bytes, const std::function<void()>& f) {
    rows.push_back({std::move(name), bytes, best_seconds(s, o.reps, f)});
  };

  add("d2d copy (cudaMemcpyAsync)", 2 * fb,
      [&] { cudaMemcpyAsync(q.data(), p.data(), n * sizeof(float), cudaMemcpyDeviceToDevice, s); });
  add("copy kernel (dppf::copy)", 2 * fb, [&] { dppf::copy(ex, p, q); });
  const dppf::sgd sgd{{.lr = 0.01, .momentum = 0.9}};
  auto sgd_state = sgd.init(ex, p);
  add("sgd momentum step (cuda)", 5 * fb, [&] { sgd.step(ex, p, g, sgd_state); });
  auto sgd_state_t = sgd.init(tx, p);
  add("sgd momentum step (thrust)", 5 * fb, [&] { sgd.step(tx, p, g, sgd_state_t); });
  const dppf::adamw adamw{{.lr = 1e-3}};
  auto adamw_state = adamw.init(ex, p);
  add("adamw step (cuda)", 7 * fb, [&] { adamw.step(ex, p, g, adamw_state); });
  auto adamw_state_t = adamw.init(tx, p);
  add("adamw step (thrust)", 7 * fb, [&] { adamw.step(tx, p, g, adamw_state_t); });
  add("dot (cuda)", 2 * fb, [&] { (void)dppf::dot(ex, p, g); });
  add("dppf distance pass (cuda)", 2 * fb, [&] { (void)ex.transform_reduce(distance_sq{}, p, q); });
  // The mean is read-only: passed as const, so the kernel does not store it back (3 words, not 4).
  add("dppf update pass (cuda)", 3 * fb, [&] { ex.transform(pull_push_update{0.95f}, p, std::as_const(q)); });
  {
    // The same SGD step over 64 tensors (multi-tensor apply) covering the same n elements.
    const std::size_t t = 64, each = n / t;
    std::vector<dppf::device_span<float>> lp, lm;
    std::vector<dppf::device_span<const float>> lg;
    auto m = ex.allocate<float>(n);
    for (std::size_t k = 0; k < t; ++k) {
      lp.push_back(dppf::view(p).subspan(k * each, each));
      lg.push_back(dppf::device_span<const float>(g.data() + k * each, each));
      lm.push_back(dppf::view(m).subspan(k * each, each));
    }
    const dppf::detail::sgd_update<float> f{-0.01f, 0.9f, 1.0f, 0.0f, false, false, false};
    add("sgd momentum step (multi-tensor apply over 64 tensors)", 5 * double(t * each) * sizeof(float), [&] {
      ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(lp),
                              std::span<const dppf::device_span<const float>>(lg), std::span<const dppf::device_span<float>>(lm));
    });
  }

  const double copy_bw = rows[0].bytes / rows[0].seconds;
  if (o.csv) {
    std::printf("device,op,n,seconds,bytes_per_s,fraction_of_copy\n");
    for (const auto& r : rows)
      std::printf("%s,%s,%zu,%.9g,%.6g,%.4f\n", csv_field(prop.name).c_str(), csv_field(r.name).c_str(), n, r.seconds,
                  r.bytes / r.seconds, r.bytes / r.seconds / copy_bw);
  } else {
    std::printf("%s, n = %zu fp32, best of %d\n", prop.name, n, o.reps);
    std::printf("%-56s %12s %10s %9s\n", "operation", "time (us)", "GB/s", "of copy");
    for (const auto& r : rows)
      std::printf("%-56s %12.1f %10.1f %8.1f%%\n", r.name.c_str(), r.seconds * 1e6, r.bytes / r.seconds * 1e-9,
                  100 * r.bytes / r.seconds / copy_bw);
  }
}

}  // namespace
