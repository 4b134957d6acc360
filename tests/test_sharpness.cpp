// Sharpness estimators on quadratics f(x) = 1/2 x^T H x with diagonal and rotated H (condition
// numbers up to 1e4), against closed forms computed from the same random directions in plain
// double loops; executor independence; bad input.
#include <doctest/doctest.h>

#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/sharpness.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "support.hpp"

namespace {

// f = 1/2 x^T H x with H dense (rotated) or diagonal; every oracle evaluates in plain double loops.
struct quadratic {
  std::size_t n = 0;
  std::vector<double> h;  // n*n row-major, or empty when diagonal
  std::vector<double> d;  // diagonal when h is empty

  double entry(std::size_t i, std::size_t j) const { return h.empty() ? (i == j ? d[i] : 0.0) : h[i * n + j]; }

  template <class X>
  std::vector<double> apply(const X& x) const {
    std::vector<double> y(n, 0.0);
    if (h.empty()) {
      for (std::size_t i = 0; i < n; ++i) y[i] = d[i] * static_cast<double>(x[i]);
    } else {
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) y[i] += h[i * n + j] * static_cast<double>(x[j]);
    }
    return y;
  }
  template <class X, class Y>
  double form(const X& x, const Y& y) const {  // x^T H y
    const auto hy = apply(y);
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * hy[i];
    return s;
  }
  template <class X>
  double value(const X& x) const { return 0.5 * form(x, x); }
  double trace() const {
    double t = 0.0;
    for (std::size_t i = 0; i < n; ++i) t += entry(i, i);
    return t;
  }
  double frobenius2() const {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) s += entry(i, j) * entry(i, j);
    return s;
  }
  double off_diagonal2() const {
    double s = frobenius2();
    for (std::size_t i = 0; i < n; ++i) s -= entry(i, i) * entry(i, i);
    return s;
  }
};

// Eigenvalues log-spaced from 1 to cond (largest last), shuffled.
std::vector<double> spectrum(std::size_t n, double cond, std::uint64_t seed) {
  std::vector<double> e(n);
  for (std::size_t i = 0; i < n; ++i) e[i] = std::pow(cond, static_cast<double>(i) / static_cast<double>(n - 1));
  std::mt19937_64 gen(seed);
  std::shuffle(e.begin(), e.end(), gen);
  return e;
}

quadratic diagonal_quadratic(std::size_t n, double cond, std::uint64_t seed) {
  return {n, {}, spectrum(n, cond, seed)};
}

// H = Q diag(e) Q^T, Q a product of three Householder reflections of random vectors.
quadratic rotated_quadratic(std::size_t n, double cond, std::uint64_t seed) {
  const auto e = spectrum(n, cond, seed);
  std::vector<double> q(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) q[i * n + i] = 1.0;
  for (int r = 0; r < 3; ++r) {
    auto w = dppf_test::random_vector<double>(n, seed + 100 + r);
    double ww = 0.0;
    for (double v : w) ww += v * v;
    for (std::size_t i = 0; i < n; ++i) {  // rows of Q times (I - 2 w w^T / w^T w)
      double s = 0.0;
      for (std::size_t j = 0; j < n; ++j) s += q[i * n + j] * w[j];
      for (std::size_t j = 0; j < n; ++j) q[i * n + j] -= 2.0 * s * w[j] / ww;
    }
  }
  quadratic f{n, std::vector<double>(n * n, 0.0), {}};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t k = 0; k < n; ++k) f.h[i * n + j] += q[i * n + k] * e[k] * q[j * n + k];
  return f;
}

// The oracles, counting their calls.
struct oracles {
  const quadratic* f;
  std::size_t calls = 0;
  auto loss() {
    return [this](auto x) {
      ++calls;
      return f->value(x);
    };
  }
  auto loss_and_grad() {
    return [this](auto x, auto g) {
      ++calls;
      const auto hx = f->apply(x);
      for (std::size_t i = 0; i < f->n; ++i) g[i] = static_cast<std::remove_reference_t<decltype(g[i])>>(hx[i]);
      return f->value(x);
    };
  }
  auto hvp() {
    return [this](auto, auto v, auto out) {
      ++calls;
      const auto hv = f->apply(v);
      for (std::size_t i = 0; i < f->n; ++i) out[i] = static_cast<std::remove_reference_t<decltype(out[i])>>(hv[i]);
    };
  }
};

