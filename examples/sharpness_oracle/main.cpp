// The sharpness estimators on your own loss: dppf needs only callables, here a quadratic
// f(x) = 1/2 sum_i h_i x_i^2 whose every measure has a closed form, so the program checks each
// estimate against it and exits non-zero on a miss.
//
//   loss(x) -> double                 for Mean Valley / Inverse MV and average-case sharpness
//   loss_and_grad(x, g) -> double     for the Hessian estimators (finite differences of gradients,
//                                     or pass dppf::hvp_oracle{your_hvp}) and SAM sharpness
#include <dppf/dppf.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  constexpr std::size_t n = 100;
  std::vector<double> h(n);  // curvatures 1 ... 10: the Hessian's eigenvalues
  for (std::size_t i = 0; i < n; ++i) h[i] = 1.0 + 9.0 * static_cast<double>(i) / (n - 1);

  auto loss = [&](std::span<const double> x) {
    double f = 0.0;
    for (std::size_t i = 0; i < n; ++i) f += 0.5 * h[i] * x[i] * x[i];
    return f;
  };
  auto loss_and_grad = [&](std::span<const double> x, std::span<double> g) {
    for (std::size_t i = 0; i < n; ++i) g[i] = h[i] * x[i];
    return loss(x);
  };

  dppf::host_executor ex;
  const std::vector<double> minimum(n, 0.0), ones(n, 1.0);
  bool ok = true;
  auto report = [&](const char* what, double got, double expected, double tolerance) {
    const bool good = std::abs(got - expected) <= tolerance;
    std::printf("%-24s %12.6f  expected %12.6f  %s\n", what, got, expected, good ? "ok" : "MISS");
    ok = ok && good;
  };

  // Hessian: top eigenvalue max h = 10 (power iteration), trace sum h = 550 (Hutchinson: for a
  // diagonal Hessian every Rademacher probe gives the trace exactly).
  const auto top = dppf::hessian_top_eigenvalue(ex, loss_and_grad, ones, {.max_iters = 500, .tol = 1e-9});
  report("hessian top eigenvalue", top.value, 10.0, 1e-3);
  const auto trace = dppf::hessian_trace(ex, loss_and_grad, ones, {.samples = 4, .seed = 7});
  report("hessian trace", trace.value, 550.0, 1e-4);

  // SAM at x = 1: f(x + rho g/|g|) - f(x) = rho |g| + rho^2 g'Hg / (2 |g|^2), g = h.
  double g2 = 0.0, ghg = 0.0;
  for (double v : h) g2 += v * v, ghg += v * v * v;
  const double rho = 0.05;
  report("SAM sharpness", dppf::sam_sharpness(ex, loss_and_grad, ones, {.rho = rho}).value,
         rho * std::sqrt(g2) + rho * rho * ghg / (2.0 * g2), 1e-9);

  // Average-case: E[f(x + sigma n)] - f(x) = sigma^2 sum h / 2 at any x; a Monte Carlo mean, so
  // within 4 of its standard errors.
  const auto avg = dppf::average_sharpness(ex, loss, minimum, {.sigma = 0.1, .samples = 256, .seed = 3});
  report("average-case sharpness", avg.value, 0.01 * 550.0 / 2.0, 4.0 * avg.standard_error);

  // Mean Valley at the minimum with level f + delta: along a unit u the crossing is
  // t = sqrt(2 delta / u'Hu), between sqrt(2 delta / 10) and sqrt(2 delta / 1) for every u.
  const double delta = 0.1;
  const auto mv = dppf::inverse_mean_valley(ex, loss, minimum, {.directions = 32, .delta = delta, .seed = 5});
  bool widths_ok = mv.censored == 0 && mv.widths.size() == 32;
  for (double t : mv.widths) widths_ok = widths_ok && t >= std::sqrt(2 * delta / 10) * 0.999 && t <= std::sqrt(2 * delta) * 1.001;
  // A Gaussian direction sees u'Hu close to the mean curvature 5.5: t close to sqrt(2 delta / 5.5).
  report("mean valley width", mv.mean_width, std::sqrt(2 * delta / 5.5), 0.05 * std::sqrt(2 * delta / 5.5));
  std::printf("%-24s %12.6f  (1 / MV; %zu loss calls; every width inside its bounds: %s)\n", "inverse mean valley",
              mv.value, mv.oracle_calls, widths_ok ? "yes" : "NO");
  ok = ok && widths_ok && mv.value == 1.0 / mv.mean_width;
  return ok ? 0 : 1;
}
