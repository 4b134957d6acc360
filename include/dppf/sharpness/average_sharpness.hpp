#pragma once
// dppf::average_sharpness: average-case sharpness E[f(x + sigma n)] - f(x), n ~ N(0, I), by Monte
// Carlo over `samples` Gaussian draws keyed (seed, k). For a quadratic it is sigma^2 tr(H) / 2.
// Cost: 1 + samples loss calls.

#include <cmath>
#include <cstdint>
#include <vector>

#include "../error.hpp"
#include "common.hpp"

namespace dppf {

struct average_sharpness_options {
  double sigma = 0.01;       ///< noise scale (> 0)
  std::size_t samples = 16;  ///< draws (> 0)
  std::uint64_t seed = 0;    ///< draw k is keyed (seed, k)

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    constexpr const char* owner = "average_sharpness";
    detail::require_option(std::isfinite(sigma) && sigma > 0.0, owner, "sigma", sigma, "must be finite and > 0");
    detail::require_option(samples > 0, owner, "samples", samples, "must be > 0");
  }
};

struct average_sharpness_result {
  double value = 0.0;              ///< mean_k f(x + sigma n_k) - f(x)
  std::vector<double> increases;   ///< f(x + sigma n_k) - f(x)
  double standard_error = 0.0;     ///< of the mean
  double loss = 0.0;               ///< f(x)
  std::size_t oracle_calls = 0;
};

template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
average_sharpness_result average_sharpness(const E& ex, Loss&& loss, const X& x,
                                           const average_sharpness_options& options = {}) {
  constexpr const char* who = "average_sharpness";
  options.validate();
  const std::size_t n = std::ranges::size(x);
  detail::require_not_empty(n, "average_sharpness: x");
  using T = detail::oracle_value_t<X>;
  detail::oracle_calls calls{who};
  average_sharpness_result r;
  r.loss = calls.loss(loss, detail::const_view(x), "at x");
  auto noise = ex.template allocate<T>(n);
  auto y = ex.template allocate<T>(n);
  r.increases.reserve(options.samples);
  for (std::size_t k = 0; k < options.samples; ++k) {
    fill_normal(ex, noise, {options.seed, k});
    ex.transform(detail::ray_fn<T>{options.sigma}, detail::const_view(x), detail::const_view(noise),
                 detail::mutable_view(y));
    r.increases.push_back(calls.loss(loss, detail::const_view(y), "for draw " + std::to_string(k)) - r.loss);
  }
  detail::mean_and_standard_error(r.increases, r.value, r.standard_error);
  r.oracle_calls = calls.count;
  return r;
}

}  // namespace dppf
