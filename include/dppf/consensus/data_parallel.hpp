#pragma once
// dppf::data_parallel: synchronous data parallelism, the baseline every local method is compared
// with. Every step the gradients are averaged (one all-reduce of N values) before the local
// optimizer step, so workers that start equal stay equal; there is no parameter sync.
// With gradients_averaged the caller has averaged them already (gradient_buckets.hpp: during the
// backward pass, overlapped with it) and the step takes them as they are.

#include "rule.hpp"

namespace dppf {

struct data_parallel {
  static constexpr bool averages_gradients = true;
  /// The gradients passed to trainer::step are already the group's average (every rank's step
  /// must say so alike); buffers are still averaged by the trainer.
  bool gradients_averaged = false;

  template <class Buffer>
  using state = no_consensus_state;

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  /// The gradient average into ctx.scratch, run by the trainer before every local step.
  template <class Ctx>
  void average_gradients(Ctx& ctx) const {
    if (gradients_averaged)
      dppf::copy(ctx.ex, ctx.grads, ctx.scratch);
    else
      ctx.comm.all_reduce(ctx.grads, ctx.scratch, reduce_op::avg);
  }

  /// Nothing to do at a sync: the parameters never drift apart.
  template <class Ctx, class S>
  sync_report sync(Ctx&, S&) const {
    return {};
  }
};

}  // namespace dppf
