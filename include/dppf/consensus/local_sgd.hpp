#pragma once
// dppf::local_sgd: model averaging (LocalSGD). x_i <- x_bar. The same update functor as
// pull_push with alpha = 1 and lambda = 0, so the two agree bit for bit.

#include "../consensus.hpp"

namespace dppf {

struct local_sgd {
  static constexpr bool averages_gradients = false;
  template <class Buffer>
  using state = no_consensus_state;

  template <class Ctx, class S>
  void init(Ctx&, S&) const {}

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S&) const {
    using T = typename Ctx::value_type;
    average_into_scratch(ctx);
    sync_report report;
    report.alpha = 1.0;
    detail::distances d;
    if (!measure_distances(ctx, ctx.scratch, report, d)) return report;
    ctx.ex.transform(detail::toward_fn<T>{T(0)}, ctx.params, typename Ctx::const_view_type(ctx.scratch));
    return report;
  }
};

}  // namespace dppf