// The unit Gaussian direction keyed (seed, k), computed without the library's executors.
std::vector<double> reference_direction(std::size_t n, std::uint64_t seed, std::uint64_t k) {
  std::vector<double> u(n);
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += (u[i] = dppf::normal_at({seed, k}, i)) * u[i];
  for (auto& v : u) v /= std::sqrt(s);
  return u;
}

// Smallest t > 0 with f(x + t u) = f(x) + delta for the quadratic: t^2 q / 2 + t g.u - delta = 0.
double crossing(const quadratic& f, const std::vector<double>& x, const std::vector<double>& u, double delta) {
  const double q = f.form(u, u);
  const double gu = f.form(u, x);
  return (-gu + std::sqrt(gu * gu + 2.0 * delta * q)) / q;
}

std::vector<double> negated(std::vector<double> u) {
  for (auto& v : u) v = -v;
  return u;
}

}  // namespace

TEST_CASE("mean_valley equals sqrt(2 delta / u^T H u) averaged over the drawn directions") {
  dppf::host_executor ex;
  for (bool rotated : {false, true}) {
    for (double cond : {1.0e2, 1.0e4}) {
      CAPTURE(rotated);
      CAPTURE(cond);
      const std::size_t n = 40;
      const quadratic f = rotated ? rotated_quadratic(n, cond, 7) : diagonal_quadratic(n, cond, 7);
      oracles o{&f};
      const std::vector<double> x(n, 0.0);
      const dppf::mean_valley_options opt{.directions = 12, .delta = 0.1, .tolerance = 1e-10, .seed = 3};
      const auto mv = dppf::mean_valley(ex, o.loss(), x, opt);
      REQUIRE(mv.widths.size() == 12);
      double mean = 0.0;
      for (std::size_t k = 0; k < 12; ++k) {
        const auto u = reference_direction(n, 3, k);
        const double expected = std::sqrt(2.0 * 0.1 / f.form(u, u));
        CHECK(mv.widths[k] == doctest::Approx(expected).epsilon(1e-9));
        mean += expected / 12.0;
      }
      CHECK(mv.value == doctest::Approx(mean).epsilon(1e-9));
      CHECK(mv.mean_width == mv.value);
      CHECK(mv.censored == 0);
      CHECK(mv.loss == 0.0);
      CHECK(mv.level == 0.1);
      CHECK(mv.oracle_calls == o.calls);
      const auto imv = dppf::inverse_mean_valley(ex, o.loss(), x, opt);
      CHECK(imv.value == doctest::Approx(1.0 / mean).epsilon(1e-9));
      CHECK(imv.mean_width == mv.mean_width);
    }
  }
}

TEST_CASE("mean_valley away from the minimum: two-sided, additive and multiplicative thresholds") {
  dppf::host_executor ex;
  const std::size_t n = 30;
  const quadratic f = rotated_quadratic(n, 1e3, 11);
  const auto x = dppf_test::random_vector<double>(n, 12, 0.01);
  const std::vector<double> x_before = x;
  const double fx = f.value(x);
  for (bool multiplicative : {false, true}) {
    CAPTURE(multiplicative);
    oracles o{&f};
    dppf::mean_valley_options opt{.directions = 8, .delta = 0.05, .two_sided = true, .tolerance = 1e-11, .seed = 9};
    double delta = 0.05;
    if (multiplicative) {
      opt.threshold = dppf::valley_threshold::multiplicative;
      opt.kappa = 3.0;
      delta = 2.0 * fx;
    }
    const auto mv = dppf::mean_valley(ex, o.loss(), x, opt);
    double mean = 0.0;
    for (std::size_t k = 0; k < 8; ++k) {
      const auto u = reference_direction(n, 9, k);
      const double expected = crossing(f, x, u, delta) + crossing(f, x, negated(u), delta);
      CHECK(mv.widths[k] == doctest::Approx(expected).epsilon(1e-9));
      mean += expected / 8.0;
    }
    CHECK(mv.value == doctest::Approx(mean).epsilon(1e-9));
    CHECK(mv.level == doctest::Approx(fx + delta).epsilon(1e-14));
    CHECK(mv.oracle_calls == o.calls);
    CHECK(x == x_before);  // x is never written
  }
}

