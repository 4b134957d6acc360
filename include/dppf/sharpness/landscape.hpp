#pragma once
// Loss-landscape slices: f on a grid along directions from x.
//   landscape_1d(ex, loss, x, u, grid)              f(x + a u),        a in grid
//   landscape_2d(ex, loss, x, u, v, ga, gb)         f(x + a u + b v),  values[i * gb.size() + j]
//   landscape_1d / landscape_2d with random_directions{...} instead of u (and v): directions
//     keyed (seed, 0) and (seed, 1), Gaussian unit or filter-normalized (Li et al. 2018)
//   landscape_1d_through(ex, loss, from, to, grid)  f(from + a (to - from)): a = 0 at `from`, 1 at `to`
//   landscape_2d_through(ex, loss, o, p, q, ga, gb) f(o + a (p - o) + b (q - o)), e.g. x_bar, x_i, x_j
// Cost: one loss call per grid point.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common.hpp"

namespace dppf {

/// Random directions for a landscape slice: u keyed (seed, 0), v keyed (seed, 1).
struct random_directions {
  std::uint64_t seed = 0;
  direction_options direction{};
};

struct landscape_result {
  std::vector<double> a;       ///< grid along the first direction
  std::vector<double> b;       ///< grid along the second direction (empty for 1-D)
  std::vector<double> values;  ///< f at each grid point; 2-D: row-major, values[i * b.size() + j]
  std::size_t oracle_calls = 0;
};

/// n points evenly spaced from lo to hi (both included; one point is lo).
inline std::vector<double> linspace(double lo, double hi, std::size_t n) {
  std::vector<double> g(n);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = n == 1 ? lo : lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1);
  return g;
}

namespace detail {

inline void require_grid(std::span<const double> g, const char* who, const char* name) {
  if (g.empty()) throw_invalid(std::string(who) + ": " + name + " is empty");
  for (double a : g)
    if (!std::isfinite(a)) throw_invalid(std::string(who) + ": " + name + " holds a non-finite value");
}

template <class E, class Loss, class X, class U, class V>
landscape_result landscape_grid(const E& ex, Loss& loss, const X& x, const U& u, const V* v, std::span<const double> ga,
                                std::span<const double> gb, const char* who) {
  using T = oracle_value_t<X>;
  const std::size_t n = std::ranges::size(x);
  require_not_empty(n, (std::string(who) + ": x").c_str());
  require_same_size(n, std::ranges::size(u), (std::string(who) + ": u").c_str());
  require_grid(ga, who, "grid a");
  if (v) {
    require_same_size(n, std::ranges::size(*v), (std::string(who) + ": v").c_str());
    require_grid(gb, who, "grid b");
  }
  oracle_calls calls{who};
  landscape_result r;
  r.a.assign(ga.begin(), ga.end());
  if (v) r.b.assign(gb.begin(), gb.end());
  auto y = ex.template allocate<T>(n);
  for (double a : ga) {
    if (!v) {
      ex.transform(ray_fn<T>{a}, const_view(x), const_view(u), mutable_view(y));
      r.values.push_back(calls.loss(loss, const_view(y), "at a = " + std::to_string(a)));
      continue;
    }
    for (double b : gb) {
      ex.transform(plane_fn<T>{a, b}, const_view(x), const_view(u), const_view(*v), mutable_view(y));
      r.values.push_back(calls.loss(loss, const_view(y), "at (a, b) = (" + std::to_string(a) + ", " + std::to_string(b) + ")"));
    }
  }
  r.oracle_calls = calls.count;
  return r;
}

template <class E, class X>
auto difference(const E& ex, const X& from, const X& to, const char* who) {
  using T = oracle_value_t<X>;
  require_same_size(std::ranges::size(from), std::ranges::size(to), (std::string(who) + ": second point").c_str());
  auto d = ex.template allocate<T>(std::ranges::size(from));
  ex.transform(difference_fn<T>{}, const_view(from), const_view(to), mutable_view(d));
  return d;
}

}  // namespace detail

/// f(x + a u) for a in grid.
template <executor E, class Loss, parameter_buffer X, parameter_buffer U>
  requires runs_on<E, X> && runs_on<E, U>
landscape_result landscape_1d(const E& ex, Loss&& loss, const X& x, const U& u, std::span<const double> grid) {
  return detail::landscape_grid(ex, loss, x, u, static_cast<const U*>(nullptr), grid, {}, "landscape_1d");
}

/// f(x + a u + b v) on the grid ga x gb.
template <executor E, class Loss, parameter_buffer X, parameter_buffer U, parameter_buffer V>
  requires runs_on<E, X> && runs_on<E, U> && runs_on<E, V>
landscape_result landscape_2d(const E& ex, Loss&& loss, const X& x, const U& u, const V& v, std::span<const double> ga,
                              std::span<const double> gb) {
  return detail::landscape_grid(ex, loss, x, u, &v, ga, gb, "landscape_2d");
}

/// f(x + a u), u the random direction keyed (seed, 0).
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
landscape_result landscape_1d(const E& ex, Loss&& loss, const X& x, std::span<const double> grid,
                              const random_directions& directions) {
  detail::require_not_empty(std::ranges::size(x), "landscape_1d: x");
  auto u = ex.template allocate<detail::oracle_value_t<X>>(std::ranges::size(x));
  random_direction(ex, x, u, {directions.seed, 0}, directions.direction);
  return landscape_1d(ex, loss, x, u, grid);
}

/// f(x + a u + b v), u and v the random directions keyed (seed, 0) and (seed, 1).
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
landscape_result landscape_2d(const E& ex, Loss&& loss, const X& x, std::span<const double> ga, std::span<const double> gb,
                              const random_directions& directions) {
  detail::require_not_empty(std::ranges::size(x), "landscape_2d: x");
  auto u = ex.template allocate<detail::oracle_value_t<X>>(std::ranges::size(x));
  auto v = ex.template allocate<detail::oracle_value_t<X>>(std::ranges::size(x));
  random_direction(ex, x, u, {directions.seed, 0}, directions.direction);
  random_direction(ex, x, v, {directions.seed, 1}, directions.direction);
  return landscape_2d(ex, loss, x, u, v, ga, gb);
}

/// f(from + a (to - from)): the line through two points (for example x_bar -> x_i).
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
landscape_result landscape_1d_through(const E& ex, Loss&& loss, const X& from, const X& to, std::span<const double> grid) {
  detail::require_not_empty(std::ranges::size(from), "landscape_1d_through: from");
  const auto d = detail::difference(ex, from, to, "landscape_1d_through");
  return detail::landscape_grid(ex, loss, from, d, static_cast<const decltype(d)*>(nullptr), grid, {},
                                "landscape_1d_through");
}

/// f(o + a (p - o) + b (q - o)): the plane through three points (for example x_bar, x_i, x_j).
template <executor E, class Loss, parameter_buffer X>
  requires runs_on<E, X>
landscape_result landscape_2d_through(const E& ex, Loss&& loss, const X& o, const X& p, const X& q,
                                      std::span<const double> ga, std::span<const double> gb) {
  detail::require_not_empty(std::ranges::size(o), "landscape_2d_through: origin");
  const auto u = detail::difference(ex, o, p, "landscape_2d_through");
  const auto v = detail::difference(ex, o, q, "landscape_2d_through");
  return detail::landscape_grid(ex, loss, o, u, &v, ga, gb, "landscape_2d_through");
}

}  // namespace dppf
