#pragma once
// Random fills keyed by (seed, stream, index) on Philox4x32-10: element i of stream s under seed k
// is a pure function of (k, s, i), so every executor, thread count and device draws the same
// numbers for the same key. Layout of one draw: key = seed (64 bits), counter = (index, stream)
// (64 bits each, low words first); element i uses one Philox block of its own.
//
// Uniform and Rademacher values are built from the integer bits by exact arithmetic, so they are
// bitwise identical everywhere. Gaussians (Box-Muller) go through log, sqrt and cos: bitwise
// identical on every host executor and thread count; a device's libm may differ in the last bit.

#include <cmath>
#include <cstdint>

#include "../algorithms.hpp"
#include "../buffer.hpp"
#include "../config.hpp"
#include "../executor.hpp"
#include "philox.hpp"

namespace dppf {

/// Names one random stream: the same (seed, stream) gives the same numbers everywhere.
struct random_key {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
};

/// The 128 random bits of element `index` of stream `key`.
DPPF_HOST_DEVICE constexpr philox_block random_bits(random_key key, std::uint64_t index) {
  const philox_block counter{{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                              static_cast<std::uint32_t>(key.stream), static_cast<std::uint32_t>(key.stream >> 32)}};
  return philox4x32_10(counter, {{static_cast<std::uint32_t>(key.seed), static_cast<std::uint32_t>(key.seed >> 32)}});
}

namespace detail {

// 53 random bits from two words, mapped to the open interval (0, 1): (m + 1/2) 2^-53. Exact.
DPPF_HOST_DEVICE constexpr double open_unit(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t m = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(m) + 0.5) * 0x1.0p-53;
}

}  // namespace detail

/// Element `index` of stream `key`, uniform on the open interval (0, 1), 53 random bits.
DPPF_HOST_DEVICE constexpr double uniform_at(random_key key, std::uint64_t index) {
  const philox_block b = random_bits(key, index);
  return detail::open_unit(b.v[0], b.v[1]);
}

/// Element `index` of stream `key`, standard normal (Box-Muller on two 53-bit uniforms).
DPPF_HOST_DEVICE inline double normal_at(random_key key, std::uint64_t index) {
  using std::cos;
  using std::log;
  using std::sqrt;
  const philox_block b = random_bits(key, index);
  const double u1 = detail::open_unit(b.v[0], b.v[1]);  // in (0, 1): log(u1) is finite
  const double u2 = detail::open_unit(b.v[2], b.v[3]);
  constexpr double two_pi = 6.283185307179586476925286766559;
  return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

/// Element `index` of stream `key`: -1 or +1 with equal probability (the low bit of the block).
DPPF_HOST_DEVICE constexpr double rademacher_at(random_key key, std::uint64_t index) {
  return (random_bits(key, index).v[0] & 1u) ? 1.0 : -1.0;
}

namespace detail {

template <class T>
struct uniform_fill_fn {
  random_key key;
  double lo, width;
  DPPF_HOST_DEVICE void operator()(std::size_t i, T& x) const {
    x = static_cast<T>(lo + width * uniform_at(key, i));
  }
};

template <class T>
struct normal_fill_fn {
  random_key key;
  double mean, stddev;
  DPPF_HOST_DEVICE void operator()(std::size_t i, T& x) const {
    x = static_cast<T>(mean + stddev * normal_at(key, i));
  }
};

template <class T>
struct rademacher_fill_fn {
  random_key key;
  DPPF_HOST_DEVICE void operator()(std::size_t i, T& x) const { x = static_cast<T>(rademacher_at(key, i)); }
};

}  // namespace detail

/// x[i] = lo + (hi - lo) * uniform_at(key, i), rounded to the buffer's type.
template <executor E, parameter_buffer B>
  requires runs_on<E, B>
void fill_uniform(const E& ex, B&& x, random_key key, double lo = 0.0, double hi = 1.0) {
  ex.transform_indexed(detail::uniform_fill_fn<detail::value_t<B>>{key, lo, hi - lo}, view(x));
}

/// x[i] = mean + stddev * normal_at(key, i), rounded to the buffer's type.
template <executor E, parameter_buffer B>
  requires runs_on<E, B>
void fill_normal(const E& ex, B&& x, random_key key, double mean = 0.0, double stddev = 1.0) {
  ex.transform_indexed(detail::normal_fill_fn<detail::value_t<B>>{key, mean, stddev}, view(x));
}

/// x[i] = rademacher_at(key, i): independent signs.
template <executor E, parameter_buffer B>
  requires runs_on<E, B>
void fill_rademacher(const E& ex, B&& x, random_key key) {
  ex.transform_indexed(detail::rademacher_fill_fn<detail::value_t<B>>{key}, view(x));
}

}  // namespace dppf