TEST_CASE("mean_valley caps at t_max and counts censored sides") {
  dppf::host_executor ex;
  const quadratic f = diagonal_quadratic(20, 10.0, 1);
  oracles o{&f};
  const std::vector<double> x(20, 0.0);
  // Every crossing is beyond 1e-3 (widths are at least sqrt(2 * 0.1 / 10) = 0.14).
  const auto mv = dppf::mean_valley(ex, o.loss(), x,
                                    {.directions = 5, .delta = 0.1, .two_sided = true, .t_max = 1e-3, .initial_step = 1e-4});
  CHECK(mv.censored == 10);
  for (double w : mv.widths) CHECK(w == 2e-3);
  CHECK(mv.value == doctest::Approx(2e-3));
  // One-sided, one direction reachable only within the cap: width capped exactly at t_max.
  const auto one = dppf::mean_valley(ex, o.loss(), x, {.directions = 3, .delta = 0.1, .t_max = 0.1, .initial_step = 0.1});
  CHECK(one.censored == 3);
  CHECK(one.oracle_calls == 4);  // f(x) and one probe at t_max per direction
}

TEST_CASE("filter normalization scales each segment to that segment's norm") {
  dppf::host_executor ex;
  const auto layout = dppf::parameter_layout::from_sizes({{"w1", 7}, {"b1", 3}, {"w2", 11}, {"zero", 4}});
  auto x = dppf_test::random_vector<double>(25, 5, 2.0);
  std::fill(x.begin() + 21, x.end(), 0.0);
  std::vector<double> d(25);
  dppf::random_direction(ex, x, d, {4, 2}, {.filter_normalized = true, .layout = layout});
  for (const auto& s : layout.segments()) {
    CAPTURE(s.name);
    double nx = 0.0, nd = 0.0;
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i) nx += x[i] * x[i], nd += d[i] * d[i];
    CHECK(std::sqrt(nd) == doctest::Approx(std::sqrt(nx)).epsilon(1e-13));
    if (s.name == "zero") CHECK(nd == 0.0);
    // The direction within the segment is the Gaussian draw's, only rescaled.
    double ng = 0.0;
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i) ng += std::pow(dppf::normal_at({4, 2}, i), 2);
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i)
      CHECK(d[i] == doctest::Approx(dppf::normal_at({4, 2}, i) * std::sqrt(nx / ng)).epsilon(1e-12));
  }
  // filter_normalize returns the norm of the result: the norm of x over segments with a direction.
  double nx_all = 0.0;
  for (double v : x) nx_all += v * v;
  std::vector<double> d2(25);
  dppf::fill_normal(ex, d2, {4, 2});
  CHECK(dppf::filter_normalize(ex, x, d2, layout) == doctest::Approx(std::sqrt(nx_all)).epsilon(1e-13));
  // Without a layout the whole buffer is one segment.
  dppf::random_direction(ex, x, d, {4, 2}, {.filter_normalized = true});
  double nx = 0.0, nd = 0.0;
  for (std::size_t i = 0; i < 25; ++i) nx += x[i] * x[i], nd += d[i] * d[i];
  CHECK(nd == doctest::Approx(nx).epsilon(1e-13));

  // mean_valley with filter-normalized directions: crossings of those (non-unit) directions.
  const quadratic f = diagonal_quadratic(25, 1e3, 2);
  oracles o{&f};
  const auto mv = dppf::mean_valley(ex, o.loss(), x,
                                    {.directions = 4, .delta = 0.2, .tolerance = 1e-11,
                                     .direction = {.filter_normalized = true, .layout = layout}, .seed = 6});
  for (std::size_t k = 0; k < 4; ++k) {
    std::vector<double> u(25);
    dppf::random_direction(ex, x, u, {6, k}, {.filter_normalized = true, .layout = layout});
    CHECK(mv.widths[k] == doctest::Approx(crossing(f, x, u, 0.2)).epsilon(1e-9));
  }
}

