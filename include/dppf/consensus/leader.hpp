#pragma once
// dppf::leader: Leader SGD (LSGD, Teng et al. 2019). The leader l is the worker with the lowest
// loss (an all-gather of each worker's mean loss since the last sync; ties go to the lowest
// rank); its parameters are broadcast and every worker moves toward them:
//   x_i <- x_i - c (x_i - x_l).
// The reported distance is ||x_i - x_l||.

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../algorithms.hpp"
#include "rule.hpp"
#include "../error.hpp"

namespace dppf {

struct leader_options {
  double pull = 0.1;  ///< c: pull toward the leader, in (0, 1]

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(pull > 0.0 && pull <= 1.0, "leader", "pull", pull, "must be in (0, 1]");
  }
};

class leader {
 public:
  static constexpr bool averages_gradients = false;
  template <class Buffer>
  using state = no_consensus_state;

  explicit leader(leader_options options = {}) : options_(options) { options_.validate(); }

  const leader_options& options() const noexcept { return options_; }

  /// argmin of the losses, ties to the lowest rank. Every rank computes the same answer.
  static int choose(const std::vector<double>& losses) {
    int best = 0;
    for (std::size_t j = 1; j < losses.size(); ++j)
      if (losses[j] < losses[static_cast<std::size_t>(best)]) best = static_cast<int>(j);
    return best;
  }

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S&) const {
    using T = typename Ctx::value_type;
    const std::vector<double> losses = ctx.comm.all_gather(ctx.loss);
    for (std::size_t j = 0; j < losses.size(); ++j)
      if (!std::isfinite(losses[j]))
        detail::throw_invalid("leader: rank " + std::to_string(j) +
                              " has no finite loss; pass the loss to trainer::step (this is rank " +
                              std::to_string(ctx.comm.rank()) + ")");
    const int l = choose(losses);
    if (ctx.comm.rank() == l) ctx.ex.transform(detail::copy_fn<T>{}, typename Ctx::const_view_type(ctx.params), ctx.scratch);
    ctx.comm.broadcast(ctx.scratch, l);
    return move_toward(ctx, ctx.scratch, {.alpha = options_.pull}, fixed_coefficient{1.0 - options_.pull});
  }

 private:
  leader_options options_;
};

}  // namespace dppf
