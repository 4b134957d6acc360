#pragma once
// dppf::sgd: stochastic gradient descent with exactly the update of torch.optim.SGD
// (momentum, dampening, Nesterov, weight decay, maximize), including its first-step rule: the
// momentum buffer starts as a copy of the first (decayed) gradient, without dampening.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "../buffer.hpp"
#include "../config.hpp"
#include "detail/optimizer_base.hpp"
#include "local_optimizer.hpp"
#include "../error.hpp"
#include "../executor.hpp"

namespace dppf {

struct sgd_options {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(lr >= 0.0 && std::isfinite(lr), "sgd", "lr", lr, "must be >= 0 and finite");
    detail::require_option(momentum >= 0.0, "sgd", "momentum", momentum, "must be >= 0");
    detail::require_option(dampening >= 0.0 && dampening <= 1.0, "sgd", "dampening", dampening, "must be in [0, 1]");
    detail::require_option(weight_decay >= 0.0, "sgd", "weight_decay", weight_decay, "must be >= 0");
    detail::require_option(!nesterov || momentum > 0.0, "sgd", "nesterov", "true",
                           "requires momentum > 0 (momentum is 0)");
    detail::require_option(!nesterov || dampening == 0.0, "sgd", "nesterov", "true", "requires dampening = 0");
  }
};

/// A worker's SGD state: the momentum buffer (empty without momentum) and the step count.
template <class Buffer>
struct sgd_state {
  Buffer momentum_buffer;
  std::int64_t step = 0;

  template <class F>
  void for_each_buffer(F&& f) {
    if (!std::ranges::empty(momentum_buffer)) f("momentum_buffer", momentum_buffer);
  }
  template <class F>
  void for_each_counter(F&& f) {
    f("step", step);
  }
};

namespace detail {

// One SGD step on one element, in the order torch.optim.SGD applies its operations; scalars are
// rounded to T as PyTorch rounds Python floats for a tensor of dtype T.
template <class T>
struct sgd_update {
  T neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, first_step;

  DPPF_HOST_DEVICE T direction(T& p, const T& g) const {
    T d = maximize ? -g : g;
    if (weight_decay != T(0)) d = d + weight_decay * p;
    return d;
  }
  // Without momentum.
  DPPF_HOST_DEVICE void operator()(T& p, const T& g) const { p = p + neg_lr * direction(p, g); }
  // With a momentum buffer m.
  DPPF_HOST_DEVICE void operator()(T& p, const T& g, T& m) const {
    T d = direction(p, g);
    m = first_step ? d : m * momentum + one_minus_dampening * d;
    d = nesterov ? d + momentum * m : m;
    p = p + neg_lr * d;
  }
};

}  // namespace detail

class sgd : public detail::optimizer_base<sgd, sgd_options> {
 public:
  static constexpr const char* name = "sgd";
  using optimizer_base::init;

  explicit sgd(sgd_options options = {}) : optimizer_base(options) { options_.validate(); }

  /// State for n parameters of type T, allocated by (and in the memory space of) ex.
  template <parameter_value T = float, executor E>
  sgd_state<buffer_t<E, T>> init(const E& ex, std::size_t n) const {
    detail::require_not_empty(n, "sgd::init: parameters");
    return {options_.momentum != 0.0 ? ex.template allocate<T>(n) : ex.template allocate<T>(0), 0};
  }

  /// One torch.optim.SGD step: params -= lr * direction(grads, state).
  template <executor E, parameter_buffer P, parameter_buffer G, class S>
    requires runs_on<E, P> && runs_on<E, G>
  void step(const E& ex, P&& params, const G& grads, S& state) const {
    using T = std::remove_cv_t<buffer_element_t<P>>;
    detail::require_state_element<std::ranges::range_value_t<decltype(state.momentum_buffer)>, T>();
    const std::size_t n = std::ranges::size(params);
    detail::require_not_empty(n, "sgd::step: parameters");
    detail::require_same_size(n, std::ranges::size(grads), "sgd::step: gradients");
    const detail::sgd_update<T> f{static_cast<T>(-options_.lr),
                                  static_cast<T>(options_.momentum),
                                  static_cast<T>(1.0 - options_.dampening),
                                  static_cast<T>(options_.weight_decay),
                                  options_.nesterov,
                                  options_.maximize,
                                  state.step == 0};
    if (options_.momentum != 0.0) {
      detail::require_same_size(n, std::ranges::size(state.momentum_buffer), "sgd::step: momentum buffer");
      ex.transform(f, view(params), view(grads), view(state.momentum_buffer));
    } else {
      ex.transform(f, view(params), view(grads));
    }
    ++state.step;
  }

};

}  // namespace dppf
