#pragma once
// dppf::data_parallel: synchronous data parallelism, the baseline every local method is compared
// with. Every step the gradients are averaged (one all-reduce of N values) before the local
// optimizer step, so workers that start equal stay equal; there is no parameter sync.

#include "rule.hpp"

namespace dppf {

struct data_parallel {
  static constexpr bool averages_gradients = true;
  template <class Buffer>
  using state = no_consensus_state;

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  /// The gradient average into ctx.scratch, run by the trainer before every local step.
  template <class Ctx>
  void average_gradients(Ctx& ctx) const {
    ctx.comm.all_reduce(ctx.grads, ctx.scratch, reduce_op::avg);
  }

  /// Nothing to do at a sync: the parameters never drift apart.
  template <class Ctx, class S>
  sync_report sync(Ctx&, S&) const {
    return {};
  }
};

}  // namespace dppf
