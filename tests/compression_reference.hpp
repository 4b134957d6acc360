#pragma once
// An independent reference of the compressed sync (dppf/compression/): the 16-bit formats as a
// table of every finite value (decoded with ldexp, not with the bit tricks of half_formats.hpp)
// searched for the nearest one, ties to the even word, and the whole sync of M ranks (quantize
// with error feedback -> reduce in double -> owner quantization -> dequantize) as plain loops.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace dppf_test {

inline std::uint64_t compression_seed() { return (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}(); }

/// A 16-bit binary floating-point format with `mantissa` stored bits and `exponent` bits.
struct reference_format {
  int exponent_bits, mantissa_bits;
  std::vector<double> values;  // every non-negative finite value, index = word

  reference_format(int e, int m) : exponent_bits(e), mantissa_bits(m) {
    const int bias = (1 << (e - 1)) - 1;
    const std::uint32_t max_word = ((((1u << e) - 1u) << m) - 1u);  // below the infinity
    for (std::uint32_t w = 0; w <= max_word; ++w) {
      const int ex = static_cast<int>(w >> m);
      const double frac = static_cast<double>(w & ((1u << m) - 1u));
      values.push_back(ex == 0 ? std::ldexp(frac, 1 - bias - m) : std::ldexp(1.0 + std::ldexp(frac, -m), ex - bias));
    }
  }
  std::uint16_t sign_bit() const { return 0x8000; }
  std::uint16_t infinity() const { return static_cast<std::uint16_t>(((1u << exponent_bits) - 1u) << mantissa_bits); }
  std::uint16_t quiet_nan() const { return static_cast<std::uint16_t>(infinity() | (1u << (mantissa_bits - 1))); }

  double decode(std::uint16_t w) const {
    const bool negative = (w & 0x8000) != 0;
    const std::uint16_t a = w & 0x7FFF;
    double v;
    if (a == infinity())
      v = std::numeric_limits<double>::infinity();
    else if (a > infinity())
      v = std::numeric_limits<double>::quiet_NaN();
    else
      v = values[a];
    return negative ? -v : v;
  }

  /// Nearest finite value, ties to the even word; past the largest finite value its word
  /// (saturation); infinities and NaNs as the format has them.
  std::uint16_t encode(double x) const {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (std::isnan(x)) return sign | quiet_nan();
    if (std::isinf(x)) return sign | infinity();
    const double a = std::fabs(x);
    const auto hi = std::lower_bound(values.begin(), values.end(), a);
    std::size_t w;
    if (hi == values.end()) {
      w = values.size() - 1;
    } else if (*hi == a || hi == values.begin()) {
      w = static_cast<std::size_t>(hi - values.begin());
    } else {
      const std::size_t up = static_cast<std::size_t>(hi - values.begin()), down = up - 1;
      const double du = values[up] - a, dd = a - values[down];
      w = du < dd ? up : dd < du ? down : (up % 2 == 0 ? up : down);
    }
    return static_cast<std::uint16_t>(sign | w);
  }
};

inline const reference_format& reference_bf16() {
  static const reference_format f(8, 7);
  return f;
}
inline const reference_format& reference_fp16() {
  static const reference_format f(5, 10);
  return f;
}

/// The state of every rank of a compressed sync, advanced by plain loops.
template <class T>
struct compressed_sync_reference {
  const reference_format& format;
  std::size_t m, n, chunk;
  bool error_feedback = true;
  std::vector<T> reference;                    // r, shared
  std::vector<std::vector<T>> residual;        // e_i
  std::vector<std::vector<T>> owner_residual;  // g_j, chunk elements

  compressed_sync_reference(const reference_format& f, std::size_t ranks, std::vector<T> r0, bool feedback = true)
      : format(f), m(ranks), n(r0.size()), chunk((r0.size() + ranks - 1) / ranks), error_feedback(feedback), reference(std::move(r0)),
        residual(ranks, std::vector<T>(n, T(0))), owner_residual(ranks, std::vector<T>(chunk, T(0))) {}

  double q(double v) const { return format.decode(format.encode(static_cast<double>(static_cast<float>(v)))); }

  /// x[i] is rank i's parameters; returns x_bar (the same on every rank) and advances the state.
  std::vector<T> sync(const std::vector<std::vector<T>>& x) {
    std::vector<std::vector<double>> sent(m, std::vector<double>(m * chunk, 0.0));  // decoded words
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t k = 0; k < n; ++k) {
        const T d = error_feedback ? static_cast<T>(static_cast<T>(x[i][k] - reference[k]) + residual[i][k])
                                   : static_cast<T>(x[i][k] - reference[k]);
        sent[i][k] = q(static_cast<double>(d));
        if (error_feedback) residual[i][k] = static_cast<T>(d - static_cast<T>(sent[i][k]));
      }
    std::vector<double> mean_words(m * chunk, 0.0);
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t t = 0; t < chunk && j * chunk + t < n; ++t) {
        double sum = 0.0;
        for (std::size_t i = 0; i < m; ++i) sum += sent[i][j * chunk + t];
        const T avg = static_cast<T>(sum * (1.0 / static_cast<double>(m)));
        const T mm = error_feedback ? static_cast<T>(avg + owner_residual[j][t]) : avg;
        mean_words[j * chunk + t] = q(static_cast<double>(mm));
        if (error_feedback) owner_residual[j][t] = static_cast<T>(mm - static_cast<T>(mean_words[j * chunk + t]));
      }
    std::vector<T> mean(n);
    for (std::size_t k = 0; k < n; ++k) mean[k] = static_cast<T>(reference[k] + static_cast<T>(mean_words[k]));
    reference = mean;
    return mean;
  }
};

}  // namespace dppf_test
