#pragma once
// An independent double-precision replay of the overlapped (delayed) sync, shared by the threads
// and MPI tests: plain loops over [rank][element], no dppf code. At a sync step every worker's
// snapshot s_i and their mean are taken; d local steps later (or when the next sync comes due
// first) the rule's correction from the snapshot is applied with the local progress kept.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "consensus_reference.hpp"
#include "support.hpp"

namespace dppf_test {

inline std::uint64_t fresh_seed() { return (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}(); }

// The problem every run trains: worker r's gradient at step t is x - c_r + e_{t,r}, lr 0.5.
struct problem {
  int workers = 3;
  std::size_t n = 203;
  int steps = 83;  // ends with a sync in flight for most (tau, d)
  double lr = 0.5;
  matrix centers, x0;
  std::uint64_t seed = 0;

  problem(int m, std::uint64_t s, std::size_t elements = 203) : workers(m), n(elements), seed(s) {
    for (int r = 0; r < m; ++r) {
      centers.push_back(dppf_test::random_vector<double>(n, s + 101 * static_cast<std::uint64_t>(r), 2.0));
      x0.push_back(dppf_test::random_vector<double>(n, s + 7 + 101 * static_cast<std::uint64_t>(r)));
    }
  }
  double noise(int t, int r, std::size_t k) const {  // a fixed pseudo-random term per (t, r, k)
    const std::uint64_t h = (seed ^ (0x9e3779b97f4a7c15ull * (static_cast<std::uint64_t>(t) * 131 + static_cast<std::uint64_t>(r) + 1))) + k * 0x632be59bd9b4e019ull;
    return 0.05 * (static_cast<double>((h * 0xff51afd7ed558ccdull) >> 11) / 9007199254740992.0 - 0.5);
  }
  template <class T>
  void gradient(int t, int r, const std::vector<T>& x, std::vector<T>& g) const {
    for (std::size_t k = 0; k < n; ++k)
      g[k] = static_cast<T>(static_cast<double>(x[k]) - centers[static_cast<std::size_t>(r)][k] + noise(t, r, k));
  }
};

struct rule_spec {
  std::string name;  // pull_push, pull_push_inverse_mv, local_sgd, elastic, diloco
  double alpha = 0.3, lambda = 0.4;
  double outer_lr = 0.7, mu = 0.9;
};

struct schedule_spec {
  std::int64_t tau = 4, d = 1, warmup_steps = 0, warmup_tau = 0;
};

// ----- the independent double-precision replay of the delayed update ---------------------------

struct replay_result {
  matrix x;
  double last_r = 0.0, last_mv = 0.0;  // rank 0's r_i and the mean over ranks, last applied sync
  std::vector<double> last_r_all;
  int applied = 0, started = 0;
  bool in_flight_at_end = false;  // a sync started and not applied after the last step
};

// delay = false: the blocking rule (the correction applied at the sync step itself), to show the
// delayed runs differ from it by far more than the tolerance. mean_of_snapshots: how the
// snapshots' mean is computed (empty: exactly; a compressed sync's reference otherwise).
inline replay_result replay(const problem& p, const rule_spec& rule, const schedule_spec& sch, bool delay = true,
                            const std::function<std::vector<double>(const matrix&)>& mean_of_snapshots = {}) {
  const auto m = static_cast<std::size_t>(p.workers);
  replay_result out;
  matrix& x = out.x;
  x = p.x0;
  std::vector<double> center = mean_of(x), global = center, momentum(p.n, 0.0);
  int outer = 0;
  struct pending_sync {
    matrix s;
    std::vector<double> sbar;
    std::int64_t due;
    bool warm;
  };
  std::vector<pending_sync> pending;
  const auto apply = [&](const pending_sync& q) {
    std::vector<double> r(m, 0.0);
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t k = 0; k < p.n; ++k) r[i] += (q.s[i][k] - q.sbar[k]) * (q.s[i][k] - q.sbar[k]);
      r[i] = std::sqrt(r[i]);
    }
    double mv = 0.0;
    for (double v : r) mv += v / static_cast<double>(m);
    if (rule.name == "elastic") {  // distances to the center
      for (std::size_t i = 0; i < m; ++i) {
        r[i] = 0.0;
        for (std::size_t k = 0; k < p.n; ++k) r[i] += (q.s[i][k] - center[k]) * (q.s[i][k] - center[k]);
        r[i] = std::sqrt(r[i]);
      }
      mv = 0.0;
      for (double v : r) mv += v / static_cast<double>(m);
    }
    if (rule.name == "pull_push" || rule.name == "pull_push_inverse_mv") {
      const double lambda = q.warm ? 0.0 : rule.lambda;
      for (std::size_t i = 0; i < m; ++i) {
        double push = 0.0;
        if (m > 1 && lambda > 0.0 && r[i] > 1e-12)
          push = rule.name == "pull_push" ? lambda : lambda / (static_cast<double>(m) * mv * mv);
        for (std::size_t k = 0; k < p.n; ++k) {
          const double dk = q.s[i][k] - q.sbar[k];
          x[i][k] += -rule.alpha * dk + (push > 0.0 ? push * dk / r[i] : 0.0);
        }
      }
    } else if (rule.name == "local_sgd") {
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t k = 0; k < p.n; ++k) x[i][k] = q.sbar[k] + (x[i][k] - q.s[i][k]);
    } else if (rule.name == "elastic") {
      const double b = static_cast<double>(m) * rule.alpha;
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t k = 0; k < p.n; ++k) x[i][k] -= rule.alpha * (q.s[i][k] - center[k]);
      for (std::size_t k = 0; k < p.n; ++k) center[k] += b * (q.sbar[k] - center[k]);
    } else if (rule.name == "diloco") {
      for (std::size_t k = 0; k < p.n; ++k) {
        const double delta = global[k] - q.sbar[k];
        momentum[k] = outer == 0 ? delta : rule.mu * momentum[k] + delta;
        global[k] -= rule.outer_lr * (delta + rule.mu * momentum[k]);
      }
      ++outer;
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t k = 0; k < p.n; ++k) x[i][k] = global[k] + (x[i][k] - q.s[i][k]);
    } else {
      FAIL("unknown rule " << rule.name);
    }
    out.last_r = r[0];
    out.last_mv = mv;
    out.last_r_all = r;
    ++out.applied;
  };
  for (int t = 0; t < p.steps; ++t) {
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t k = 0; k < p.n; ++k)
        x[i][k] -= p.lr * (x[i][k] - p.centers[i][k] + p.noise(t, static_cast<int>(i), k));
    const std::int64_t steps = t + 1;
    const bool warm = t < sch.warmup_steps;
    const std::int64_t every = warm && sch.warmup_tau > 0 ? sch.warmup_tau : sch.tau;
    const bool due = steps % every == 0;
    if (!pending.empty() && (steps >= pending[0].due || due)) {
      apply(pending[0]);
      pending.clear();
    }
    if (!due) continue;
    pending.push_back({x, mean_of_snapshots ? mean_of_snapshots(x) : mean_of(x), steps + (delay ? sch.d : 0), warm});
    ++out.started;
    if (!delay) {
      apply(pending[0]);
      pending.clear();
    }
  }
  out.in_flight_at_end = !pending.empty();
  if (!pending.empty()) apply(pending[0]);  // the trainer's finish_sync at the end
  return out;
}

}  // namespace dppf_test
