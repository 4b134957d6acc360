#pragma once
// Learning-rate schedules: small callables `double operator()(std::int64_t step) const` giving
// the rate for a 0-based step. They compose: warmup{.steps = 500, .then = cosine{...}}.

#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>

#include "detail/validate.hpp"

namespace dppf {

template <class S>
concept lr_schedule = std::regular_invocable<const S&, std::int64_t> &&
                      std::convertible_to<std::invoke_result_t<const S&, std::int64_t>, double>;

/// The same rate at every step.
struct constant_lr {
  double lr = 1e-3;
  double operator()(std::int64_t) const noexcept { return lr; }
};

/// lr * gamma^(floor(step / step_size)), as torch.optim.lr_scheduler.StepLR.
struct step_lr {
  double lr = 1e-3;
  std::int64_t step_size = 1;
  double gamma = 0.1;

  double operator()(std::int64_t step) const {
    detail::require_option(step_size > 0, "step_lr", "step_size", step_size, "must be > 0");
    return lr * std::pow(gamma, static_cast<double>(step / step_size));
  }
};

/// Cosine annealing from lr to min_lr over total_steps (then min_lr), as
/// torch.optim.lr_scheduler.CosineAnnealingLR's closed form with T_max = total_steps.
struct cosine_lr {
  double lr = 1e-3;
  std::int64_t total_steps = 1;
  double min_lr = 0.0;

  double operator()(std::int64_t step) const {
    detail::require_option(total_steps > 0, "cosine_lr", "total_steps", total_steps, "must be > 0");
    if (step >= total_steps) return min_lr;
    const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

/// Linear warm-up over `steps` steps, from start_factor * then(0) to then(steps), then `then`.
/// `then` sees steps counted from the end of the warm-up.
template <lr_schedule Then = constant_lr>
struct warmup {
  std::int64_t steps = 0;
  Then then{};
  double start_factor = 0.0;

  double operator()(std::int64_t step) const {
    detail::require_option(steps >= 0, "warmup", "steps", steps, "must be >= 0");
    if (step >= steps) return then(step - steps);
    const double frac = static_cast<double>(step) / static_cast<double>(steps);
    return then(0) * (start_factor + (1.0 - start_factor) * frac);
  }
};

}  // namespace dppf
