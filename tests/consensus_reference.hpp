#pragma once
// Independent double-precision references of every consensus rule, shared by the threads and
// MPI tests: plain loops over [rank][element], no dppf code.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "support.hpp"

namespace dppf_test {

using matrix = std::vector<std::vector<double>>;  // [rank][element]

// ----- independent double-precision references of every rule ---------------------------------

inline std::vector<double> mean_of(const matrix& x) {
  std::vector<double> m(x[0].size(), 0.0);
  for (const auto& xi : x)
    for (std::size_t k = 0; k < m.size(); ++k) m[k] += xi[k];
  for (double& v : m) v /= static_cast<double>(x.size());
  return m;
}

inline double distance(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t k = 0; k < a.size(); ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(s);
}

struct reference_state {
  std::vector<double> center, global, momentum;
  int outer_steps = 0;
};

// One sync of `rule` on every worker's parameters x (in place), in plain double loops.
inline void reference_sync(const std::string& rule, matrix& x, reference_state& st, const std::vector<double>& losses,
                    const std::vector<double>& grad_norms, double alpha, double lambda, bool inverse_mv) {
  const std::size_t m = x.size(), n = x[0].size();
  const auto xbar = mean_of(x);
  if (rule == "pull_push") {
    std::vector<double> r(m);
    for (std::size_t i = 0; i < m; ++i) r[i] = distance(x[i], xbar);
    const double mv = std::accumulate(r.begin(), r.end(), 0.0) / static_cast<double>(m);
    for (std::size_t i = 0; i < m; ++i) {
      double push = 0;
      if (m > 1 && lambda > 0 && r[i] > 1e-12) push = inverse_mv ? lambda / (static_cast<double>(m) * mv * mv) : lambda;
      for (std::size_t k = 0; k < n; ++k) {
        const double d = x[i][k] - xbar[k];
        x[i][k] = x[i][k] - alpha * d + (r[i] > 0 ? push * d / r[i] : 0.0);
      }
    }
  } else if (rule == "local_sgd") {
    for (auto& xi : x) xi = xbar;
  } else if (rule == "elastic") {
    const double b = static_cast<double>(m) * alpha;
    const auto c0 = st.center;
    for (auto& xi : x)
      for (std::size_t k = 0; k < n; ++k) xi[k] -= alpha * (xi[k] - c0[k]);
    for (std::size_t k = 0; k < n; ++k) st.center[k] = c0[k] + b * (xbar[k] - c0[k]);
  } else if (rule == "leader") {
    const auto l = static_cast<std::size_t>(std::min_element(losses.begin(), losses.end()) - losses.begin());
    const auto xl = x[l];
    for (auto& xi : x)
      for (std::size_t k = 0; k < n; ++k) xi[k] -= alpha * (xi[k] - xl[k]);
  } else if (rule == "grawa") {
    std::vector<double> w(m);
    double total = 0;
    for (std::size_t j = 0; j < m; ++j) total += w[j] = 1.0 / grad_norms[j];
    std::vector<double> avg(n, 0.0);
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t k = 0; k < n; ++k) avg[k] += w[j] / total * x[j][k];
    for (auto& xi : x)
      for (std::size_t k = 0; k < n; ++k) xi[k] -= alpha * (xi[k] - avg[k]);
  } else if (rule == "diloco") {
    const double lr = 0.7, mu = 0.9;
    for (std::size_t k = 0; k < n; ++k) {
      const double delta = st.global[k] - xbar[k];
      st.momentum[k] = st.outer_steps == 0 ? delta : mu * st.momentum[k] + delta;
      st.global[k] -= lr * (delta + mu * st.momentum[k]);
    }
    ++st.outer_steps;
    for (auto& xi : x) xi = st.global;
  } else {
    FAIL("unknown rule " << rule);
  }
}

// ----- running dppf --------------------------------------------------------------------------

struct run_spec {
  int workers = 3;
  std::size_t n = 1001;
  int steps = 9;
  std::int64_t tau = 3;
  double alpha = 0.3;
  double lambda = 0.2;
  bool inverse_mv = false;
};

// Per-rank initial parameters and per-step gradients, the same for dppf and the reference.
struct scenario {
  matrix x0;
  std::vector<matrix> grads;  // [step][rank][element]
  std::vector<std::vector<double>> losses;  // [step][rank]
};

inline scenario make_scenario(const run_spec& s, std::uint64_t seed) {
  scenario sc;
  for (int r = 0; r < s.workers; ++r) sc.x0.push_back(random_vector<double>(s.n, seed + 17 * r));
  for (int t = 0; t < s.steps; ++t) {
    matrix g;
    std::vector<double> l;
    for (int r = 0; r < s.workers; ++r) {
      g.push_back(random_vector<double>(s.n, seed * 1000 + 31 * t + r, 0.1 * (1 + r)));
      l.push_back(std::cos(1.0 + 3.0 * t + 7.0 * r));
    }
    sc.grads.push_back(g);
    sc.losses.push_back(l);
  }
  return sc;
}

inline matrix run_reference(const std::string& rule, const run_spec& s, const scenario& sc) {
  matrix x = sc.x0;
  reference_state st;
  st.center = st.global = mean_of(x);
  st.momentum.assign(s.n, 0.0);
  std::vector<double> loss_sum(s.workers, 0.0);
  for (int t = 0; t < s.steps; ++t) {
    for (int r = 0; r < s.workers; ++r)
      for (std::size_t k = 0; k < s.n; ++k) x[r][k] -= sc.grads[t][r][k];
    for (int r = 0; r < s.workers; ++r) loss_sum[r] += sc.losses[t][r];
    if ((t + 1) % s.tau == 0) {
      std::vector<double> norms(s.workers), mean_loss(s.workers);
      for (int r = 0; r < s.workers; ++r) {
        norms[r] = std::sqrt(std::inner_product(sc.grads[t][r].begin(), sc.grads[t][r].end(), sc.grads[t][r].begin(), 0.0));
        mean_loss[r] = loss_sum[r] / static_cast<double>(s.tau);
      }
      reference_sync(rule, x, st, mean_loss, norms, s.alpha, s.lambda, s.inverse_mv);
      std::fill(loss_sum.begin(), loss_sum.end(), 0.0);
    }
  }
  return x;
}

// Largest |a - b| over every element of every rank, relative to the data's scale.
inline double max_relative_error(const matrix& a, const matrix& b) {
  double err = 0, scale = 1e-30;
  for (std::size_t r = 0; r < a.size(); ++r)
    for (std::size_t k = 0; k < a[r].size(); ++k) {
      err = std::max(err, std::abs(a[r][k] - b[r][k]));
      scale = std::max(scale, std::abs(b[r][k]));
    }
  return err / scale;
}

}  // namespace dppf_test
