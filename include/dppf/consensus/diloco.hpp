#pragma once
// dppf::diloco: DiLoCo (Douillard et al. 2023). A global model x_g is replicated on every rank;
// at a sync the pseudo-gradient delta = x_g - x_bar drives an outer SGD step with Nesterov
// momentum (torch.optim.SGD semantics, first step v = delta), then every worker restarts from x_g:
//   v <- mu v + delta,   x_g <- x_g - lr (delta + mu v)   (nesterov; lr v without),   x_i <- x_g.
// The reported distance is ||x_i - x_bar||. x_g starts as the mean of the initial parameters.

#include <cmath>
#include <cstdint>

#include "rule.hpp"
#include "../error.hpp"

namespace dppf {

struct diloco_options {
  double outer_lr = 0.7;
  double outer_momentum = 0.9;
  bool nesterov = true;

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(outer_lr > 0.0 && std::isfinite(outer_lr), "diloco", "outer_lr", outer_lr,
                           "must be finite and > 0");
    detail::require_option(outer_momentum >= 0.0 && outer_momentum < 1.0, "diloco", "outer_momentum", outer_momentum,
                           "must be in [0, 1)");
    detail::require_option(!nesterov || outer_momentum > 0.0, "diloco", "nesterov", "true",
                           "requires outer_momentum > 0");
  }
};

namespace detail {
template <class T>
struct diloco_fn {
  T lr, mu;
  bool nesterov, first;
  DPPF_HOST_DEVICE void operator()(T& x, const T& mean, T& global, T& v) const {
    const T delta = global - mean;
    v = first ? delta : mu * v + delta;
    const T d = nesterov ? delta + mu * v : v;
    global = global - lr * d;
    x = global;
  }
};
}  // namespace detail

class diloco {
 public:
  static constexpr bool averages_gradients = false;
  static constexpr bool overlappable = true;  // delayed: outer step on s_bar, x_i <- x_g + (x_i - s_i)
  template <class Buffer>
  struct state {
    Buffer global;
    Buffer momentum;
    std::int64_t outer_steps = 0;
    template <class F>
    void for_each_buffer(F&& f) {
      f("global", global);
      f("momentum", momentum);
    }
    template <class F>
    void for_each_counter(F&& f) {
      f("outer_steps", outer_steps);
    }
  };

  explicit diloco(diloco_options options = {}) : options_(options) { options_.validate(); }

  const diloco_options& options() const noexcept { return options_; }

  template <class Ctx, class S>
  void init(Ctx& ctx, S& s) const {
    using T = typename Ctx::value_type;
    s.global = ctx.ex.template allocate<T>(ctx.params.size());
    s.momentum = ctx.ex.template allocate<T>(ctx.params.size());
    ctx.comm.all_reduce(typename Ctx::const_view_type(ctx.params), view(s.global), reduce_op::avg);
  }

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S& s) const {
    using T = typename Ctx::value_type;
    average_into_scratch(ctx);
    sync_report report;
    report.alpha = 1.0;
    distances d;
    if (!measure_distances(ctx, ctx.scratch, report, d)) return report;
    update_params(ctx,
                  detail::diloco_fn<T>{static_cast<T>(options_.outer_lr), static_cast<T>(options_.outer_momentum),
                                       options_.nesterov, s.outer_steps == 0},
                  typename Ctx::const_view_type(ctx.scratch), view(s.global), view(s.momentum));
    ++s.outer_steps;
    return report;
  }

 private:
  diloco_options options_;
};

}  // namespace dppf
