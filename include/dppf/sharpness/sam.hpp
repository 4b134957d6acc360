#pragma once
// dppf::sam_sharpness: the loss increase one SAM ascent step of radius rho causes,
//   f(x + rho g / ||g||) - f(x),   g = grad f(x)
// (Foret et al. 2021, first-order worst case in the rho-ball). At a stationary point (g = 0) the
// direction is undefined and the value is 0 without a second call.
// Cost: one loss_and_grad call and one loss call.

#include <cmath>

#include "../error.hpp"
#include "common.hpp"

namespace dppf {

struct sam_sharpness_options {
  double rho = 0.05;  ///< ascent radius (> 0)

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    constexpr const char* owner = "sam_sharpness";
    detail::require_option(std::isfinite(rho) && rho > 0.0, owner, "rho", rho, "must be finite and > 0");
  }
};

struct sam_sharpness_result {
  double value = 0.0;           ///< f(x + rho g / ||g||) - f(x)
  double loss = 0.0;            ///< f(x)
  double perturbed_loss = 0.0;  ///< f(x + rho g / ||g||)
  double gradient_norm = 0.0;   ///< ||g||
  std::size_t oracle_calls = 0;
};

template <executor E, class LossAndGrad, parameter_buffer X>
  requires runs_on<E, X>
sam_sharpness_result sam_sharpness(const E& ex, LossAndGrad&& loss_and_grad, const X& x,
                                   const sam_sharpness_options& options = {}) {
  constexpr const char* who = "sam_sharpness";
  options.validate();
  const std::size_t n = std::ranges::size(x);
  detail::require_not_empty(n, "sam_sharpness: x");
  using T = detail::oracle_value_t<X>;
  detail::oracle_calls calls{who};
  auto g = ex.template allocate<T>(n);
  sam_sharpness_result r;
  r.loss = calls.loss_and_grad(loss_and_grad, detail::const_view(x), detail::mutable_view(g), "at x");
  r.gradient_norm = detail::norm(ex, g);
  if (!std::isfinite(r.gradient_norm)) detail::throw_non_finite(who, "loss_and_grad gradient norm", r.gradient_norm, "at x");
  r.perturbed_loss = r.loss;
  if (r.gradient_norm > 0.0) {
    auto y = ex.template allocate<T>(n);
    ex.transform(detail::ray_fn<T>{options.rho / r.gradient_norm}, detail::const_view(x), detail::const_view(g),
                 detail::mutable_view(y));
    // The ascent step writes through the loss_and_grad oracle with a throwaway gradient.
    r.perturbed_loss = calls.loss_and_grad(loss_and_grad, detail::const_view(y), detail::mutable_view(g),
                                           "at x + rho g / ||g||");
  }
  r.value = r.perturbed_loss - r.loss;
  r.oracle_calls = calls.count;
  return r;
}

}  // namespace dppf
