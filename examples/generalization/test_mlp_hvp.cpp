// generalization::mlp_hvp against independent references on fresh random MLPs: every element of
// H v against central differences of fmnist::mlp<double>'s gradient with a step far too small to
// cross a ReLU kink at a random point, and the symmetry u^T H v = v^T H u. Exits 1 on a mismatch.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "mlp_hvp.hpp"

int main() {
  std::mt19937_64 rng(20261202);
  std::normal_distribution<double> normal;
  int failures = 0;
  for (const std::vector<std::size_t>& sizes :
       {std::vector<std::size_t>{7, 3}, std::vector<std::size_t>{7, 6, 4}, std::vector<std::size_t>{9, 8, 5, 4}}) {
    fmnist::mlp<double> net(sizes);
    const std::size_t d = net.size(), n = 13;
    std::vector<double> x(d), xs(n * sizes.front()), u(d), v(d), hv(d), hu(d), gp(d), gm(d), xp(d), xm(d);
    std::vector<std::uint8_t> y(n);
    for (auto& e : x) e = 0.5 * normal(rng);
    for (auto& e : xs) e = normal(rng);
    for (auto& e : y) e = static_cast<std::uint8_t>(rng() % sizes.back());
    for (auto& e : u) e = normal(rng);
    for (auto& e : v) e = normal(rng);
    generalization::mlp_hvp hvp(net);
    hvp(x, v, hv, xs.data(), y.data(), n);
    hvp(x, u, hu, xs.data(), y.data(), n);
    const double h = 1e-6;
    for (std::size_t i = 0; i < d; ++i) xp[i] = x[i] + h * v[i], xm[i] = x[i] - h * v[i];
    net.loss_and_grad(xp, xs.data(), y.data(), n, gp);
    net.loss_and_grad(xm, xs.data(), y.data(), n, gm);
    double scale = 0.0, worst = 0.0;
    for (std::size_t i = 0; i < d; ++i) scale = std::max(scale, std::abs(hv[i]));
    for (std::size_t i = 0; i < d; ++i) worst = std::max(worst, std::abs(hv[i] - (gp[i] - gm[i]) / (2 * h)));
    double uhv = 0.0, vhu = 0.0;
    for (std::size_t i = 0; i < d; ++i) uhv += u[i] * hv[i], vhu += v[i] * hu[i];
    const bool ok = scale > 0.0 && worst <= 1e-6 * scale && std::abs(uhv - vhu) <= 1e-10 * std::abs(uhv);
    std::printf("layers %zu, %zu parameters: max |Hv - finite difference| = %.3g (max |Hv| = %.3g), "
                "u'Hv = %.12g, v'Hu = %.12g: %s\n", sizes.size(), d, worst, scale, uhv, vhu, ok ? "ok" : "MISMATCH");
    failures += !ok;
  }
  return failures ? 1 : 0;
}
