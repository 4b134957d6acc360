#pragma once
// The loops behind the host executors. Both executors reduce in the same fixed order (fixed-size
// chunks, eight double accumulators per chunk, chunk sums added in order), so `host` and
// `host_parallel` give bitwise-identical reductions for any thread count.

#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../../buffer.hpp"
#include "../../config.hpp"

namespace dppf::detail {

inline constexpr std::size_t reduce_chunk = std::size_t{1} << 14;  // elements per chunk
inline constexpr std::size_t reduce_lanes = 8;                      // accumulators per chunk

// Two buffers of one call are the same memory or disjoint where one of them is written (the
// executor contract, executor.hpp): a partial overlap is rejected, with O(k^2) pointer
// comparisons for k buffers. Inputs that are only read may overlap in any way.
inline void require_no_partial_overlap(const char* who, const std::uintptr_t* begin, const std::size_t* bytes,
                                       const bool* written, std::size_t k) {
  for (std::size_t a = 0; a < k; ++a)
    for (std::size_t b = a + 1; b < k; ++b) {
      if (!written[a] && !written[b]) continue;
      const bool same = begin[a] == begin[b] && bytes[a] == bytes[b];
      const bool disjoint = begin[a] + bytes[a] <= begin[b] || begin[b] + bytes[b] <= begin[a];
      if (!same && !disjoint)
        throw_invalid(std::string(who) + ": buffers " + std::to_string(a) + " and " + std::to_string(b) +
                      " overlap partially (a written buffer must be the same memory as another or disjoint from it)");
    }
}

// The common size of the buffers of one call; throws when sizes differ or, for a call that writes
// (Writes: a transform; a reduction only reads), when a written buffer overlaps another partially.
template <bool Writes = false, class... V>
std::size_t common_size(const char* who, const V&... views) {
  std::size_t n = 0;
  bool first = true;
  const auto check = [&](std::size_t m) {
    if (first) {
      n = m;
      first = false;
    } else if (m != n) {
      throw_invalid(std::string(who) + ": buffers have different sizes (" + std::to_string(n) + " and " +
                    std::to_string(m) + ")");
    }
  };
  (check(std::ranges::size(views)), ...);
  if constexpr (Writes && sizeof...(V) > 1) {
    const std::uintptr_t begin[] = {reinterpret_cast<std::uintptr_t>(std::ranges::data(views))...};
    const std::size_t bytes[] = {std::ranges::size(views) * sizeof(*std::ranges::data(views))...};
    const bool written[] = {!std::is_const_v<std::remove_reference_t<decltype(*std::ranges::data(views))>>...};
    require_no_partial_overlap(who, begin, bytes, written, sizeof...(V));
  }
  return n;
}

// Calls f(i, v0[i], ..., vk[i]) for i in [begin, end): the element loop every host executor runs.
// Not restrict-qualified: a written buffer may be the same memory as another (executor.hpp).
template <class F, class... T>
inline void indexed_range(std::size_t begin, std::size_t end, F& f, T*... p) {
  for (std::size_t i = begin; i < end; ++i) f(i, p[i]...);
}

// Adapts an element functor f(x...) to the indexed form f(i, x...).
template <class F>
struct drop_index {
  F f;
  template <class... X>
  DPPF_HOST_DEVICE constexpr decltype(auto) operator()(std::size_t, X&&... x) {
    return f(static_cast<X&&>(x)...);
  }
};

// The double sum of f(i, v0[i], ...) over one chunk [begin, end), in a fixed order. Reductions
// only read, so restrict holds even when two inputs are the same memory.
template <class F, class... T>
inline double chunk_sum(std::size_t begin, std::size_t end, F& f, T* DPPF_RESTRICT... p) {
  double acc[reduce_lanes] = {};
  std::size_t i = begin;
  for (; i + reduce_lanes <= end; i += reduce_lanes)
    for (std::size_t k = 0; k < reduce_lanes; ++k) acc[k] += static_cast<double>(f(i + k, p[i + k]...));
  for (std::size_t k = 0; i < end; ++i, ++k) acc[k] += static_cast<double>(f(i, p[i]...));
  // Pairwise combination of the lanes, always in the same order.
  for (std::size_t w = reduce_lanes / 2; w > 0; w /= 2)
    for (std::size_t k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0];
}

inline std::size_t chunk_count(std::size_t n) { return (n + reduce_chunk - 1) / reduce_chunk; }

}  // namespace dppf::detail
