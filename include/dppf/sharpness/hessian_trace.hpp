#pragma once
// dppf::hessian_trace: Hutchinson's estimator tr(H) ~ mean_k z_k^T H z_k with Rademacher z_k
// keyed (seed, k). Unbiased; one sample's variance is 2 sum_{i != j} H_ij^2 (zero for a
// diagonal H), reported through the standard error of the mean.
// The oracle is loss_and_grad (central differences, see hvp.hpp) or dppf::hvp_oracle{hvp}.
// Cost: per sample one hvp call, or two loss_and_grad calls.

#include <cmath>
#include <cstdint>
#include <vector>

#include "../error.hpp"
#include "hvp.hpp"

namespace dppf {

struct hessian_trace_options {
  std::size_t samples = 16;  ///< Rademacher probes (> 0)
  double fd_step = 0.0;      ///< central-difference step scale; 0: cbrt(epsilon of T)
  std::uint64_t seed = 0;    ///< probe k is keyed (seed, k)

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    constexpr const char* owner = "hessian_trace";
    detail::require_option(samples > 0, owner, "samples", samples, "must be > 0");
    detail::require_option(std::isfinite(fd_step) && fd_step >= 0.0, owner, "fd_step", fd_step,
                           "must be finite and >= 0");
  }
};

struct hessian_trace_result {
  double value = 0.0;              ///< mean of the probes
  std::vector<double> probes;      ///< z_k^T H z_k
  double standard_error = 0.0;     ///< sample standard deviation / sqrt(samples) (0 for one sample)
  std::size_t oracle_calls = 0;
};

/// Hutchinson's estimate of the Hessian trace at x.
template <executor E, class Oracle, parameter_buffer X>
  requires runs_on<E, X>
hessian_trace_result hessian_trace(const E& ex, Oracle&& oracle, const X& x, const hessian_trace_options& options = {}) {
  constexpr const char* who = "hessian_trace";
  options.validate();
  const std::size_t n = std::ranges::size(x);
  detail::require_not_empty(n, "hessian_trace: x");
  using T = detail::oracle_value_t<X>;
  detail::hvp_engine<E, std::remove_reference_t<Oracle>, T> hvp(ex, oracle, x, options.fd_step);
  detail::oracle_calls calls{who};

  auto z = ex.template allocate<T>(n);
  auto hz = ex.template allocate<T>(n);
  hessian_trace_result r;
  r.probes.reserve(options.samples);
  for (std::size_t k = 0; k < options.samples; ++k) {
    fill_rademacher(ex, z, {options.seed, k});
    hvp(calls, x, z, hz);
    const double q = dot(ex, z, hz);
    if (!std::isfinite(q)) detail::throw_non_finite(who, "the Hessian-vector product", q, "for probe " + std::to_string(k));
    r.probes.push_back(q);
  }
  detail::mean_and_standard_error(r.probes, r.value, r.standard_error);
  r.oracle_calls = calls.count;
  return r;
}

}  // namespace dppf
