#pragma once
// dppf::hessian_top_eigenvalue: the largest-magnitude eigenvalue of the Hessian at x by power
// iteration, v <- H v / ||H v||, starting from the Gaussian vector keyed (seed, 0). The estimate
// is the Rayleigh quotient v^T H v; iteration stops when it changes by at most tol * |estimate|.
// The oracle is loss_and_grad (central differences, see hvp.hpp) or dppf::hvp_oracle{hvp}.
// Cost: per iteration one hvp call, or two loss_and_grad calls.

#include <cmath>
#include <cstdint>

#include "../error.hpp"
#include "hvp.hpp"

namespace dppf {

struct hessian_top_eigenvalue_options {
  std::size_t max_iters = 100;  ///< > 0
  double tol = 1e-4;            ///< relative change of the estimate that stops the iteration (> 0)
  double fd_step = 0.0;         ///< central-difference step scale; 0: cbrt(epsilon of T)
  std::uint64_t seed = 0;       ///< the start vector is keyed (seed, 0)

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    constexpr const char* owner = "hessian_top_eigenvalue";
    detail::require_option(max_iters > 0, owner, "max_iters", max_iters, "must be > 0");
    detail::require_option(std::isfinite(tol) && tol > 0.0, owner, "tol", tol, "must be finite and > 0");
    detail::require_option(std::isfinite(fd_step) && fd_step >= 0.0, owner, "fd_step", fd_step,
                           "must be finite and >= 0");
  }
};

struct hessian_top_eigenvalue_result {
  double value = 0.0;            ///< the eigenvalue estimate (Rayleigh quotient)
  std::size_t iterations = 0;
  bool converged = false;        ///< the relative change fell to tol within max_iters
  std::size_t oracle_calls = 0;
};

/// Power iteration on Hessian-vector products at x.
template <executor E, class Oracle, parameter_buffer X>
  requires runs_on<E, X>
hessian_top_eigenvalue_result hessian_top_eigenvalue(const E& ex, Oracle&& oracle, const X& x,
                                                     const hessian_top_eigenvalue_options& options = {}) {
  constexpr const char* who = "hessian_top_eigenvalue";
  options.validate();
  const std::size_t n = std::ranges::size(x);
  detail::require_not_empty(n, "hessian_top_eigenvalue: x");
  using T = detail::oracle_value_t<X>;
  detail::hvp_engine<E, std::remove_reference_t<Oracle>, T> hvp(ex, oracle, x, options.fd_step);
  detail::oracle_calls calls{who};

  auto v = ex.template allocate<T>(n);
  auto w = ex.template allocate<T>(n);
  fill_normal(ex, v, {options.seed, 0});
  detail::normalize(ex, v, who);
  hessian_top_eigenvalue_result r;
  double previous = 0.0;
  for (std::size_t it = 0; it < options.max_iters; ++it) {
    hvp(calls, x, v, w);
    const double estimate = dot(ex, v, w);
    const double wn = detail::norm(ex, w);
    if (!std::isfinite(estimate) || !std::isfinite(wn))
      detail::throw_non_finite(who, "the Hessian-vector product", estimate,
                               "in iteration " + std::to_string(it));
    r.value = estimate;
    r.iterations = it + 1;
    if (it > 0 && std::abs(estimate - previous) <= options.tol * std::abs(estimate)) {
      r.converged = true;
      break;
    }
    previous = estimate;
    if (wn == 0.0) {  // v is in the null space: H v = 0, the estimate 0 is exact for this v
      r.converged = true;
      break;
    }
    ex.transform(detail::scale_fn<T>{1.0 / wn}, detail::const_view(w), detail::mutable_view(v));
  }
  r.oracle_calls = calls.count;
  return r;
}

}  // namespace dppf
