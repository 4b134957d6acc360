#pragma once
// The OpenMP host executor. Compiled without OpenMP it runs sequentially and gives the same
// results. Reductions use the same fixed chunking as host_executor, so they are bitwise identical to
// the sequential executor's for every thread count.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../buffer.hpp"
#include "detail/host_loops.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace dppf {

/// Runs elementwise work and reductions on a team of OpenMP threads, in host memory.
struct host_parallel_executor {
  using memory_space = host_space;
  template <parameter_value T>
  using buffer = std::vector<T>;

  /// Number of threads; 0 uses OpenMP's default (OMP_NUM_THREADS or the core count).
  int threads = 0;

  template <parameter_value T>
  std::vector<T> allocate(std::size_t n) const {
    return std::vector<T>(n);
  }

  /// Calls f(i, b0[i], ..., bk[i]) for every index i, split into one static block per thread.
  template <class F, host_buffer... B>
  void transform_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<true>("host_parallel_executor::transform", b...);
    [[maybe_unused]] const int teams = team_size(n);
DPPF_OMP(parallel num_threads(teams) if (teams > 1))
    {
      const auto [begin, end] = block(n);
      F local = f;
      detail::indexed_range(begin, end, local, std::ranges::data(b)...);
    }
  }

  template <class F, host_buffer... B>
  void transform(F f, B&&... b) const {
    transform_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// The sum over i of f(i, b0[i], ...), accumulated in double; same order as `host`.
  template <class F, host_buffer... B>
  double transform_reduce_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<false>("host_parallel_executor::transform_reduce", b...);
    const std::size_t chunks = detail::chunk_count(n);
    std::vector<double> partial(chunks);
    [[maybe_unused]] const int teams = team_size(n);
DPPF_OMP(parallel for schedule(static) num_threads(teams) if (teams > 1))
    for (std::int64_t c = 0; c < static_cast<std::int64_t>(chunks); ++c) {
      const std::size_t begin = static_cast<std::size_t>(c) * detail::reduce_chunk;
      F local = f;
      partial[c] = detail::chunk_sum(begin, std::min(n, begin + detail::reduce_chunk), local,
                                     std::ranges::data(b)...);
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return total;
  }

  template <class F, host_buffer... B>
  double transform_reduce(F f, B&&... b) const {
    return transform_reduce_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  void synchronize() const noexcept {}

 private:
  // Below this many elements a parallel region costs more than it saves.
  static constexpr std::size_t serial_below = std::size_t{1} << 15;

  int team_size(std::size_t n) const {
#if defined(_OPENMP)
    if (n < serial_below) return 1;
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
  }

  // The [begin, end) block of the calling thread: contiguous, nearly equal, 64-byte aligned.
  static std::pair<std::size_t, std::size_t> block(std::size_t n) {
#if defined(_OPENMP)
    const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t count = static_cast<std::size_t>(omp_get_num_threads());
#else
    const std::size_t t = 0, count = 1;
#endif
    const std::size_t per = ((n + count - 1) / count + 15) & ~std::size_t{15};
    const std::size_t begin = std::min(n, t * per);
    return {begin, std::min(n, begin + per)};
  }
};

/// The 0.1 spelling.
using host_parallel [[deprecated("dppf 0.2 renamed it dppf::host_parallel_executor; see CHANGELOG.md")]] = host_parallel_executor;

}  // namespace dppf
