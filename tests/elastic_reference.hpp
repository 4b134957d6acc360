#pragma once
// The reference of the elastic tests: LocalSGD with plain SGD on f_id(x) = |x - c_id|^2 / 2, in
// double precision, where sync k averages over the ids in history[k] (the members of the
// generation that committed it) and a worker let in at sync k starts from that sync's mean;
// simulate_delayed is the overlapped sync's.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace dppf_test::elastic {

using history = std::map<std::int64_t, std::vector<std::int64_t>>;  // sync index (1-based) -> ids

// Worker id's target: every element differs, and so does every worker's, so a wrong member set shows.
inline std::vector<double> target(std::int64_t id, std::size_t n) {
  std::vector<double> c(n);
  for (std::size_t i = 0; i < n; ++i)
    c[i] = std::sin(0.37 * static_cast<double>(i) + 1.3 * static_cast<double>(id)) + static_cast<double>(id);
  return c;
}

// The final mean over the workers alive after `total` steps (all starting at 0).
inline std::vector<double> simulate(std::int64_t total, const history& h, std::size_t n, double lr, std::int64_t tau) {
  std::map<std::int64_t, std::vector<double>> x;
  for (auto id : h.begin()->second) x[id] = std::vector<double>(n, 0.0);
  std::int64_t k = 0;
  std::vector<double> mean(n);
  for (std::int64_t s = 0; s < total; ++s) {
    for (auto& [id, xi] : x) {
      const auto c = target(id, n);
      for (std::size_t i = 0; i < n; ++i) xi[i] -= lr * (xi[i] - c[i]);
    }
    if ((s + 1) % tau != 0) continue;
    ++k;
    const auto& m = h.at(k);
    std::fill(mean.begin(), mean.end(), 0.0);
    for (auto id : m)
      for (std::size_t i = 0; i < n; ++i) mean[i] += x.at(id)[i] / static_cast<double>(m.size());
    std::map<std::int64_t, std::vector<double>> next;
    for (auto id : m) next[id] = mean;
    if (auto it = h.find(k + 1); it != h.end())
      for (auto id : it->second)
        if (!next.count(id)) next[id] = mean;  // let in after sync k
    x = std::move(next);
  }
  std::fill(mean.begin(), mean.end(), 0.0);
  for (auto& [id, xi] : x)
    for (std::size_t i = 0; i < n; ++i) mean[i] += xi[i] / static_cast<double>(x.size());
  return mean;
}

// The same with the sync overlapped with the next d < tau local steps (trainer_options::
// overlap_steps): sync k snapshots every worker at its start and, d steps later, over the ids in
// history[k] (the members that committed it), sets x_i <- mean(s) + (x_i - s_i); a worker let in
// after sync k starts from the mean of the members' parameters just after that correction.
inline std::vector<double> simulate_delayed(std::int64_t total, const history& h, std::size_t n, double lr, std::int64_t tau,
                                            std::int64_t d) {
  using state = std::map<std::int64_t, std::vector<double>>;
  state x, snapshot;
  for (auto id : h.begin()->second) x[id] = std::vector<double>(n, 0.0);
  const auto mean_of = [n](const state& v, const std::vector<std::int64_t>& ids) {
    std::vector<double> m(n, 0.0);
    for (auto id : ids)
      for (std::size_t i = 0; i < n; ++i) m[i] += v.at(id)[i] / static_cast<double>(ids.size());
    return m;
  };
  std::int64_t k = 0, due = -1;
  for (std::int64_t s = 0; s < total; ++s) {
    for (auto& [id, xi] : x) {
      const auto c = target(id, n);
      for (std::size_t i = 0; i < n; ++i) xi[i] -= lr * (xi[i] - c[i]);
    }
    const std::int64_t steps = s + 1;
    if (steps == due) {
      const auto& members = h.at(k);
      const auto mean = mean_of(snapshot, members);
      state next;
      for (auto id : members) {
        next[id] = x.at(id);
        for (std::size_t i = 0; i < n; ++i) next[id][i] = mean[i] + (x.at(id)[i] - snapshot.at(id)[i]);
      }
      if (auto it = h.find(k + 1); it != h.end()) {
        const auto joined = mean_of(next, members);
        for (auto id : it->second)
          if (!next.count(id)) next[id] = joined;  // let in at sync k's end
      }
      x = std::move(next);
    }
    if (steps % tau == 0) {
      ++k;
      snapshot = x;
      due = steps + d;
    }
  }
  std::vector<std::int64_t> alive;
  for (auto& [id, xi] : x) alive.push_back(id);
  return mean_of(x, alive);
}

// max_i |got_i - want_i| / (1 + |want_i|), and where.
template <class T>
double worst_error(const std::vector<T>& got, const std::vector<double>& want, std::size_t* at = nullptr) {
  double worst = got.size() == want.size() ? 0.0 : INFINITY;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]) / (1.0 + std::abs(want[i]));
    if (!(e <= worst)) {
      worst = e;
      if (at) *at = i;
    }
  }
  return worst;
}

}  // namespace dppf_test::elastic
