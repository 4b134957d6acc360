#pragma once
// The sequential host executor: deterministic, no threads, the reference every other executor is
// compared with.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../buffer.hpp"
#include "detail/host_loops.hpp"

namespace dppf {

/// Runs elementwise work and reductions on the calling thread, in host memory.
struct host_executor {
  using memory_space = host_space;
  template <parameter_value T>
  using buffer = std::vector<T>;

  /// A zero-filled buffer of n elements in host memory (optimizer state and scratch).
  template <parameter_value T>
  std::vector<T> allocate(std::size_t n) const {
    return std::vector<T>(n);
  }

  /// Calls f(i, b0[i], ..., bk[i]) for every index i; f updates elements through references.
  template <class F, host_buffer... B>
  void transform_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<true>("host_executor::transform", b...);
    detail::indexed_range(0, n, f, std::ranges::data(b)...);
  }

  /// Calls f(b0[i], ..., bk[i]) for every index i.
  template <class F, host_buffer... B>
  void transform(F f, B&&... b) const {
    transform_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// The sum over i of f(i, b0[i], ...), accumulated in double in a fixed order.
  template <class F, host_buffer... B>
  double transform_reduce_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<false>("host_executor::transform_reduce", b...);
    double total = 0.0;
    for (std::size_t c = 0; c < detail::chunk_count(n); ++c) {
      const std::size_t begin = c * detail::reduce_chunk;
      total += detail::chunk_sum(begin, std::min(n, begin + detail::reduce_chunk), f, std::ranges::data(b)...);
    }
    return total;
  }

  /// The sum over i of f(b0[i], ...), accumulated in double in a fixed order.
  template <class F, host_buffer... B>
  double transform_reduce(F f, B&&... b) const {
    return transform_reduce_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  void synchronize() const noexcept {}
};

/// The 0.1 spelling.
using host [[deprecated("dppf 0.2 renamed it dppf::host_executor; see CHANGELOG.md")]] = host_executor;

}  // namespace dppf
