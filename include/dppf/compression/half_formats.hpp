#pragma once
// The two 16-bit formats a compressed sync sends, as encode (float -> word) and decode (word ->
// float), written once for host and device (DPPF_HOST_DEVICE, integer arithmetic on the bits, so
// the result never depends on the FPU's rounding mode or flush-to-zero setting):
//
// * Rounding: to nearest, ties to even, subnormals included (an fp32 below half of the smallest
//   subnormal rounds to a signed zero).
// * Saturation: a finite input never becomes an infinity; what would round past the largest
//   finite word becomes it (+-max). Error feedback then carries the excess to the next sync.
// * Infinities stay infinities, NaNs become the quiet NaN of their sign (0x7FC0 / 0x7E00), so a
//   non-finite worker makes the mean non-finite and the sync's non-finite policy sees it.
// * Decoding is exact: every word is a float.

#include <cstdint>

#include "../config.hpp"

namespace dppf {

namespace detail {
DPPF_HOST_DEVICE inline std::uint32_t float_bits(float x) {
  std::uint32_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  return u;
}
DPPF_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float x;
  __builtin_memcpy(&x, &u, sizeof x);
  return x;
}
// The word of an fp32 infinity or NaN (a = its bits without the sign, >= 0x7F800000).
DPPF_HOST_DEVICE inline std::uint16_t non_finite_word(std::uint32_t sign, std::uint32_t a, std::uint32_t infinity,
                                                      std::uint32_t quiet_nan) {
  return static_cast<std::uint16_t>(sign | (a == 0x7F800000u ? infinity : quiet_nan));
}
}  // namespace detail

/// bfloat16: the upper half of an fp32 (sign, 8 exponent bits, 7 stored significand bits).
struct bf16_format {
  static constexpr const char* name = "bf16";
  static constexpr std::uint16_t max_finite = 0x7F7F;  // 3.3895e38

  DPPF_HOST_DEVICE static std::uint16_t encode(float x) {
    const std::uint32_t u = detail::float_bits(x);
    const std::uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return detail::non_finite_word(sign, a, 0x7F80u, 0x7FC0u);
    const std::uint32_t rounded = (a + 0x7FFFu + ((a >> 16) & 1u)) >> 16;  // ties to even
    return static_cast<std::uint16_t>(sign | (rounded > max_finite ? max_finite : rounded));
  }
  DPPF_HOST_DEVICE static float decode(std::uint16_t w) { return detail::bits_float(static_cast<std::uint32_t>(w) << 16); }
};

/// IEEE 754 binary16: sign, 5 exponent bits (bias 15), 10 stored significand bits.
struct fp16_format {
  static constexpr const char* name = "fp16";
  static constexpr std::uint16_t max_finite = 0x7BFF;  // 65504

  DPPF_HOST_DEVICE static std::uint16_t encode(float x) {
    const std::uint32_t u = detail::float_bits(x);
    const std::uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return detail::non_finite_word(sign, a, 0x7C00u, 0x7E00u);
    if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | max_finite);  // >= 65520 would round to inf
    if (a >= 0x38800000u) {  // a normal half: rebias the exponent (127 -> 15), round 13 bits away
      const std::uint32_t b = a - 0x38000000u;
      return static_cast<std::uint16_t>(sign | ((b + 0x0FFFu + ((b >> 13) & 1u)) >> 13));
    }
    if (a <= 0x33000000u) return static_cast<std::uint16_t>(sign);  // <= 2^-25: a tie or less rounds to 0
    // A subnormal half, in units of 2^-24: the significand with its hidden bit, shifted right.
    const std::uint32_t significand = (a & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126u - (a >> 23);  // 14 ... 24
    const std::uint32_t kept = significand >> shift, rest = significand & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    return static_cast<std::uint16_t>(sign | (kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u)));
  }
  DPPF_HOST_DEVICE static float decode(std::uint16_t w) {
    const std::uint32_t sign = static_cast<std::uint32_t>(w & 0x8000u) << 16;
    const std::uint32_t e = (w >> 10) & 0x1Fu, m = w & 0x3FFu;
    if (e == 0) {  // zero or subnormal: m 2^-24, exact in fp32
      const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
      return sign ? -v : v;
    }
    if (e == 31) return detail::bits_float(sign | 0x7F800000u | (m << 13));
    return detail::bits_float(sign | ((e + 112u) << 23) | (m << 13));
  }
};

}  // namespace dppf