TEST_CASE("hessian_top_eigenvalue finds the largest eigenvalue by central differences and by hvp") {
  dppf::host_executor ex;
  for (bool rotated : {false, true}) {
    CAPTURE(rotated);
    const std::size_t n = 40;
    const quadratic f = rotated ? rotated_quadratic(n, 1e4, 21) : diagonal_quadratic(n, 1e4, 21);
    const auto x = dppf_test::random_vector<double>(n, 22);
    // Gap lambda_2 / lambda_1 = 1e4^(-1/39) = 0.79: the Rayleigh quotient's error shrinks by
    // 0.62 per iteration, so a relative change of 1e-11 leaves an error below ~3e-11.
    const dppf::hessian_top_eigenvalue_options opt{.max_iters = 1000, .tol = 1e-11, .seed = 5};
    oracles fd{&f};
    const auto r = dppf::hessian_top_eigenvalue(ex, fd.loss_and_grad(), x, opt);
    CHECK(r.converged);
    CHECK(r.value == doctest::Approx(1e4).epsilon(1e-8));
    CHECK(r.oracle_calls == 2 * r.iterations);
    CHECK(r.oracle_calls == fd.calls);
    oracles exact{&f};
    const auto e = dppf::hessian_top_eigenvalue(ex, dppf::hvp_oracle{exact.hvp()}, x, opt);
    CHECK(e.converged);
    CHECK(e.value == doctest::Approx(1e4).epsilon(1e-8));
    CHECK(e.oracle_calls == e.iterations);
    CHECK(e.oracle_calls == exact.calls);
  }
  // Not converged within max_iters: reported, with the last estimate.
  const quadratic f = rotated_quadratic(40, 1e4, 21);
  oracles o{&f};
  const auto r = dppf::hessian_top_eigenvalue(ex, dppf::hvp_oracle{o.hvp()}, std::vector<double>(40, 0.5),
                                              {.max_iters = 3, .tol = 1e-12});
  CHECK_FALSE(r.converged);
  CHECK(r.iterations == 3);
  CHECK(r.value < 1e4);
}

TEST_CASE("hessian_trace is Hutchinson's estimate over the drawn Rademacher probes") {
  dppf::host_executor ex;
  const std::size_t n = 40;
  // Diagonal H: every probe gives z^T H z = tr(H) exactly (the estimator's variance is zero).
  {
    const quadratic f = diagonal_quadratic(n, 1e4, 31);
    oracles o{&f};
    const auto r = dppf::hessian_trace(ex, o.loss_and_grad(), dppf_test::random_vector<double>(n, 1), {.samples = 4});
    for (double p : r.probes) CHECK(p == doctest::Approx(f.trace()).epsilon(1e-9));
    CHECK(r.value == doctest::Approx(f.trace()).epsilon(1e-9));
    CHECK(r.oracle_calls == 8);
  }
  // Rotated H: equal to the mean of z^T H z over the same probes, and within 5 standard
  // deviations of the true trace, sd = sqrt(2 sum_{i != j} H_ij^2 / samples).
  const quadratic f = rotated_quadratic(n, 1e4, 32);
  oracles o{&f};
  const std::size_t samples = 64;
  const auto r = dppf::hessian_trace(ex, dppf::hvp_oracle{o.hvp()}, std::vector<double>(n, 0.0),
                                     {.samples = samples, .seed = 8});
  double mean = 0.0;
  for (std::size_t k = 0; k < samples; ++k) {
    std::vector<double> z(n);
    for (std::size_t i = 0; i < n; ++i) z[i] = dppf::rademacher_at({8, k}, i);
    const double q = f.form(z, z);
    CHECK(r.probes[k] == doctest::Approx(q).epsilon(1e-12));
    mean += q / samples;
  }
  CHECK(r.value == doctest::Approx(mean).epsilon(1e-12));
  const double sd = std::sqrt(2.0 * f.off_diagonal2() / samples);
  CHECK(std::abs(r.value - f.trace()) < 5.0 * sd);
  CHECK(r.standard_error > 0.0);
  CHECK(r.oracle_calls == samples);
}

