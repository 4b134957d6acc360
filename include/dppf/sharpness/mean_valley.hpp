#pragma once
// dppf::mean_valley and dppf::inverse_mean_valley: the width of the valley around x.
//
//   t_k = inf{ t > 0 : f(x + t u_k) >= level },  level = f(x) + delta  or  kappa f(x)
//   MV  = mean_k t_k   (two-sided: t_k = t_k+ + t_k-, the crossing along u_k plus along -u_k)
//   IMV = 1 / MV
//
// u_k is the random direction keyed (seed, k): a Gaussian unit vector, or filter-normalized per
// layout segment. Each crossing is bracketed (t = initial_step, growing by `growth`) and then
// bisected until the bracket is at most `tolerance` times its upper end; a side that stays below
// the level up to t_max counts as censored, with width t_max.
// Cost: 1 + per side (bracketing steps + bisection steps) loss calls, about
// 1 + K * sides * (log_growth(t / initial_step) + 1 + log2(1 / tolerance)).

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../error.hpp"
#include "common.hpp"

namespace dppf {

/// How the level a direction must reach is set.
enum class valley_threshold {
  additive,        ///< f(x) + delta
  multiplicative,  ///< kappa * f(x) (needs f(x) > 0 and kappa > 1)
};

struct mean_valley_options {
  std::size_t directions = 16;  ///< K, number of random directions (> 0)
  double delta = 0.1;           ///< additive threshold: level = f(x) + delta (> 0)
  valley_threshold threshold = valley_threshold::additive;
  double kappa = 2.0;           ///< multiplicative threshold: level = kappa f(x) (> 1)
  bool two_sided = false;       ///< width t+ + t- instead of t+
  double tolerance = 1e-3;      ///< relative bisection tolerance, in (0, 1)
  double t_max = 1e3;           ///< cap on t; sides still below the level are censored (> 0)
  double initial_step = 1e-2;   ///< first bracketing step, in (0, t_max]
  double growth = 2.0;          ///< bracketing growth factor (> 1)
  direction_options direction{};  ///< Gaussian unit (default) or filter-normalized directions
  std::uint64_t seed = 0;       ///< direction k is keyed (seed, k)

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    constexpr const char* owner = "mean_valley";
    detail::require_option(directions > 0, owner, "directions", directions, "must be > 0");
    detail::require_option(std::isfinite(t_max) && t_max > 0.0, owner, "t_max", t_max, "must be finite and > 0");
    detail::require_option(threshold != valley_threshold::additive || (std::isfinite(delta) && delta > 0.0), owner,
                           "delta", delta, "must be finite and > 0");
    detail::require_option(threshold != valley_threshold::multiplicative || (std::isfinite(kappa) && kappa > 1.0),
                           owner, "kappa", kappa, "must be finite and > 1");
    detail::require_option(tolerance > 0.0 && tolerance < 1.0, owner, "tolerance", tolerance, "must be in (0, 1)");
    detail::require_option(initial_step > 0.0 && initial_step <= t_max, owner, "initial_step", initial_step,
                           "must be in (0, t_max]");
    detail::require_option(std::isfinite(growth) && growth > 1.0, owner, "growth", growth, "must be finite and > 1");
  }
};

struct mean_valley_result {
  double value = 0.0;           ///< MV (mean_valley) or 1 / MV (inverse_mean_valley)
  double mean_width = 0.0;      ///< MV
  std::vector<double> widths;   ///< t_k per direction (t_k+ + t_k- when two-sided)
  std::size_t censored = 0;     ///< sides that reached t_max below the level
  double loss = 0.0;            ///< f(x)
  double level = 0.0;          ///< the level the crossings reach
  std::size_t oracle_calls = 0;  ///< loss calls
};

namespace detail {

// The crossing along sign * u: bracket, then bisect. Returns the width; `censored` set when capped.
template <class E, class F, class X, class U, class Y>
double valley_side(const E& ex, F& loss, oracle_calls& calls, const X& x, const U& u, Y& y, double sign, double level,
                   const mean_valley_options& o, std::size_t k, bool& censored) {
  using T = oracle_value_t<Y>;
  const auto xv = const_view(x);
  const auto uv = const_view(u);
  const auto yv = mutable_view(y);
  const auto yc = const_view(y);
  const auto at = [&](double t) {
    ex.transform(ray_fn<T>{sign * t}, xv, uv, yv);
    return calls.loss(loss, yc, "at t = " + std::to_string(sign * t) + " along direction " + std::to_string(k));
  };
  double lo = 0.0, hi = o.initial_step;
  censored = false;
  while (at(hi) < level) {
    if (hi >= o.t_max) {
      censored = true;
      return o.t_max;
    }
    lo = hi;
    hi = std::min(hi * o.growth, o.t_max);
  }
  while (hi - lo > o.tolerance * hi) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;  // lo and hi are adjacent doubles: as tight as it gets
    if (at(mid) >= level)
      hi = mid;
    else
      lo = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace detail

/// The mean valley width of `loss` around x over options.directions random directions.
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
mean_valley_result mean_valley(const E& ex, Loss&& loss, const X& x, const mean_valley_options& options = {}) {
  constexpr const char* who = "mean_valley";
  options.validate();
  const std::size_t n = std::ranges::size(x);
  detail::require_not_empty(n, "mean_valley: x");
  detail::require_layout(options.direction, n, who);
  using T = detail::oracle_value_t<X>;

  detail::oracle_calls calls{who};
  mean_valley_result r;
  r.loss = calls.loss(loss, detail::const_view(x), "at x");
  if (options.threshold == valley_threshold::additive) {
    r.level = r.loss + options.delta;
  } else {
    if (!(r.loss > 0.0))
      detail::throw_invalid("mean_valley: the multiplicative threshold needs f(x) > 0 (got f(x) = " +
                            std::to_string(r.loss) + ")");
    r.level = options.kappa * r.loss;
  }

  auto u = ex.template allocate<T>(n);
  auto y = ex.template allocate<T>(n);
  r.widths.reserve(options.directions);
  for (std::size_t k = 0; k < options.directions; ++k) {
    random_direction(ex, x, u, {options.seed, k}, options.direction);
    bool censored = false;
    double width = detail::valley_side(ex, loss, calls, x, u, y, 1.0, r.level, options, k, censored);
    r.censored += censored;
    if (options.two_sided) {
      width += detail::valley_side(ex, loss, calls, x, u, y, -1.0, r.level, options, k, censored);
      r.censored += censored;
    }
    r.widths.push_back(width);
  }
  double total = 0.0;
  for (double w : r.widths) total += w;
  r.mean_width = total / static_cast<double>(r.widths.size());
  r.value = r.mean_width;
  r.oracle_calls = calls.count;
  return r;
}

/// Inverse Mean Valley: value = 1 / MV (the sharpness; larger is sharper). Same cost as mean_valley.
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
mean_valley_result inverse_mean_valley(const E& ex, Loss&& loss, const X& x, const mean_valley_options& options = {}) {
  mean_valley_result r = mean_valley(ex, loss, x, options);
  r.value = 1.0 / r.mean_width;
  return r;
}

}  // namespace dppf
