#pragma once
// dppf::elastic: synchronous EASGD (Zhang, Choromanska, LeCun 2015). A center c is replicated
// on every rank; with pre-update values
//   x_i <- x_i - a (x_i - c),    c <- c + b (x_bar - c),    b = M a by default.
// The reported distance is ||x_i - c||. The center starts as the mean of the initial parameters.

#include <cstddef>
#include <string>

#include "rule.hpp"
#include "../error.hpp"

namespace dppf {

struct elastic_options {
  double alpha = 0.1;  ///< a: pull of each worker toward the center, in (0, 1]
  double beta = 0.0;   ///< b: move of the center toward the mean, in (0, 1]; 0 means M * alpha

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(alpha > 0.0 && alpha <= 1.0, "elastic", "alpha", alpha, "must be in (0, 1]");
    detail::require_option(beta >= 0.0 && beta <= 1.0, "elastic", "beta", beta, "must be in [0, 1] (0 means M * alpha)");
  }
};

namespace detail {
template <class T>
struct elastic_fn {
  T a, b;
  DPPF_HOST_DEVICE void operator()(T& x, T& c, const T& mean) const {
    const T x0 = x, c0 = c;
    x = x0 - a * (x0 - c0);
    c = c0 + b * (mean - c0);
  }
};
}  // namespace detail

class elastic {
 public:
  static constexpr bool averages_gradients = false;
  static constexpr bool overlappable = true;  // delayed: x_i <- x_i - a (s_i - c), c <- c + b (s_bar - c)
  template <class Buffer>
  struct state {
    Buffer center;
    template <class F>
    void for_each_buffer(F&& f) {
      f("center", center);
    }
  };

  explicit elastic(elastic_options options = {}) : options_(options) { options_.validate(); }

  const elastic_options& options() const noexcept { return options_; }

  /// b for a group of M workers; M * alpha must not exceed 1 when beta is left at 0.
  double beta(int workers) const {
    const double b = options_.beta > 0.0 ? options_.beta : workers * options_.alpha;
    detail::require_option(b <= 1.0, "elastic", "beta (M * alpha)", b,
                           "must be <= 1 for a stable center; lower alpha or set beta");
    return b;
  }

  template <class Ctx, class S>
  void init(Ctx& ctx, S& s) const {
    (void)beta(ctx.comm.size());
    s.center = ctx.ex.template allocate<typename Ctx::value_type>(ctx.params.size());
    ctx.comm.all_reduce(typename Ctx::const_view_type(ctx.params), view(s.center), reduce_op::avg);
  }

  template <class Ctx, class S>
  sync_report sync(Ctx& ctx, S& s) const {
    using T = typename Ctx::value_type;
    average_into_scratch(ctx);
    sync_report report;
    report.alpha = options_.alpha;
    distances d;
    if (!measure_distances(ctx, view(s.center), report, d)) return report;
    update_params(ctx, detail::elastic_fn<T>{static_cast<T>(options_.alpha), static_cast<T>(beta(ctx.comm.size()))},
                  view(s.center), typename Ctx::const_view_type(ctx.scratch));
    return report;
  }

 private:
  elastic_options options_;
};

}  // namespace dppf