TEST_CASE("sam_sharpness equals rho ||g|| + rho^2 g^T H g / (2 ||g||^2) on a quadratic") {
  dppf::host_executor ex;
  for (bool rotated : {false, true}) {
    CAPTURE(rotated);
    const std::size_t n = 40;
    const quadratic f = rotated ? rotated_quadratic(n, 1e4, 41) : diagonal_quadratic(n, 1e4, 41);
    const auto x = dppf_test::random_vector<double>(n, 42, 0.1);
    oracles o{&f};
    const auto r = dppf::sam_sharpness(ex, o.loss_and_grad(), x, {.rho = 0.03});
    const auto g = f.apply(x);
    double gg = 0.0;
    for (double v : g) gg += v * v;
    const double expected = 0.03 * std::sqrt(gg) + 0.03 * 0.03 * f.form(g, g) / (2.0 * gg);
    CHECK(r.value == doctest::Approx(expected).epsilon(1e-10));
    CHECK(r.gradient_norm == doctest::Approx(std::sqrt(gg)).epsilon(1e-13));
    CHECK(r.loss == f.value(x));
    CHECK(r.oracle_calls == 2);
    CHECK(o.calls == 2);
  }
  // At the minimum the gradient is zero: value 0, no second call.
  const quadratic f = diagonal_quadratic(10, 10.0, 1);
  oracles o{&f};
  const auto r = dppf::sam_sharpness(ex, o.loss_and_grad(), std::vector<double>(10, 0.0));
  CHECK(r.value == 0.0);
  CHECK(r.oracle_calls == 1);
}

TEST_CASE("average_sharpness is the mean loss increase over the drawn Gaussian perturbations") {
  dppf::host_executor ex;
  const std::size_t n = 40;
  const quadratic f = rotated_quadratic(n, 1e2, 51);
  const auto x = dppf_test::random_vector<double>(n, 52, 0.1);
  oracles o{&f};
  const double sigma = 0.02;
  const std::size_t samples = 256;
  const auto r = dppf::average_sharpness(ex, o.loss(), x, {.sigma = sigma, .samples = samples, .seed = 4});
  double mean = 0.0;
  for (std::size_t k = 0; k < samples; ++k) {
    std::vector<double> y(n), noise(n);
    for (std::size_t i = 0; i < n; ++i) noise[i] = dppf::normal_at({4, k}, i), y[i] = x[i] + sigma * noise[i];
    const double inc = f.value(y) - f.value(x);
    CHECK(r.increases[k] == doctest::Approx(inc).epsilon(1e-10));
    mean += inc / samples;
  }
  CHECK(r.value == doctest::Approx(mean).epsilon(1e-10));
  CHECK(r.oracle_calls == samples + 1);
  // E = sigma^2 tr(H) / 2; the variance of one draw is sigma^2 ||g||^2 + sigma^4 ||H||_F^2 / 2.
  const auto g = f.apply(x);
  double gg = 0.0;
  for (double v : g) gg += v * v;
  const double sd = std::sqrt((sigma * sigma * gg + std::pow(sigma, 4) * f.frobenius2() / 2.0) / samples);
  CHECK(std::abs(r.value - sigma * sigma * f.trace() / 2.0) < 5.0 * sd);
}

