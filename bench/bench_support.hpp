#pragma once
// Shared pieces of dppf's benchmarks: the STREAM-style triad that every host benchmark is
// compared with, deterministic inputs, and the counters (bytes_per_second, fraction_of_limit).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace dppf_bench {

// The measured memory bandwidth, in bytes per second, counted as STREAM counts: 24 bytes per
// double element of a[i] = b[i] + q * c[i] (read b and c, write a). Without non-temporal stores
// the hardware also reads a before writing it (write-allocate), so the true traffic is 32 bytes
// per element: a kernel whose writes go to lines it has just read (an optimizer step) moves no
// hidden bytes and can reach slightly more than 1.0 of this limit.
struct triad_result {
  double bytes_per_second = 0.0;  // best of the repetitions
  double median_bytes_per_second = 0.0;
  std::size_t elements = 0;  // per array
  int threads = 1;
  int repetitions = 0;
};

// STREAM's rules: each array at least 4x the last-level cache (here 256 MiB against a 32 MiB L3),
// arrays first touched by the threads that use them (same static schedule), best of several
// repetitions after a warm-up (the machine is shared, so the best time is the least disturbed).
inline triad_result measure_triad(int threads, std::size_t n = std::size_t{1} << 25, int repetitions = 30) {
  // new double[] leaves the pages untouched, so the parallel initialization places them.
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  double* __restrict pa = a.get();
  double* __restrict pb = b.get();
  double* __restrict pc = c.get();
  const auto count = static_cast<std::int64_t>(n);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (std::int64_t i = 0; i < count; ++i) {
    pa[i] = 0.0;
    pb[i] = 1.0 + static_cast<double>(i & 1023) * 1e-3;
    pc[i] = 2.0 - static_cast<double>(i & 511) * 1e-3;
  }
  const double q = 3.0;
  std::vector<double> seconds;
  for (int rep = 0; rep < repetitions + 1; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (std::int64_t i = 0; i < count; ++i) pa[i] = pb[i] + q * pc[i];
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
    if (rep > 0) seconds.push_back(std::chrono::duration<double>(t1 - t0).count());  // rep 0 warms up
  }
  std::sort(seconds.begin(), seconds.end());
  const double bytes = 3.0 * sizeof(double) * static_cast<double>(n);
  triad_result r;
  r.bytes_per_second = bytes / seconds.front();
  r.median_bytes_per_second = bytes / seconds[seconds.size() / 2];
  r.elements = n;
  r.threads = threads;
  r.repetitions = repetitions;
  return r;
}

inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The host limit every benchmark in this process is compared with: the triad on all threads.
inline triad_result& host_limit() {
  static triad_result r;
  return r;
}

// Runs the triad once (all threads and one thread) and records it in the benchmark context.
inline void measure_host_limit() {
  host_limit() = measure_triad(max_threads());
  const triad_result one = measure_triad(1);
  const auto gbs = [](double b) { return std::to_string(b / 1e9) + " GB/s"; };
  benchmark::AddCustomContext("triad_bytes_per_second", std::to_string(host_limit().bytes_per_second));
  benchmark::AddCustomContext("triad", gbs(host_limit().bytes_per_second) + " best (median " +
                                           gbs(host_limit().median_bytes_per_second) + ") on " +
                                           std::to_string(host_limit().threads) + " threads, 3 x " +
                                           std::to_string(host_limit().elements) + " doubles, best of " +
                                           std::to_string(host_limit().repetitions));
  benchmark::AddCustomContext("triad_1_thread", gbs(one.bytes_per_second) + " best (median " +
                                                    gbs(one.median_bytes_per_second) + ")");
  benchmark::AddCustomContext("triad_1_thread_bytes_per_second", std::to_string(one.bytes_per_second));
}

// bytes_per_second from the model's bytes per iteration, and fraction_of_limit = achieved / triad.
inline void set_bandwidth(benchmark::State& state, double bytes_per_iteration) {
  const double total = bytes_per_iteration * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
  if (host_limit().bytes_per_second > 0.0)
    state.counters["fraction_of_limit"] =
        benchmark::Counter(total / host_limit().bytes_per_second, benchmark::Counter::kIsRate);
}

// Deterministic values in [lo, hi): a hash of the index, cheap enough for 2^26 elements.
inline float pseudo_random(std::uint64_t i, std::uint64_t seed, float lo, float hi) {
  std::uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
  z ^= z >> 29;
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * u;
}

template <class V>
void fill_random(V& v, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = pseudo_random(i, seed, lo, hi);
}

// The sizes of the host benchmarks: 2^16 .. 2^26 in powers of 4.
inline void host_sizes(benchmark::internal::Benchmark* b) {
  for (int e = 16; e <= 26; e += 2) b->Arg(std::int64_t{1} << e);
}

}  // namespace dppf_bench
