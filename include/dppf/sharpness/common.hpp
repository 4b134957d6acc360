#pragma once
// What every sharpness estimator shares: the oracle conventions, the counted and checked oracle
// call, the elementwise functors that build probe points, and random (optionally
// filter-normalized) directions.
//
// Oracles (any callables; x and g are views in the executor's memory space, std::span on the host):
//   loss(x) -> double                    f(x)
//   loss_and_grad(x, g) -> double        f(x), writing grad f(x) into g
//   hvp(x, v, out)                       out = H(x) v
// Each call counts as one oracle call. Estimators never write to x: probe points live in scratch
// buffers allocated through the executor.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../algorithms.hpp"
#include "../buffer.hpp"
#include "../error.hpp"
#include "../executor.hpp"
#include "../layout.hpp"
#include "../random/directions.hpp"

namespace dppf {

/// Wraps a user Hessian-vector product hvp(x, v, out) so estimators use it instead of finite
/// differences of gradients: hessian_top_eigenvalue(ex, dppf::hvp_oracle{my_hvp}, x, options).
template <class F>
struct hvp_oracle {
  F hvp;
};
template <class F>
hvp_oracle(F) -> hvp_oracle<F>;

/// How random directions are drawn.
struct direction_options {
  bool filter_normalized = false;  ///< scale each layout segment to the norm of x's segment
  parameter_layout layout{};       ///< segments for filter normalization (empty: x is one segment)
};

namespace detail {

template <class B>
using oracle_value_t = std::remove_cv_t<buffer_element_t<B>>;

template <class B>
auto mutable_view(B& b) {
  using T = oracle_value_t<B>;
  return span_for<memory_space_t<B>, T>{std::ranges::data(b), std::ranges::size(b)};
}

// Throws dppf::non_finite_error naming the estimator and the probe.
[[noreturn]] inline void throw_non_finite(const char* who, const char* oracle, double value, const std::string& where) {
  std::ostringstream msg;
  msg << "dppf: " << who << ": " << oracle << " returned " << value << " " << where
      << " (oracles must return finite values)";
  throw non_finite_error(msg.str());
}

// Counts oracle calls and rejects non-finite values.
struct oracle_calls {
  const char* who;
  std::size_t count = 0;