TEST_CASE("landscape grids equal direct evaluation") {
  dppf::host_executor ex;
  const std::size_t n = 30;
  const quadratic f = rotated_quadratic(n, 1e3, 61);
  oracles o{&f};
  const auto x = dppf_test::random_vector<float>(n, 62);
  const auto u = dppf_test::random_vector<float>(n, 63);
  const auto v = dppf_test::random_vector<float>(n, 64);
  const auto ga = dppf::linspace(-1.0, 1.0, 7);
  const auto gb = dppf::linspace(-0.5, 2.0, 5);
  const auto at = [&](double a, double b, const std::vector<float>& p, const std::vector<float>& q) {
    std::vector<float> y(n);
    for (std::size_t i = 0; i < n; ++i)
      y[i] = static_cast<float>(static_cast<double>(x[i]) + a * static_cast<double>(p[i]) + b * static_cast<double>(q[i]));
    return f.value(y);
  };
  const auto r1 = dppf::landscape_1d(ex, o.loss(), x, u, ga);
  REQUIRE(r1.values.size() == 7);
  for (std::size_t i = 0; i < 7; ++i) CHECK(r1.values[i] == doctest::Approx(at(ga[i], 0.0, u, v)).epsilon(1e-13));
  CHECK(r1.oracle_calls == 7);
  CHECK(r1.a == ga);
  const auto r2 = dppf::landscape_2d(ex, o.loss(), x, u, v, ga, gb);
  REQUIRE(r2.values.size() == 35);
  for (std::size_t i = 0; i < 7; ++i)
    for (std::size_t j = 0; j < 5; ++j)
      CHECK(r2.values[i * 5 + j] == doctest::Approx(at(ga[i], gb[j], u, v)).epsilon(1e-13));
  CHECK(r2.oracle_calls == 35);

  // Random directions: the ones random_direction draws for (seed, 0) and (seed, 1).
  const dppf::random_directions rd{.seed = 3};
  std::vector<float> ru(n), rv(n);
  dppf::random_direction(ex, x, ru, {3, 0});
  dppf::random_direction(ex, x, rv, {3, 1});
  const auto r3 = dppf::landscape_2d(ex, o.loss(), x, ga, gb, rd);
  for (std::size_t i = 0; i < 7; ++i)
    for (std::size_t j = 0; j < 5; ++j)
      CHECK(r3.values[i * 5 + j] == doctest::Approx(at(ga[i], gb[j], ru, rv)).epsilon(1e-13));
  const auto r4 = dppf::landscape_1d(ex, o.loss(), x, ga, rd);
  for (std::size_t i = 0; i < 7; ++i) CHECK(r4.values[i] == doctest::Approx(at(ga[i], 0.0, ru, rv)).epsilon(1e-13));

  // Through given points: a = 0 is `from`, a = 1 is `to`.
  const auto p = dppf_test::random_vector<float>(n, 65);
  const auto q = dppf_test::random_vector<float>(n, 66);
  const std::vector<double> ends{0.0, 0.5, 1.0};
  const auto line = dppf::landscape_1d_through(ex, o.loss(), x, p, ends);
  CHECK(line.values[0] == doctest::Approx(f.value(x)).epsilon(1e-12));
  CHECK(line.values[2] == doctest::Approx(f.value(p)).epsilon(1e-6));  // x + (p - x) rounds in float
  std::vector<float> mid(n);
  for (std::size_t i = 0; i < n; ++i) mid[i] = static_cast<float>(x[i] + 0.5 * static_cast<double>(static_cast<float>(p[i] - x[i])));
  CHECK(line.values[1] == doctest::Approx(f.value(mid)).epsilon(1e-12));
  const auto plane = dppf::landscape_2d_through(ex, o.loss(), x, p, q, ends, ends);
  CHECK(plane.values[0] == doctest::Approx(f.value(x)).epsilon(1e-12));
  CHECK(plane.values[6] == doctest::Approx(f.value(p)).epsilon(1e-6));
  CHECK(plane.values[2] == doctest::Approx(f.value(q)).epsilon(1e-6));
  CHECK(plane.oracle_calls == 9);
}

TEST_CASE("sharpness estimators give the same numbers on host and host_parallel") {
  // Above host_parallel's serial threshold, so fills and reductions really run in parallel blocks.
  const std::size_t n = 50000;
  const quadratic f = diagonal_quadratic(n, 1e4, 71);
  const auto xd = dppf_test::random_vector<double>(n, 72, 1e-3);
  const std::vector<float> xf(xd.begin(), xd.end());
  const auto layout = dppf::parameter_layout::from_sizes({{"a", 20000}, {"b", 30000}});
  const auto run = [&](const auto& ex, const auto& x) {
    oracles o{&f};
    std::vector<double> out;
    const auto mv = dppf::mean_valley(ex, o.loss(), x, {.directions = 3, .delta = 0.1, .two_sided = true, .seed = 1});
    out.insert(out.end(), mv.widths.begin(), mv.widths.end());
    const auto fmv = dppf::mean_valley(
        ex, o.loss(), x, {.directions = 2, .delta = 0.1, .direction = {.filter_normalized = true, .layout = layout}});
    out.push_back(fmv.value);
    out.push_back(dppf::hessian_top_eigenvalue(ex, o.loss_and_grad(), x, {.max_iters = 5}).value);
    out.push_back(dppf::hessian_trace(ex, o.loss_and_grad(), x, {.samples = 2}).value);
    out.push_back(dppf::sam_sharpness(ex, o.loss_and_grad(), x).value);
    out.push_back(dppf::average_sharpness(ex, o.loss(), x, {.samples = 2}).value);
    const auto ls = dppf::landscape_2d(ex, o.loss(), x, dppf::linspace(-1, 1, 2), dppf::linspace(-1, 1, 2),
                                       dppf::random_directions{.seed = 2});
    out.insert(out.end(), ls.values.begin(), ls.values.end());
    return out;
  };
  const auto ref_d = run(dppf::host_executor{}, xd);
  const auto ref_f = run(dppf::host_executor{}, xf);
  for (int threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    CHECK(run(dppf::host_parallel_executor{threads}, xd) == ref_d);
    CHECK(run(dppf::host_parallel_executor{threads}, xf) == ref_f);
  }
}

