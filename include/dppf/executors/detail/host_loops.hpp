#pragma once
// The loops behind the host executors. Both executors reduce in the same fixed order (fixed-size
// chunks, eight double accumulators per chunk, chunk sums added in order), so `host` and
// `host_parallel` give bitwise-identical reductions for any thread count.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../../buffer.hpp"
#include "../../config.hpp"

namespace dppf::detail {

inline constexpr std::size_t reduce_chunk = std::size_t{1} << 14;  // elements per chunk
inline constexpr std::size_t reduce_lanes = 8;                      // accumulators per chunk

template <class... V>
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
  (check(views.size()), ...);
  return n;
}

// Calls f(i, v0[i], ..., vk[i]) for i in [begin, end): the element loop every host executor runs.
template <class F, class... T>
inline void indexed_range(std::size_t begin, std::size_t end, F& f, T* DPPF_RESTRICT... p) {
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

// The double sum of f(i, v0[i], ...) over one chunk [begin, end), in a fixed order.
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
