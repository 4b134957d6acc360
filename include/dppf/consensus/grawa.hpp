#pragma once
// dppf::grawa: Gradient-based Weighted Averaging (Dimlioglu & Choromanska 2024). Workers with
// smaller gradients (flatter regions) weigh more:
//   w_j = (1 / ||g_j||) / sum_k (1 / ||g_k||),   x_i <- x_i - a (x_i - sum_j w_j x_j).
// g_j is the gradient of worker j's last local step. Workers whose gradient is exactly zero share
// all the weight. The reported distance is ||x_i - sum_j w_j x_j||.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../algorithms.hpp"
#include "rule.hpp"
#include "../error.hpp"

namespace dppf {

struct grawa_options {
  double alpha = 0.1;  ///< pull toward the weighted average, in (0, 1]

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(alpha > 0.0 && alpha <= 1.0, "grawa", "alpha", alpha, "must be in (0, 1]");
  }
};

class grawa {
 public:
  static constexpr bool averages_gradients = false;
  template <class Buffer>
  using state = no_consensus_state;

  explicit grawa(grawa_options options = {}) : options_(options) { options_.validate(); }

  const grawa_options& options() const noexcept { return options_; }

  /// The averaging weights from every worker's gradient norm.
  static std::vector<double> weights(const std::vector<double>& grad_norms) {
    std::vector<double> w(grad_norms.size(), 0.0);
    std::size_t zeros = 0;
    for (double g : grad_norms) zeros += g == 0.0 ? 1 : 0;
    double total = 0.0;
    for (std::size_t j = 0; j < w.size(); ++j) {
      w[j] = zeros ? (grad_norms[j] == 0.0 ? 1.0 : 0.0) : 1.0 / grad_norms[j];
      total += w[j];
    }
    for (double& x : w) x /= total;
    return w;
  }

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S&) const {
    using T = typename Ctx::value_type;
    const double my_norm = std::sqrt(squared_norm(ctx.ex, ctx.grads));
    const std::vector<double> norms = ctx.comm.all_gather(my_norm);
    // A non-finite gradient leaves no weight to compute: the trainer's non-finite policy decides.
    std::vector<double> finite(norms.size());
    for (std::size_t j = 0; j < norms.size(); ++j) finite[j] = std::isfinite(norms[j]) ? 1.0 : 0.0;
    if (std::find(finite.begin(), finite.end(), 0.0) != finite.end()) {
      sync_report report;
      detail::apply_non_finite_policy(ctx, finite, report, "grawa: non-finite gradient");
      return report;
    }
    const double w = weights(norms)[static_cast<std::size_t>(ctx.comm.rank())];
    ctx.ex.transform(detail::scale_fn<T>{w}, typename Ctx::const_view_type(ctx.params), ctx.scratch);
    ctx.comm.all_reduce(ctx.scratch, reduce_op::sum);
    return move_toward(ctx, ctx.scratch, {.alpha = options_.alpha}, fixed_coefficient{1.0 - options_.alpha});
  }

 private:
  grawa_options options_;
};

}  // namespace dppf
