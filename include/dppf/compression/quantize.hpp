#pragma once
// The elementwise steps of a compressed sync, as functors for host and device (DPPF_HOST_DEVICE).
// Format is bf16_format or fp16_format (half_formats.hpp); T is the parameters' type. A double
// is rounded to float first, then to the 16-bit word; the residual is computed in T, so error
// feedback carries whatever either rounding lost.

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"

namespace dppf {

/// A double as the nearest float (ties to even), as the hardware rounds it, also beyond float's
/// range, where a plain cast is undefined behaviour: from FLT_MAX + half its ulp on, the
/// infinity of its sign (a NaN stays a NaN).
DPPF_HOST_DEVICE inline float nearest_float(double x) {
  constexpr double overflow = 0x1.ffffffp127;  // FLT_MAX + 2^103: ties round to infinity (FLT_MAX is odd)
  if (x >= overflow) return static_cast<float>(HUGE_VAL);
  if (x <= -overflow) return -static_cast<float>(HUGE_VAL);
  if (x > static_cast<double>(FLT_MAX)) return FLT_MAX;
  if (x < -static_cast<double>(FLT_MAX)) return -FLT_MAX;
  return static_cast<float>(x);
}

/// A double in T (float or double), rounded to nearest; see nearest_float.
template <class T>
DPPF_HOST_DEVICE T nearest(double x) {
  if constexpr (std::is_same_v<T, float>)
    return nearest_float(x);
  else
    return static_cast<T>(x);
}

/// A T as the nearest float: itself for a float (no round trip through double, which also keeps
/// the loops over it vectorizable), nearest_float for a double.
template <class T>
DPPF_HOST_DEVICE float as_float(T x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else
    return nearest_float(static_cast<double>(x));
}

/// With error feedback: d = (x - r) + e (in T), q = Q(d), e <- d - deq(q). The residual e is what
/// this sync failed to send; the next sync sends it. Without: q = Q(x - r) and e stays as it is.
template <class Format>
struct quantize_difference_fn {
  bool error_feedback = true;
  template <class T>
  DPPF_HOST_DEVICE void operator()(const T& x, const T& reference, T& residual, std::uint16_t& word) const {
    const T d = error_feedback ? (x - reference) + residual : x - reference;
    word = Format::encode(as_float(d));
    if (error_feedback) residual = d - static_cast<T>(Format::decode(word));
  }
};

/// The owner's step on one element of its chunk: m = T(sum / M) + e (sum over ranks of the
/// decoded words, accumulated in double by the caller), q = Q(m), e <- m - deq(q) (with error
/// feedback; without, m = T(sum / M) and e stays).
template <class Format>
struct quantize_mean_fn {
  double inverse_size;
  bool error_feedback = true;
  template <class T>
  DPPF_HOST_DEVICE void operator()(double sum, T& residual, std::uint16_t& word) const {
    const T m = error_feedback ? nearest<T>(sum * inverse_size) + residual : nearest<T>(sum * inverse_size);
    word = Format::encode(as_float(m));
    if (error_feedback) residual = m - static_cast<T>(Format::decode(word));
  }
};

/// x_bar = r + deq(q): every rank holds the same r and the same words, so every rank computes
/// the same bits.
template <class Format>
struct dequantize_onto_fn {
  template <class T>
  DPPF_HOST_DEVICE void operator()(const T& reference, const std::uint16_t& word, T& mean) const {
    mean = reference + static_cast<T>(Format::decode(word));
  }
};

}  // namespace dppf
