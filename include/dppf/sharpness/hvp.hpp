#pragma once
// Hessian-vector products for the curvature estimators: the user's hvp (one oracle call), or
// central differences of gradients (two loss_and_grad calls):
//   H v ~ (g(x + h v) - g(x - h v)) / (2 h),   h = fd_step * (1 + ||x||) / ||v||
// with fd_step = cbrt(machine epsilon of the parameter type) by default, the step that balances
// truncation (O(h^2)) against rounding (O(eps / h)). Exact for quadratics up to rounding.

#include <cmath>
#include <limits>
#include <string>

#include "common.hpp"

namespace dppf::detail {

template <class T>
double default_fd_step() {
  return std::cbrt(static_cast<double>(std::numeric_limits<T>::epsilon()));
}

// Computes out = H(x) v from either oracle kind, with scratch allocated once.
template <class E, class Oracle, class T>
class hvp_engine {
 public:
  // fd_step <= 0 picks default_fd_step<T>(); the step is scaled to x's norm.
  template <class X>
  hvp_engine(const E& ex, Oracle& oracle, const X& x, double fd_step)
      : ex_(ex), oracle_(oracle), step_((fd_step > 0.0 ? fd_step : default_fd_step<T>()) * (1.0 + norm(ex, x))) {
    const std::size_t n = std::ranges::size(x);
    if constexpr (!is_user_hvp) {
      plus_ = ex.template allocate<T>(n);
      minus_ = ex.template allocate<T>(n);
      grad_ = ex.template allocate<T>(n);
    }
  }

  template <class X, class V, class O>
  void operator()(oracle_calls& calls, const X& x, const V& v, O& out) {
    if constexpr (is_user_hvp) {
      calls.hvp(oracle_.hvp, const_view(x), const_view(v), mutable_view(out));
    } else {
      const double vn = norm(ex_, v);
      if (!(vn > 0.0)) throw_invalid(std::string(calls.who) + ": Hessian-vector product with a zero vector");
      const double h = step_ / vn;
      ex_.transform(ray_fn<T>{h}, const_view(x), const_view(v), mutable_view(plus_));
      calls.loss_and_grad(oracle_, const_view(plus_), mutable_view(grad_), "at x + h v");
      ex_.transform(ray_fn<T>{-h}, const_view(x), const_view(v), mutable_view(plus_));
      calls.loss_and_grad(oracle_, const_view(plus_), mutable_view(minus_), "at x - h v");
      ex_.transform(central_difference_fn<T>{0.5 / h}, const_view(grad_), const_view(minus_), mutable_view(out));
    }
  }

 private:
  template <class>
  struct is_hvp : std::false_type {};
  template <class F>
  struct is_hvp<hvp_oracle<F>> : std::true_type {};
  static constexpr bool is_user_hvp = is_hvp<std::remove_cvref_t<Oracle>>::value;
  using buffer = buffer_t<E, T>;

  const E& ex_;
  Oracle& oracle_;
  double step_;
  buffer plus_{}, minus_{}, grad_{};
};

}  // namespace dppf::detail
