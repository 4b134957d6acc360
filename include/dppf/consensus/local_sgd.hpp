#pragma once
// dppf::local_sgd: model averaging (LocalSGD). x_i <- x_bar. The same update functor as
// pull_push with alpha = 1 and lambda = 0, so the two agree bit for bit.

#include "rule.hpp"

namespace dppf {

struct local_sgd {
  static constexpr bool averages_gradients = false;
  static constexpr bool overlappable = true;  // delayed: x_i <- s_bar + (x_i - s_i)
  template <class Buffer>
  using state = no_consensus_state;

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S&) const {
    average_into_scratch(ctx);
    return move_toward(ctx, ctx.scratch, {.alpha = 1.0}, fixed_coefficient{0.0});
  }
};

}  // namespace dppf
