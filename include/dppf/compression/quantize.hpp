#pragma once
// The elementwise steps of a compressed sync, as functors for host and device (DPPF_HOST_DEVICE).
// Format is bf16_format or fp16_format (half_formats.hpp); T is the parameters' type. A double
// is rounded to float first, then to the 16-bit word; the residual is computed in T, so error
// feedback carries whatever either rounding lost.

#include <cstdint>

#include "../config.hpp"

namespace dppf {

/// With error feedback: d = (x - r) + e (in T), q = Q(d), e <- d - deq(q). The residual e is what
/// this sync failed to send; the next sync sends it. Without: q = Q(x - r) and e stays as it is.
template <class Format>
struct quantize_difference_fn {
  bool error_feedback = true;
  template <class T>
  DPPF_HOST_DEVICE void operator()(const T& x, const T& reference, T& residual, std::uint16_t& word) const {
    const T d = error_feedback ? (x - reference) + residual : x - reference;
    word = Format::encode(static_cast<float>(d));
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
    const T m = error_feedback ? static_cast<T>(sum * inverse_size) + residual : static_cast<T>(sum * inverse_size);
    word = Format::encode(static_cast<float>(m));
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
