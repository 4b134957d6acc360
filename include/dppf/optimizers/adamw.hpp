#pragma once
// dppf::adamw: Adam with decoupled weight decay, exactly the update of torch.optim.AdamW
// (bias corrections, amsgrad, maximize): p *= 1 - lr wd; m, v moving averages;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../buffer.hpp"
#include "../config.hpp"
#include "detail/optimizer_base.hpp"
#include "local_optimizer.hpp"
#include "../error.hpp"
#include "../executor.hpp"

namespace dppf {

struct adamw_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(lr >= 0.0 && std::isfinite(lr), "adamw", "lr", lr, "must be >= 0 and finite");
    detail::require_option(beta1 >= 0.0 && beta1 < 1.0, "adamw", "beta1", beta1, "must be in [0, 1)");
    detail::require_option(beta2 >= 0.0 && beta2 < 1.0, "adamw", "beta2", beta2, "must be in [0, 1)");
    detail::require_option(eps > 0.0, "adamw", "eps", eps, "must be > 0");
    detail::require_option(weight_decay >= 0.0, "adamw", "weight_decay", weight_decay, "must be >= 0");
  }
};

/// A worker's AdamW state: first and second moments, the running maximum of the second moment
/// (amsgrad only; empty otherwise) and the step count.
template <class Buffer>
struct adamw_state {
  Buffer exp_avg;
  Buffer exp_avg_sq;
  Buffer max_exp_avg_sq;
  std::int64_t step = 0;

  template <class F>
  void for_each_buffer(F&& f) {
    f("exp_avg", exp_avg);
    f("exp_avg_sq", exp_avg_sq);
    if (!std::ranges::empty(max_exp_avg_sq)) f("max_exp_avg_sq", max_exp_avg_sq);
  }
  template <class F>
  void for_each_counter(F&& f) {
    f("step", step);
  }
};

namespace detail {

// One AdamW step on one element, in torch.optim.AdamW's order of operations (addcmul and
// addcdiv multiply the scalar into the first operand first, as ATen's CPU kernels do).
template <class T>
struct adamw_update {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
  bool maximize;

  DPPF_HOST_DEVICE T moments(T& p, const T& g, T& m, T& v) const {
    const T grad = maximize ? -g : g;
    p = p * decay;
    m = m * beta1 + one_minus_beta1 * grad;
    v = v * beta2 + one_minus_beta2 * grad * grad;
    return grad;
  }
  DPPF_HOST_DEVICE void apply(T& p, const T& m, const T& second) const {
    using std::sqrt;
    const T denom = sqrt(second) / bias_correction2_sqrt + eps;
    p = p + neg_step_size * m / denom;
  }
  DPPF_HOST_DEVICE void operator()(T& p, const T& g, T& m, T& v) const {
    moments(p, g, m, v);
    apply(p, m, v);
  }
  // amsgrad: the running maximum vmax of v normalizes the step.
  DPPF_HOST_DEVICE void operator()(T& p, const T& g, T& m, T& v, T& vmax) const {
    moments(p, g, m, v);
    vmax = vmax < v ? v : vmax;
    apply(p, m, vmax);
  }
};

}  // namespace detail

class adamw : public detail::optimizer_base<adamw, adamw_options> {
 public:
  static constexpr const char* name = "adamw";
  using optimizer_base::init;

  explicit adamw(adamw_options options = {}) : optimizer_base(options) { options_.validate(); }

  /// State for n parameters of type T, allocated by (and in the memory space of) ex.
  template <parameter_value T = float, executor E>
  adamw_state<buffer_t<E, T>> init(const E& ex, std::size_t n) const {
    detail::require_not_empty(n, "adamw::init: parameters");
    return {ex.template allocate<T>(n), ex.template allocate<T>(n), ex.template allocate<T>(options_.amsgrad ? n : 0), 0};
  }

  /// One torch.optim.AdamW step.
  template <executor E, parameter_buffer P, parameter_buffer G, class S>
    requires runs_on<E, P> && runs_on<E, G>
  void step(const E& ex, P&& params, const G& grads, S& state) const {
    using T = std::remove_cv_t<buffer_element_t<P>>;
    detail::require_state_element<std::ranges::range_value_t<decltype(state.exp_avg)>, T>();
    const std::size_t n = std::ranges::size(params);
    detail::require_not_empty(n, "adamw::step: parameters");
    detail::require_same_size(n, std::ranges::size(grads), "adamw::step: gradients");
    detail::require_same_size(n, std::ranges::size(state.exp_avg), "adamw::step: exp_avg");
    detail::require_same_size(n, std::ranges::size(state.exp_avg_sq), "adamw::step: exp_avg_sq");
    const auto& o = options_;
    const double t = static_cast<double>(state.step + 1);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, t);
    const detail::adamw_update<T> f{static_cast<T>(1.0 - o.lr * o.weight_decay),
                                    static_cast<T>(o.beta1),
                                    static_cast<T>(1.0 - o.beta1),
                                    static_cast<T>(o.beta2),
                                    static_cast<T>(1.0 - o.beta2),
                                    static_cast<T>(std::sqrt(bias_correction2)),
                                    static_cast<T>(o.eps),
                                    static_cast<T>(-(o.lr / bias_correction1)),
                                    o.maximize};
    if (o.amsgrad) {
      detail::require_same_size(n, std::ranges::size(state.max_exp_avg_sq), "adamw::step: max_exp_avg_sq");
      ex.transform(f, view(params), view(grads), view(state.exp_avg), view(state.exp_avg_sq), view(state.max_exp_avg_sq));
    } else {
      ex.transform(f, view(params), view(grads), view(state.exp_avg), view(state.exp_avg_sq));
    }
    ++state.step;
  }

};

}  // namespace dppf
