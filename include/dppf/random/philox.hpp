#pragma once
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// a counter-based generator. Output is a pure function of (counter, key), with no state, so any
// thread on the host or the device computes element i's random bits without touching element
// i-1's. Bit-compatible with Random123's philox4x32_10 (checked against its known-answer vectors).

#include <cstdint>

#include "../config.hpp"

namespace dppf {

/// 128 bits: a Philox counter or one output block.
struct philox_block {
  std::uint32_t v[4];
  friend constexpr bool operator==(const philox_block&, const philox_block&) = default;
};

/// The 64-bit Philox key.
struct philox_key {
  std::uint32_t v[2];
  friend constexpr bool operator==(const philox_key&, const philox_key&) = default;
};

namespace detail {

inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;  // sqrt(3) - 1

DPPF_HOST_DEVICE constexpr philox_block philox_round(philox_block c, philox_key k) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(philox_m0) * c.v[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(philox_m1) * c.v[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
  return {{hi1 ^ c.v[1] ^ k.v[0], lo1, hi0 ^ c.v[3] ^ k.v[1], lo0}};
}

}  // namespace detail

/// Philox4x32 with `Rounds` rounds (10 is the standard, crush-resistant choice).
template <int Rounds = 10>
DPPF_HOST_DEVICE constexpr philox_block philox4x32(philox_block counter, philox_key key) {
  static_assert(Rounds >= 1 && Rounds <= 16, "Philox4x32 is defined for 1 to 16 rounds");
  counter = detail::philox_round(counter, key);
  for (int r = 1; r < Rounds; ++r) {
    key.v[0] += detail::philox_w0;
    key.v[1] += detail::philox_w1;
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

/// Philox4x32-10, the generator every dppf random fill uses.
DPPF_HOST_DEVICE constexpr philox_block philox4x32_10(philox_block counter, philox_key key) {
  return philox4x32<10>(counter, key);
}

}  // namespace dppf
