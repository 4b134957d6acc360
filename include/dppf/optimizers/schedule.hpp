#pragma once
// Learning-rate schedules: small callables `double operator()(std::int64_t step) const` giving
// the rate for a 0-based step. They compose: warmup{.steps = 500, .then = cosine_lr{...}}.
// Being aggregates (designated initializers), they check their fields in validate(), which the
// trainer calls once when it is built (call it yourself before using a schedule on its own); a
// bad field throws invalid_argument_error naming it. Any callable is a schedule (lr_schedule);
// validate() is optional, and the trainer checks each rate a schedule returns (finite, >= 0). They use closed forms, where torch.optim.lr_scheduler
// updates the rate recursively: the two agree to rounding (tests/test_optimizers.cpp).

#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>

#include "../error.hpp"

namespace dppf {

template <class S>
concept lr_schedule = std::regular_invocable<const S&, std::int64_t> &&
                      std::convertible_to<std::invoke_result_t<const S&, std::int64_t>, double>;

/// Calls s.validate() when the schedule has one (a plain callable has nothing to check).
template <lr_schedule S>
void validate_schedule(const S& s) {
  if constexpr (requires { s.validate(); }) s.validate();
}

/// The same rate at every step.
struct constant_lr {
  double lr = 1e-3;
  void validate() const { detail::require_option(lr >= 0.0 && std::isfinite(lr), "constant_lr", "lr", lr, "must be >= 0 and finite"); }
  double operator()(std::int64_t) const noexcept { return lr; }
};

/// lr * gamma^(floor(step / step_size)), as torch.optim.lr_scheduler.StepLR.
struct step_lr {
  double lr = 1e-3;
  std::int64_t step_size = 1;
  double gamma = 0.1;

  void validate() const {
    detail::require_option(lr >= 0.0 && std::isfinite(lr), "step_lr", "lr", lr, "must be >= 0 and finite");
    detail::require_option(step_size > 0, "step_lr", "step_size", step_size, "must be > 0");
    detail::require_option(gamma >= 0.0 && std::isfinite(gamma), "step_lr", "gamma", gamma, "must be >= 0 and finite");
  }
  double operator()(std::int64_t step) const {
    return lr * std::pow(gamma, static_cast<double>(step / step_size));
  }
};

/// Cosine annealing from lr to min_lr over total_steps, then min_lr: the closed form of
/// torch.optim.lr_scheduler.CosineAnnealingLR with T_max = total_steps up to step T_max (torch
/// continues as a cosine of period 2 T_max, rising again; this stays at min_lr).
struct cosine_lr {
  double lr = 1e-3;
  std::int64_t total_steps = 1;
  double min_lr = 0.0;

  void validate() const {
    detail::require_option(lr >= 0.0 && std::isfinite(lr), "cosine_lr", "lr", lr, "must be >= 0 and finite");
    detail::require_option(total_steps > 0, "cosine_lr", "total_steps", total_steps, "must be > 0");
    detail::require_option(min_lr >= 0.0 && std::isfinite(min_lr), "cosine_lr", "min_lr", min_lr, "must be >= 0 and finite");
  }
  double operator()(std::int64_t step) const {
    if (step >= total_steps) return min_lr;
    const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

/// Linear warm-up: start_factor * then(0) at step 0, rising linearly to then(0) at step `steps`;
/// from there on then(step - steps) (`then` counts its steps from the end of the warm-up). With a
/// constant `then` this is torch.optim.lr_scheduler.LinearLR(start_factor, end_factor = 1,
/// total_iters = steps), which however needs start_factor > 0.
template <lr_schedule Then = constant_lr>
struct warmup {
  std::int64_t steps = 0;
  Then then{};
  double start_factor = 0.0;

  void validate() const {
    detail::require_option(steps >= 0, "warmup", "steps", steps, "must be >= 0");
    detail::require_option(start_factor >= 0.0 && start_factor <= 1.0, "warmup", "start_factor", start_factor,
                           "must be in [0, 1]");
    validate_schedule(then);
  }
  double operator()(std::int64_t step) const {
    if (step >= steps) return then(step - steps);
    const double frac = static_cast<double>(step) / static_cast<double>(steps);
    return then(0) * (start_factor + (1.0 - start_factor) * frac);
  }
};

}  // namespace dppf