  template <class F, class X>
  double loss(F& f, const X& x, const std::string& where = "") {
    const double v = static_cast<double>(f(x));
    ++count;
    if (!std::isfinite(v)) throw_non_finite(who, "loss", v, where);
    return v;
  }
  template <class F, class X, class G>
  double loss_and_grad(F& f, const X& x, const G& g, const std::string& where = "") {
    const double v = static_cast<double>(f(x, g));
    ++count;
    if (!std::isfinite(v)) throw_non_finite(who, "loss_and_grad", v, where);
    return v;
  }
  template <class F, class X, class V, class O>
  void hvp(F& f, const X& x, const V& v, const O& out) {
    f(x, v, out);
    ++count;
  }
};

template <class T>
struct ray_fn {  // y = x + t u
  double t;
  DPPF_HOST_DEVICE void operator()(const T& x, const T& u, T& y) const {
    y = static_cast<T>(static_cast<double>(x) + t * static_cast<double>(u));
  }
};

template <class T>
struct plane_fn {  // y = x + a u + b v
  double a, b;
  DPPF_HOST_DEVICE void operator()(const T& x, const T& u, const T& v, T& y) const {
    y = static_cast<T>(static_cast<double>(x) + a * static_cast<double>(u) + b * static_cast<double>(v));
  }
};

template <class T>
struct difference_fn {  // d = to - from
  DPPF_HOST_DEVICE void operator()(const T& from, const T& to, T& d) const {
    d = static_cast<T>(static_cast<double>(to) - static_cast<double>(from));
  }
};

template <class T>
struct central_difference_fn {  // out = (g_plus - g_minus) / (2 h)
  double inv_two_h;
  DPPF_HOST_DEVICE void operator()(const T& plus, const T& minus, T& out) const {
    out = static_cast<T>((static_cast<double>(plus) - static_cast<double>(minus)) * inv_two_h);
  }
};

template <class E, class B>
double norm(const E& ex, const B& b) {
  return std::sqrt(squared_norm(ex, b));
}

// Scales u in place to unit norm; throws when u is zero (a zero direction probes nothing).
template <class E, class B>
void normalize(const E& ex, B& u, const char* who) {
  const double n = norm(ex, u);
  if (!(n > 0.0) || !std::isfinite(n)) throw_invalid(std::string(who) + ": a direction has norm " + std::to_string(n));
  ex.transform(scale_fn<oracle_value_t<B>>{1.0 / n}, mutable_view(u));
}

// The mean of v and its standard error (sample standard deviation / sqrt(size); 0 for one value).
inline void mean_and_standard_error(const std::vector<double>& v, double& mean, double& se) {
  double total = 0.0;
  for (double s : v) total += s;
  mean = total / static_cast<double>(v.size());
  se = 0.0;
  if (v.size() > 1) {
    double ss = 0.0;
    for (double s : v) ss += (s - mean) * (s - mean);
    se = std::sqrt(ss / static_cast<double>(v.size() - 1) / static_cast<double>(v.size()));
  }
}

inline void require_layout(const direction_options& d, std::size_t n, const char* who) {
  if (d.filter_normalized && d.layout.size() != 0) d.layout.require_covers(n, (std::string(who) + ": x").c_str());
}

}  // namespace detail

/// Scales each segment of direction d to the norm of the same segment of x (filter
/// normalization, Li et al. 2018); the whole buffer is one segment when the layout is empty. A
/// segment of x that is zero makes the segment of d zero. Returns the norm of the result.
template <executor E, parameter_buffer X, parameter_buffer D>
  requires runs_on<E, X> && runs_on<E, D>
double filter_normalize(const E& ex, const X& x, D& d, const parameter_layout& layout = {}) {
  const std::size_t n = std::ranges::size(x);
  detail::require_same_size(n, std::ranges::size(d), "filter_normalize: direction");
  if (layout.size() != 0) layout.require_covers(n, "filter_normalize: x");
  const auto xv = detail::const_view(x);
  const auto dv = detail::mutable_view(d);
  using T = detail::oracle_value_t<D>;
  double total = 0.0;
  const auto scale_segment = [&](std::size_t offset, std::size_t size) {
    const auto xs = xv.subspan(offset, size);
    const auto ds = dv.subspan(offset, size);
    const double nx = std::sqrt(ex.transform_reduce(detail::square_fn{}, xs));
    const double nd = std::sqrt(ex.transform_reduce(detail::square_fn{}, ds));
    ex.transform(detail::scale_fn<T>{nd > 0.0 ? nx / nd : 0.0}, ds);
    if (nd > 0.0) total += nx * nx;
  };
  if (layout.size() == 0) {
    scale_segment(0, n);
  } else {
    for (const auto& s : layout.segments()) scale_segment(s.offset, s.size);
  }
  return std::sqrt(total);
}

/// Writes into d the random direction an estimator draws for `key`: a Gaussian vector scaled to
/// unit norm, or filter-normalized against x when options.filter_normalized (which needs x != 0).
template <executor E, parameter_buffer X, parameter_buffer D>
  requires runs_on<E, X> && runs_on<E, D>
void random_direction(const E& ex, const X& x, D& d, random_key key, const direction_options& options = {}) {
  detail::require_same_size(std::ranges::size(x), std::ranges::size(d), "random_direction: direction");
  fill_normal(ex, d, key);
  if (options.filter_normalized) {
    // A zero direction would probe nothing (every valley width would come back censored).
    if (!(filter_normalize(ex, x, d, options.layout) > 0.0))
      detail::throw_invalid("random_direction: the filter-normalized direction is zero (x is zero in every segment)");
  } else
    detail::normalize(ex, d, "random_direction");
}

}  // namespace dppf