TEST_CASE("the mean valley usage shape of the design brief") {
  std::vector<float> params = dppf_test::random_vector<float>(100, 81, 0.1);
  const auto loss_fn = [](std::span<const float> x) {
    double s = 0.0;
    for (float v : x) s += 0.5 * 3.0 * v * v;
    return s;
  };
  dppf::host_executor ex;
  auto mv = dppf::mean_valley(ex, loss_fn, params, {.directions = 16, .delta = 0.1, .seed = 1});
  double imv = 1.0 / mv.value;
  // f = 3/2 ||x||^2: along a unit u, f(x + t u) - f(x) = 3 t u.x + 3 t^2 / 2.
  double expected = 0.0;
  for (std::size_t k = 0; k < 16; ++k) {
    const auto u = reference_direction(100, 1, k);
    double ux = 0.0;
    for (std::size_t i = 0; i < 100; ++i) ux += u[i] * params[i];
    expected += (-ux + std::sqrt(ux * ux + 2.0 * 0.1 / 3.0)) / 16.0;
  }
  CHECK(imv == doctest::Approx(1.0 / expected).epsilon(1e-3));  // default tolerance 1e-3, float probes
  CHECK(mv.oracle_calls > 16);
}

TEST_CASE("sharpness estimators reject bad input with clear exceptions") {
  dppf::host_executor ex;
  const quadratic f = diagonal_quadratic(10, 10.0, 1);
  oracles o{&f};
  const std::vector<double> x(10, 0.1), empty;
  using dppf_test::check_throws_with;
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), x, {.t_max = 0.0}); },
                                           "mean_valley: t_max must be finite and > 0 (got 0)");
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), x, {.t_max = -1.0}); }, "t_max");
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), x, {.directions = 0}); },
                                           "mean_valley: directions must be > 0 (got 0)");
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), empty); }, "mean_valley: x is empty");
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), x, {.delta = 0.0}); }, "delta");
  check_throws_with<std::invalid_argument>([&] { dppf::mean_valley(ex, o.loss(), x, {.tolerance = 0.0}); },
                                           "tolerance");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::mean_valley(ex, o.loss(), x, {.threshold = dppf::valley_threshold::multiplicative, .kappa = 1.0}); },
      "kappa must be finite and > 1");
  check_throws_with<std::invalid_argument>(
      [&] {
        dppf::mean_valley(ex, o.loss(), std::vector<double>(10, 0.0),
                          {.threshold = dppf::valley_threshold::multiplicative});
      },
      "multiplicative threshold needs f(x) > 0");
  check_throws_with<std::invalid_argument>(
      [&] {
        dppf::mean_valley(ex, o.loss(), x,
                          {.direction = {.filter_normalized = true,
                                         .layout = dppf::parameter_layout::from_sizes({{"a", 4}})}});
      },
      "layout covers 4");
  // Non-finite oracle values: at x, and at a probe point.
  const auto nan_loss = [](std::span<const double>) { return std::nan(""); };
  check_throws_with<dppf::non_finite_error>([&] { dppf::mean_valley(ex, nan_loss, x); },
                                            "mean_valley: loss returned nan at x");
  const auto blows_up = [&](std::span<const double> y) {
    return f.value(y) > f.value(x) + 1e-9 ? HUGE_VAL : f.value(y);
  };
  check_throws_with<dppf::non_finite_error>([&] { dppf::mean_valley(ex, blows_up, x); },
                                            "loss returned inf at t = ");
  const auto nan_grad = [](std::span<const double>, std::span<double>) { return std::nan(""); };
  check_throws_with<dppf::non_finite_error>([&] { dppf::sam_sharpness(ex, nan_grad, x); },
                                            "sam_sharpness: loss_and_grad returned nan at x");
  check_throws_with<dppf::non_finite_error>([&] { dppf::hessian_trace(ex, nan_grad, x); },
                                            "hessian_trace: loss_and_grad returned nan");
  check_throws_with<dppf::non_finite_error>([&] { dppf::average_sharpness(ex, nan_loss, x); },
                                            "average_sharpness: loss returned nan");
  const auto nan_hvp = [](auto, auto, auto out) {
    for (auto& v : out) v = std::nan("");
  };
  check_throws_with<dppf::non_finite_error>(
      [&] { dppf::hessian_top_eigenvalue(ex, dppf::hvp_oracle{nan_hvp}, x); },
      "hessian_top_eigenvalue: the Hessian-vector product returned nan");
  // Empty buffers and bad options of the other estimators.
  check_throws_with<std::invalid_argument>([&] { dppf::hessian_top_eigenvalue(ex, o.loss_and_grad(), empty); },
                                           "hessian_top_eigenvalue: x is empty");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::hessian_top_eigenvalue(ex, o.loss_and_grad(), x, {.max_iters = 0}); }, "max_iters must be > 0");
  check_throws_with<std::invalid_argument>([&] { dppf::hessian_trace(ex, o.loss_and_grad(), x, {.samples = 0}); },
                                           "hessian_trace: samples must be > 0");
  check_throws_with<std::invalid_argument>([&] { dppf::hessian_trace(ex, o.loss_and_grad(), empty); },
                                           "hessian_trace: x is empty");
  check_throws_with<std::invalid_argument>([&] { dppf::sam_sharpness(ex, o.loss_and_grad(), x, {.rho = 0.0}); },
                                           "sam_sharpness: rho must be finite and > 0");
  check_throws_with<std::invalid_argument>([&] { dppf::sam_sharpness(ex, o.loss_and_grad(), empty); },
                                           "sam_sharpness: x is empty");
  check_throws_with<std::invalid_argument>([&] { dppf::average_sharpness(ex, o.loss(), x, {.sigma = -1.0}); },
                                           "average_sharpness: sigma must be finite and > 0");
  check_throws_with<std::invalid_argument>([&] { dppf::average_sharpness(ex, o.loss(), empty); },
                                           "average_sharpness: x is empty");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::landscape_1d(ex, o.loss(), x, x, std::vector<double>{}); }, "landscape_1d: grid a is empty");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::landscape_1d(ex, o.loss(), x, std::vector<double>(3), dppf::linspace(0, 1, 3)); },
      "landscape_1d: u has 3 elements, expected 10");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::landscape_1d(ex, o.loss(), empty, dppf::linspace(0, 1, 3), dppf::random_directions{}); },
      "landscape_1d: x is empty");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::landscape_1d_through(ex, o.loss(), x, std::vector<double>(4), dppf::linspace(0, 1, 3)); },
      "landscape_1d_through: second point has 4 elements, expected 10");
  std::vector<double> zero_dir(10, 0.0);
  check_throws_with<std::invalid_argument>(
      [&] { dppf::mean_valley(ex, o.loss(), zero_dir, {.direction = {.filter_normalized = true}}); },
      "random_direction: the filter-normalized direction is zero (x is zero in every segment)");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::random_direction(ex, x, zero_dir, {1, 0}, {.filter_normalized = true, .layout = dppf::parameter_layout::from_sizes({{"a", 3}})}); },
      "filter_normalize: x has 10 elements but the layout covers 3");
}

TEST_CASE("mean_valley bisection stops at adjacent doubles under a tolerance below machine precision") {
  dppf::host_executor ex;
  const quadratic f = diagonal_quadratic(8, 10.0, 3);
  oracles o{&f};
  const std::vector<double> x(8, 0.0);
  const auto mv = dppf::mean_valley(ex, o.loss(), x, {.directions = 2, .delta = 0.1, .tolerance = 1e-300});
  for (std::size_t k = 0; k < 2; ++k) {
    const auto u = reference_direction(8, 0, k);
    CHECK(mv.widths[k] == doctest::Approx(std::sqrt(0.2 / f.form(u, u))).epsilon(1e-13));
  }
  CHECK(mv.oracle_calls < 200);  // a 52-bit mantissa takes about 60 halvings per direction
}
