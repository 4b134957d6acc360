#pragma once
// dppf::pull_push: the Distributed Pull-Push Force synchronization (DPPF).
//
//   x_bar = mean_j x_j,  d_i = x_i - x_bar,  r_i = ||d_i||
//   x_i  <- x_bar + (1 - alpha + push / r_i) d_i      (push skipped when r_i <= eps or M == 1)
//
// with push = lambda (constant mode) or lambda / (M MV^2), MV = mean_j r_j (inverse_mv mode: the
// exact gradient of lambda / MV with x_bar held fixed). In flat directions r_i settles at
// lambda / alpha: inside it the push wins, outside it the pull wins.
// Cost: one out-of-place all-reduce, one all-gather of r, a distance pass reading x and x_bar,
// an update pass reading x and x_bar and writing x (20 bytes per fp32 parameter).

#include <algorithm>
#include <cmath>

#include "rule.hpp"
#include "../error.hpp"

namespace dppf {

enum class push_mode {
  constant,    ///< push magnitude lambda
  inverse_mv,  ///< push magnitude lambda / (M * MV_relaxed^2)
};

/// How alpha and lambda change over training.
enum class strength_schedule {
  constant,            ///< as given
  proportional_to_lr,  ///< multiplied by lr(step) / lr(0)
};

struct pull_push_options {
  double alpha = 0.1;    ///< pull strength, in (0, 1]
  double lambda = 0.05;  ///< push strength, >= 0
  push_mode push = push_mode::constant;
  double eps = 1e-12;    ///< no push for r_i <= eps (workers at the mean)
  strength_schedule schedule = strength_schedule::constant;

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(alpha > 0.0 && alpha <= 1.0, "pull_push", "alpha", alpha, "must be in (0, 1]");
    detail::require_option(lambda >= 0.0 && std::isfinite(lambda), "pull_push", "lambda", lambda,
                           "must be finite and >= 0");
    detail::require_option(eps >= 0.0, "pull_push", "eps", eps, "must be >= 0");
  }
};

class pull_push {
 public:
  static constexpr bool averages_gradients = false;
  static constexpr bool overlappable = true;  // delayed: x_i <- x_i - alpha d_i + push d_i / r_i, d_i = s_i - s_bar
  template <class Buffer>
  using state = no_consensus_state;

  explicit pull_push(pull_push_options options = {}) : options_(options) { options_.validate(); }

  const pull_push_options& options() const noexcept { return options_; }

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S&) const {
    average_into_scratch(ctx);
    const double scale = options_.schedule == strength_schedule::proportional_to_lr ? ctx.lr_ratio : 1.0;
    sync_report report;
    report.alpha = std::min(1.0, options_.alpha * scale);
    report.lambda = ctx.warmup ? 0.0 : options_.lambda * scale;
    const int workers = ctx.comm.size();
    return move_toward(ctx, ctx.scratch, report, [&](const distances& d, sync_report& r) {
      double coefficient = 1.0 - r.alpha;
      const double push = push_magnitude(r.lambda, workers, d.mean);
      if (push > 0.0 && d.mine > options_.eps) {
        coefficient += push / d.mine;
        r.pushed = true;
      }
      return coefficient;
    });
  }

 private:
  double push_magnitude(double lambda, int workers, double mean_distance) const {
    if (lambda == 0.0 || workers <= 1) return 0.0;
    if (options_.push == push_mode::constant) return lambda;
    if (mean_distance <= options_.eps) return 0.0;
    return lambda / (static_cast<double>(workers) * mean_distance * mean_distance);
  }

  pull_push_options options_;
};

}  // namespace dppf
