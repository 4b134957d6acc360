// The DPPF pull-push sync, every baseline rule and the trainer: each rule against an
// independent double-precision implementation, the exact special cases, the lambda/alpha fixed
// point, communication volume and the error paths.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "consensus_reference.hpp"
#include "support.hpp"

using dppf_test::check_throws_with;
using dppf_test::random_vector;

namespace {

using namespace dppf_test;

// dppf with SGD (lr = 1, so each local step is x -= g) followed by `rule` every tau steps.
template <class T, class Rule>
matrix run_dppf(const run_spec& s, const scenario& sc, Rule rule, std::vector<dppf::trainer_stats>* stats = nullptr) {
  matrix out(s.workers);
  if (stats) stats->assign(s.workers, {});
  dppf::thread_group group(s.workers);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<T> x(sc.x0[r].begin(), sc.x0[r].end()), g(s.n);
    dppf::trainer tr{dppf::sgd{{.lr = 1.0}}, rule, comm, dppf::host_parallel_executor{}, {.tau = s.tau}};
    for (int t = 0; t < s.steps; ++t) {
      std::copy(sc.grads[t][r].begin(), sc.grads[t][r].end(), g.begin());
      tr.step(x, g, sc.losses[t][r]);
    }
    out[r].assign(x.begin(), x.end());
    if (stats) (*stats)[r] = tr.stats();
  });
  return out;
}

template <class T>
constexpr double rule_tolerance() {
  // A few roundings in T per step and per sync, over 9 steps: well inside 1e-5 (float) and
  // 1e-12 (double); a wrong rule is off by O(alpha) = O(0.1).
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T, class Rule>
void check_rule_against_reference(const std::string& name, Rule rule, run_spec s) {
  for (int m : {1, 2, 3, 4}) {
    s.workers = m;
    CAPTURE(name);
    CAPTURE(m);
    const auto sc = make_scenario(s, 1234 + m);
    const auto got = run_dppf<T>(s, sc, rule);
    const auto want = run_reference(name, s, sc);
    CHECK(max_relative_error(got, want) < rule_tolerance<T>());
  }
}

}  // namespace

TEST_CASE_TEMPLATE("pull_push matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.2}}, {});
  check_rule_against_reference<T>("pull_push", dppf::pull_push{{.alpha = 0.05, .lambda = 1.5}}, {.alpha = 0.05, .lambda = 1.5});
  check_rule_against_reference<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.2, .push = dppf::push_mode::inverse_mv}},
                                  {.inverse_mv = true});
}

TEST_CASE_TEMPLATE("local_sgd matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("local_sgd", dppf::local_sgd{}, {});
}

TEST_CASE_TEMPLATE("elastic (EASGD) matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("elastic", dppf::elastic{{.alpha = 0.2}}, {.alpha = 0.2});
}

TEST_CASE_TEMPLATE("leader (LSGD) matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("leader", dppf::leader{{.pull = 0.4}}, {.alpha = 0.4});
}

TEST_CASE_TEMPLATE("grawa matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("grawa", dppf::grawa{{.alpha = 0.25}}, {.alpha = 0.25});
}

TEST_CASE_TEMPLATE("diloco matches an independent double implementation", T, float, double) {
  check_rule_against_reference<T>("diloco", dppf::diloco{}, {});
}

TEST_CASE("data_parallel averages gradients every step and equals SGD on the mean gradient") {
  for (int m : {1, 2, 3, 4}) {
    CAPTURE(m);
    run_spec s{.workers = m, .steps = 6, .tau = 1};
    const auto sc = make_scenario(s, 77 + m);
    std::vector<dppf::trainer_stats> stats;
    matrix got(m);
    dppf::thread_group group(m);
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<double> x(sc.x0[0]), g(s.n);  // every worker starts from the same point
      dppf::trainer tr{dppf::sgd{{.lr = 0.5, .momentum = 0.9}}, dppf::data_parallel{}, comm, dppf::host_executor{}};
      for (int t = 0; t < s.steps; ++t) {
        std::copy(sc.grads[t][r].begin(), sc.grads[t][r].end(), g.begin());
        tr.step(x, g);
      }
      got[r] = x;
      if (r == 0) stats.push_back(tr.stats());
    });
    // Reference: torch-style momentum SGD on the averaged gradient, in double.
    std::vector<double> x = sc.x0[0], buf(s.n);
    for (int t = 0; t < s.steps; ++t)
      for (std::size_t k = 0; k < s.n; ++k) {
        double g = 0;
        for (int r = 0; r < m; ++r) g += sc.grads[t][r][k];
        g /= m;
        buf[k] = t == 0 ? g : 0.9 * buf[k] + g;
        x[k] -= 0.5 * buf[k];
      }
    for (int r = 0; r < m; ++r) CHECK(max_relative_error({got[r]}, {x}) < 1e-12);
    CHECK(stats[0].syncs == 0);
    CHECK(stats[0].sync_bytes == s.n * sizeof(double));  // N values per step
  }
}

// ----- exact special cases ---------------------------------------------------------------------

template <class Rule>
std::vector<std::vector<float>> train_momentum(int m, Rule rule, int steps = 20, std::int64_t tau = 3) {
  std::vector<std::vector<float>> out(m);
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    auto x = random_vector<float>(5003, 900 + r);
    dppf::trainer tr{dppf::sgd{{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}}, rule, comm,
                     dppf::host_parallel_executor{}, {.tau = tau}};
    for (int t = 0; t < steps; ++t) tr.step(x, random_vector<float>(5003, 5000 + 10 * t + r));
    out[r] = x;
  });
  return out;
}

TEST_CASE("pull_push with lambda = 0 and alpha = 1 equals local_sgd bit for bit") {
  for (int m : {2, 3, 4}) {
    const auto a = train_momentum(m, dppf::pull_push{{.alpha = 1.0, .lambda = 0.0}});
    const auto b = train_momentum(m, dppf::local_sgd{});
    for (int r = 0; r < m; ++r) CHECK(std::memcmp(a[r].data(), b[r].data(), a[r].size() * sizeof(float)) == 0);
  }
}

TEST_CASE("pull_push with M = 1 equals plain local training bit for bit") {
  const auto a = train_momentum(1, dppf::pull_push{{.alpha = 0.3, .lambda = 0.7}});
  auto x = random_vector<float>(5003, 900);
  dppf::host_parallel_executor ex;
  dppf::sgd opt{{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}};
  auto st = opt.init(ex, x);
  for (int t = 0; t < 20; ++t) opt.step(ex, x, random_vector<float>(5003, 5000 + 10 * t), st);
  CHECK(std::memcmp(a[0].data(), x.data(), x.size() * sizeof(float)) == 0);
}

TEST_CASE("pull_push with lambda = 0 and alpha < 1 is elastic averaging toward the mean") {
  // x_i <- x_i - alpha (x_i - x_bar), by the double reference (the pull_push reference with
  // lambda = 0 is exactly that formula).
  run_spec s{.alpha = 0.35, .lambda = 0.0};
  for (int m : {2, 4}) {
    s.workers = m;
    const auto sc = make_scenario(s, 4242 + m);
    matrix want = sc.x0;
    for (int t = 0; t < s.steps; ++t) {
      for (int r = 0; r < m; ++r)
        for (std::size_t k = 0; k < s.n; ++k) want[r][k] -= sc.grads[t][r][k];
      if ((t + 1) % s.tau == 0) {
        const auto xbar = mean_of(want);
        for (auto& xi : want)
          for (std::size_t k = 0; k < s.n; ++k) xi[k] -= 0.35 * (xi[k] - xbar[k]);
      }
    }
    CHECK(max_relative_error(run_dppf<double>(s, sc, dppf::pull_push{{.alpha = 0.35, .lambda = 0.0}}), want) < 1e-12);
  }
}

// ----- the fixed point r* = lambda / alpha --------------------------------------------------------

namespace {

struct fixed_point_result {
  std::vector<double> r;        // final r_i
  std::vector<double> curved;   // final spread of worker i along the curved coordinates
  std::vector<double> curved0;  // initial spread along the curved coordinates
};

// f(x) = 1/2 sum_{k<K} h_k x_k^2 (flat in coordinates K..N-1); gradient descent locally, DPPF every
// tau steps. Workers start at x0 + spread * (random unit direction).
fixed_point_result run_fixed_point(int m, double alpha, double lambda, double spread, dppf::push_mode mode) {
  const std::size_t n = 48, k_curved = 16;
  const int steps = 2400;
  fixed_point_result res{std::vector<double>(m), std::vector<double>(m), std::vector<double>(m)};
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    auto dir = random_vector<double>(n, 31 + r);
    const double norm = std::sqrt(std::inner_product(dir.begin(), dir.end(), dir.begin(), 0.0));
    std::vector<double> x(n), g(n);
    for (std::size_t k = 0; k < n; ++k) x[k] = 0.5 + spread * dir[k] / norm;
    auto curved = [&] {
      double s = 0;
      for (std::size_t k = 0; k < k_curved; ++k) s += x[k] * x[k];
      return std::sqrt(s);
    };
    res.curved0[r] = curved();
    dppf::trainer tr{dppf::sgd{{.lr = 0.05}}, dppf::pull_push{{.alpha = alpha, .lambda = lambda, .push = mode}}, comm,
                     dppf::host_executor{}, {.tau = 4}};
    for (int t = 0; t < steps; ++t) {
      for (std::size_t k = 0; k < n; ++k) g[k] = k < k_curved ? (1.0 + 0.5 * static_cast<double>(k)) * x[k] : 0.0;
      tr.step(x, g);
    }
    res.r[r] = tr.stats().distance;
    res.curved[r] = curved();
  });
  return res;
}

}  // namespace

TEST_CASE("pull_push spreads workers to r = lambda / alpha in flat directions, from both sides") {
  struct cfg {
    int m;
    double alpha, lambda;
  };
  for (const cfg c : {cfg{2, 0.1, 0.05}, cfg{3, 0.3, 0.6}, cfg{4, 0.5, 0.1}, cfg{4, 0.2, 0.3}}) {
    const double target = c.lambda / c.alpha;
    for (double start : {0.1 * target, 10.0 * target}) {
      CAPTURE(c.m);
      CAPTURE(c.alpha);
      CAPTURE(c.lambda);
      CAPTURE(start);
      const auto res = run_fixed_point(c.m, c.alpha, c.lambda, start, dppf::push_mode::constant);
      for (int i = 0; i < c.m; ++i) {
        CHECK(std::abs(res.r[i] - target) < 0.01 * target);
        CHECK(res.curved[i] < 1e-3 * std::max(res.curved0[i], target));  // curved spread shrinks
      }
    }
  }
}

TEST_CASE("pull_push inverse_mv mode settles where alpha r = lambda / (M r^2)") {
  for (int m : {2, 4}) {
    const double alpha = 0.2, lambda = 0.4;
    const double target = std::cbrt(lambda / (alpha * m));
    for (double start : {0.1 * target, 10.0 * target}) {
      CAPTURE(m);
      CAPTURE(start);
      const auto res = run_fixed_point(m, alpha, lambda, start, dppf::push_mode::inverse_mv);
      for (int i = 0; i < m; ++i) CHECK(std::abs(res.r[i] - target) < 0.01 * target);
    }
  }
}

// ----- communication volume ----------------------------------------------------------------------

template <class Rule>
void check_one_all_reduce_per_sync(Rule rule, const char* name) {
  const std::size_t n = 4096;
  dppf::thread_group group(3);
  std::vector<dppf::communication_counts> per_sync(3), total(3);
  std::vector<dppf::trainer_stats> stats(3);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    auto x = random_vector<float>(n, r), g = random_vector<float>(n, 10 + r);
    dppf::trainer tr{dppf::sgd{{.lr = 0.01}}, rule, comm, dppf::host_executor{}, {.tau = 4}};
    tr.step(x, g, 1.0 + r);  // first step: the collective size check and the rule's init
    const auto after_init = tr.comm().counts();
    for (int t = 1; t < 40; ++t) tr.step(x, g, 1.0 + r);
    auto c = tr.comm().counts();
    c.buffer_values -= after_init.buffer_values;
    c.buffer_all_reduces -= after_init.buffer_all_reduces;
    c.broadcasts -= after_init.broadcasts;
    c.scalar_all_reduces -= after_init.scalar_all_reduces;
    c.all_gathers -= after_init.all_gathers;
    per_sync[r] = c;
    stats[r] = tr.stats();
  });
  for (int r = 0; r < 3; ++r) {
    CAPTURE(name);
    CHECK(stats[r].syncs == 10);
    CHECK(per_sync[r].buffer_values == 10 * n);                            // N values per sync ...
    CHECK(per_sync[r].buffer_all_reduces + per_sync[r].broadcasts == 10);  // ... in one collective
    CHECK(per_sync[r].scalar_all_reduces + per_sync[r].all_gathers <= 10 * 2);  // plus O(1) scalars
    CHECK(stats[r].sync_bytes <= n * sizeof(float) + 2 * sizeof(double));
  }
}

TEST_CASE("each sync communicates one buffer of N values plus O(1) scalars") {
  check_one_all_reduce_per_sync(dppf::pull_push{}, "pull_push");
  check_one_all_reduce_per_sync(dppf::local_sgd{}, "local_sgd");
  check_one_all_reduce_per_sync(dppf::elastic{}, "elastic");
  check_one_all_reduce_per_sync(dppf::leader{}, "leader");
  check_one_all_reduce_per_sync(dppf::grawa{}, "grawa");
  check_one_all_reduce_per_sync(dppf::diloco{}, "diloco");
}

// ----- error paths ------------------------------------------------------------------------------

TEST_CASE("pull_push at zero distance gives no NaN and leaves workers in place") {
  for (auto mode : {dppf::push_mode::constant, dppf::push_mode::inverse_mv}) {
    dppf::thread_group group(3);
    group.run([&](dppf::thread_communicator comm) {
      std::vector<double> x(100, 0.25), g(100, 0.0);
      dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{{.alpha = 0.2, .lambda = 0.5, .push = mode}}, comm,
                       dppf::host_executor{}, {.tau = 1}};
      tr.step(x, g);
      CHECK(tr.stats().distance == 0.0);
      CHECK_FALSE(tr.stats().pushed);
      CHECK(std::all_of(x.begin(), x.end(), [](double v) { return v == 0.25; }));
    });
  }
}

namespace {
// Rank 1 gets a NaN in its parameters right before the first sync.
template <class F>
void with_nan_on_rank_1(dppf::non_finite_policy policy, F&& check) {
  dppf::thread_group group(3);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = comm.rank();
    std::vector<double> x(50, 1.0 + r), g(50, 0.0);
    if (r == 1) x[7] = std::numeric_limits<double>::quiet_NaN();
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{{.alpha = 0.5, .lambda = 0.1}}, comm, dppf::host_executor{},
                     {.tau = 1, .on_non_finite = policy}};
    check(tr, x, g, r);
  });
}
}  // namespace

TEST_CASE("non-finite parameters follow the policy on every rank, with no hang") {
  std::atomic<int> raised{0};
  with_nan_on_rank_1(dppf::non_finite_policy::raise, [&](auto& tr, auto& x, auto& g, int r) {
    const auto before = x;
    try {
      tr.step(x, g);
    } catch (const dppf::non_finite_error& e) {
      CHECK(std::string(e.what()).find("non-finite parameters on rank(s) 1") != std::string::npos);
      ++raised;
    }
    if (r != 1) CHECK(x == before);  // nothing changed
  });
  CHECK(raised == 3);

  with_nan_on_rank_1(dppf::non_finite_policy::skip, [&](auto& tr, auto& x, auto& g, int r) {
    tr.step(x, g);
    CHECK(tr.stats().skipped);
    if (r != 1) CHECK(std::all_of(x.begin(), x.end(), [&](double v) { return v == 1.0 + r; }));
  });

  with_nan_on_rank_1(dppf::non_finite_policy::reset, [&](auto& tr, auto& x, auto& g, int) {
    tr.step(x, g);
    CHECK(tr.stats().reset);
    // The finite workers hold 1.0 and 3.0: everyone is reset to their mean.
    CHECK(std::all_of(x.begin(), x.end(), [](double v) { return v == 2.0; }));
  });
}

TEST_CASE("parameter sizes that differ across ranks raise on every rank, with no hang") {
  std::atomic<int> raised{0};
  dppf::thread_group group(3);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(comm.rank() == 2 ? 11 : 10, 1.0f), g(x.size(), 0.0f);
    dppf::trainer tr{dppf::sgd{}, dppf::pull_push{}, comm, dppf::host_executor{}};
    try {
      tr.step(x, g);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("sizes differ across ranks") != std::string::npos);
      CHECK(std::string(e.what()).find("rank 2 has 11") != std::string::npos);
      ++raised;
    }
  });
  CHECK(raised == 3);
}

TEST_CASE("consensus and trainer options are validated") {
  check_throws_with<std::invalid_argument>([] { dppf::pull_push{{.alpha = 0.0}}; }, "alpha must be in (0, 1]");
  check_throws_with<std::invalid_argument>([] { dppf::pull_push{{.alpha = 1.5}}; }, "alpha must be in (0, 1]");
  check_throws_with<std::invalid_argument>([] { dppf::pull_push{{.lambda = -1}}; }, "lambda must be finite and >= 0");
  check_throws_with<std::invalid_argument>([] { dppf::elastic{{.alpha = 0}}; }, "elastic: alpha");
  check_throws_with<std::invalid_argument>([] { dppf::leader{{.pull = 2}}; }, "leader: pull");
  check_throws_with<std::invalid_argument>([] { dppf::grawa{{.alpha = -0.1}}; }, "grawa: alpha");
  check_throws_with<std::invalid_argument>([] { dppf::diloco{{.outer_momentum = 1.0}}; }, "outer_momentum must be in [0, 1)");
  dppf::thread_group group(1);
  auto comm = group.member(0);
  check_throws_with<std::invalid_argument>([&] { dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 0}}; },
                                           "tau must be >= 1");
  dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, comm, dppf::host_executor{}};
  std::vector<float> x(5), g(4), empty;
  check_throws_with<std::invalid_argument>([&] { tr.step(x, g); }, "gradients has 4 elements, expected 5");
  check_throws_with<std::invalid_argument>([&] { tr.step(empty, empty); }, "parameters is empty");
}

TEST_CASE("elastic rejects M * alpha > 1 when beta is left to its default") {
  std::atomic<int> raised{0};
  dppf::thread_group group(4);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(8, 1.0f), g(8, 0.0f);
    dppf::trainer tr{dppf::sgd{}, dppf::elastic{{.alpha = 0.5}}, comm, dppf::host_executor{}};
    try {
      tr.step(x, g);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("must be <= 1") != std::string::npos);
      ++raised;
    }
  });
  CHECK(raised == 4);
}

TEST_CASE("leader without losses raises on every rank") {
  std::atomic<int> raised{0};
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(8, 1.0f), g(8, 0.0f);
    dppf::trainer tr{dppf::sgd{}, dppf::leader{}, comm, dppf::host_executor{}, {.tau = 1}};
    try {
      tr.step(x, g);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("has no finite loss") != std::string::npos);
      ++raised;
    }
  });
  CHECK(raised == 2);
}

// ----- trainer features --------------------------------------------------------------------------

TEST_CASE("trainer stats report r_i, the mean, min and max over workers, and the push") {
  dppf::thread_group group(3);
  std::vector<dppf::trainer_stats> stats(3);
  std::vector<double> r_direct(3);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<double> x(64, 0.0), g(64, 0.0);
    x[r] = 1.0 + static_cast<double>(r);  // distances from the mean differ per worker
    // r_i computed directly, before the sync.
    std::vector<double> xbar(64, 0.0);
    for (std::size_t j = 0; j < 3; ++j) xbar[j] = (1.0 + static_cast<double>(j)) / 3.0;
    double s = 0;
    for (std::size_t k = 0; k < 64; ++k) s += (x[k] - xbar[k]) * (x[k] - xbar[k]);
    r_direct[r] = std::sqrt(s);
    dppf::trainer tr{dppf::sgd{{.lr = 0.0}}, dppf::pull_push{{.alpha = 0.1, .lambda = 0.05}}, comm, dppf::host_executor{}, {.tau = 1}};
    tr.step(x, g);
    stats[r] = tr.stats();
  });
  const double mean = (r_direct[0] + r_direct[1] + r_direct[2]) / 3;
  for (int r = 0; r < 3; ++r) {
    CHECK(stats[r].distance == doctest::Approx(r_direct[r]).epsilon(1e-14));
    CHECK(stats[r].mean_distance == doctest::Approx(mean).epsilon(1e-14));
    CHECK(stats[r].min_distance == doctest::Approx(*std::min_element(r_direct.begin(), r_direct.end())).epsilon(1e-14));
    CHECK(stats[r].max_distance == doctest::Approx(*std::max_element(r_direct.begin(), r_direct.end())).epsilon(1e-14));
    CHECK(stats[r].pushed);
    CHECK(stats[r].syncs == 1);
    CHECK(stats[r].alpha == 0.1);
    CHECK(stats[r].lambda == 0.05);
  }
}

TEST_CASE("trainer warm-up turns the push off and syncs every warmup_tau steps") {
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    auto x = random_vector<double>(32, comm.rank());
    std::vector<double> g(32, 0.0);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{{.alpha = 0.1, .lambda = 0.5}}, comm, dppf::host_executor{},
                     {.tau = 4, .warmup_steps = 3, .warmup_tau = 1}};
    for (int t = 0; t < 3; ++t) {
      tr.step(x, g);
      CHECK(tr.stats().syncs == t + 1);  // every step during the warm-up
      CHECK_FALSE(tr.stats().pushed);
      CHECK(tr.stats().lambda == 0.0);
    }
    // After the warm-up, syncs come when the global step count is a multiple of tau: steps 4 and 8.
    tr.step(x, g);
    CHECK(tr.stats().syncs == 4);
    CHECK(tr.stats().pushed);
    for (int t = 4; t < 7; ++t) tr.step(x, g);
    CHECK(tr.stats().syncs == 4);
    tr.step(x, g);
    CHECK(tr.stats().syncs == 5);
  });
}

TEST_CASE("pull_push strengths proportional to the learning rate follow the schedule") {
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    auto x = random_vector<double>(32, comm.rank());
    std::vector<double> g(32, 0.0);
    dppf::trainer tr{dppf::sgd{{.lr = 0.2}},
                     dppf::pull_push{{.alpha = 0.4, .lambda = 0.2, .schedule = dppf::strength_schedule::proportional_to_lr}},
                     comm,
                     dppf::host_executor{},
                     {.tau = 2},
                     dppf::step_lr{.lr = 0.2, .step_size = 2, .gamma = 0.5}};
    tr.step(x, g);
    tr.step(x, g);  // sync at step index 1: lr = 0.2
    CHECK(tr.stats().alpha == doctest::Approx(0.4));
    tr.step(x, g);
    tr.step(x, g);  // sync at step index 3: lr = 0.1
    CHECK(tr.stats().alpha == doctest::Approx(0.2));
    CHECK(tr.stats().lambda == doctest::Approx(0.1));
    CHECK(tr.optimizer().lr() == doctest::Approx(0.1));
  });
}

TEST_CASE("trainer averages non-trainable buffers and optionally the optimizer state at sync") {
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    const double r = comm.rank();
    std::vector<double> x(16, r), g(16, 1.0 + r), bn(5, 10.0 * r);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1, .momentum = 0.9}}, dppf::pull_push{{.alpha = 0.5, .lambda = 0.0}}, comm,
                     dppf::host_executor{}, {.tau = 1, .average_optimizer_state = true}};
    tr.step(x, g, 0.0, bn);
    CHECK(std::all_of(bn.begin(), bn.end(), [](double v) { return v == 5.0; }));  // averaged, not pushed
    auto* ws = dppf::detail::trainer_access::workspace<double>(tr);
    REQUIRE(ws != nullptr);
    // Momentum buffers (1 and 2) are averaged to 1.5 on both workers.
    CHECK(std::all_of(ws->optimizer_state.momentum_buffer.begin(), ws->optimizer_state.momentum_buffer.end(),
                      [](double v) { return v == 1.5; }));
  });
}

TEST_CASE("trainer average gives x_bar on every rank") {
  dppf::thread_group group(4);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(10, static_cast<float>(comm.rank()));
    dppf::trainer tr{dppf::sgd{}, dppf::pull_push{}, comm, dppf::host_executor{}};
    tr.average(x);
    CHECK(std::all_of(x.begin(), x.end(), [](float v) { return v == 1.5f; }));
  });
}

TEST_CASE("trainer usage shape of the documented API compiles and works") {
  const std::size_t n = 1000;
  dppf::thread_group group(4);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> params(n, 1.0f), grads(n, 0.01f);
    dppf::host_executor ex;
    dppf::sgd opt{{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
    dppf::trainer tr{opt, dppf::pull_push{{.alpha = 0.1, .lambda = 0.05}}, comm, ex, {.tau = 4}};
    for (int t = 0; t < 8; ++t) tr.step(params, grads);
    auto s = tr.stats();
    CHECK(s.syncs == 2);
    CHECK(s.bytes > 0);
    tr.average(params);
    CHECK(std::isfinite(params[0]));
  });
}

// ----- reliability ---------------------------------------------------------------------------

namespace {
// A communicator that fails on rank `victim` in the middle of a sync: after the all-reduce of
// the parameters, at the all-gather of the distances.
struct fails_mid_sync : dppf::thread_communicator {
  int victim;
  std::uint64_t gathers = 0;
  std::vector<double> all_gather(double v) {
    if (rank() == victim && ++gathers == 2) throw std::runtime_error("rank " + std::to_string(victim) + " died mid-sync");
    return dppf::thread_communicator::all_gather(v);
  }
};
}  // namespace

TEST_CASE("a worker that fails in the middle of a sync makes every rank raise, with no hang") {
  dppf::thread_group group(4, {.timeout = std::chrono::seconds(30)});
  std::atomic<int> comm_errors{0};
  check_throws_with<std::runtime_error>(
      [&] {
        group.run([&](dppf::thread_communicator m) {
          auto x = random_vector<float>(1000, m.rank());
          std::vector<float> g(1000, 0.01f);
          dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{}, fails_mid_sync{m, 2}, dppf::host_executor{}, {.tau = 2}};
          try {
            for (int t = 0; t < 10; ++t) tr.step(x, g);
          } catch (const dppf::communication_error& e) {
            // Raised because the group was aborted by the failing rank, not by the timeout.
            if (std::string(e.what()).find("aborted (rank 2 failed)") != std::string::npos) ++comm_errors;
            throw;
          }
        });
      },
      "rank 2 died mid-sync");
  CHECK(comm_errors == 3);  // every other rank raised instead of waiting
}

TEST_CASE("two runs with the same inputs give bitwise-identical parameters (deterministic mode)") {
  for (int m : {1, 3}) {
    const auto a = train_momentum(m, dppf::pull_push{{.alpha = 0.2, .lambda = 0.1}});
    const auto b = train_momentum(m, dppf::pull_push{{.alpha = 0.2, .lambda = 0.1}});
    for (int r = 0; r < m; ++r) CHECK(std::memcmp(a[r].data(), b[r].data(), a[r].size() * sizeof(float)) == 0);
  }
}

// ----- trainer edge cases ----------------------------------------------------------------------

TEST_CASE("strengths proportional to the learning rate are relative to the schedule's lr(0)") {
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    auto x = random_vector<double>(16, comm.rank());
    std::vector<double> g(16, 0.0);
    // The optimizer's own lr (its default) differs from the schedule's: the schedule wins.
    dppf::trainer tr{dppf::sgd{},
                     dppf::pull_push{{.alpha = 0.4, .lambda = 0.2, .schedule = dppf::strength_schedule::proportional_to_lr}},
                     comm, dppf::host_executor{}, {.tau = 1}, dppf::constant_lr{.lr = 0.1}};
    tr.step(x, g);
    CHECK(tr.stats().alpha == doctest::Approx(0.4));
    CHECK(tr.stats().lambda == doctest::Approx(0.2));
  });
}

TEST_CASE("trainer without a schedule uses the optimizer's current lr") {
  dppf::thread_group group(1);
  auto comm = group.member(0);
  std::vector<double> x(4, 1.0), g(4, 1.0);
  dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 100}};
  tr.step(x, g);
  CHECK(x[0] == doctest::Approx(0.9));
  tr.optimizer().set_lr(0.0);
  tr.step(x, g);
  CHECK(x[0] == doctest::Approx(0.9));  // lr 0 took effect
}

TEST_CASE("data_parallel averages the non-trainable buffers too") {
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<double> x(4, 0.0), g(4, 1.0), bn(3, 10.0 * comm.rank());
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::data_parallel{}, comm, dppf::host_executor{}};
    tr.step(x, g, 0.0, bn);
    CHECK(std::all_of(bn.begin(), bn.end(), [](double v) { return v == 5.0; }));
  });
}

TEST_CASE("buffers of different sizes across ranks raise on every rank before the parameters change") {
  std::atomic<int> raised{0};
  dppf::thread_group group(2);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<double> x(4, comm.rank() == 0 ? 1.0 : -1.0), g(4, 0.0), bn(comm.rank() == 0 ? 2 : 3, 1.0);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 1}};
    try {
      tr.step(x, g, 0.0, bn);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("buffers: sizes differ across ranks") != std::string::npos);
      ++raised;
    }
    CHECK(x[0] == (comm.rank() == 0 ? 1.0 : -1.0));  // unchanged
    CHECK(tr.stats().syncs == 0);
  });
  CHECK(raised == 2);
}

TEST_CASE("a bad first step on one rank raises on every rank, with no hang") {
  std::atomic<int> invalid{0}, others{0};
  dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(8, 1.0f), g(comm.rank() == 1 ? 7 : 8, 0.0f);
    dppf::trainer tr{dppf::sgd{}, dppf::pull_push{}, comm, dppf::host_executor{}};
    try {
      tr.step(x, g);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("gradients has 7 elements, expected 8") != std::string::npos);
      ++invalid;
    } catch (const dppf::communication_error& e) {
      CHECK(std::string(e.what()).find("another rank failed") != std::string::npos);
      ++others;
    }
  });
  CHECK(invalid == 1);
  CHECK(others == 2);
}

TEST_CASE("grawa follows the non-finite policy for a non-finite gradient") {
  for (auto policy : {dppf::non_finite_policy::raise, dppf::non_finite_policy::skip, dppf::non_finite_policy::reset}) {
    std::atomic<int> raised{0};
    dppf::thread_group group(3);
    group.run([&](dppf::thread_communicator comm) {
      const int r = comm.rank();
      std::vector<double> x(6, 1.0 + r), g(6, 0.0);
      if (r == 2) g[1] = std::numeric_limits<double>::infinity();
      dppf::trainer tr{dppf::sgd{{.lr = 0.0}}, dppf::grawa{}, comm, dppf::host_executor{}, {.tau = 1, .on_non_finite = policy}};
      try {
        tr.step(x, g);
      } catch (const dppf::non_finite_error& e) {
        CHECK(std::string(e.what()).find("non-finite gradient on rank(s) 2") != std::string::npos);
        ++raised;
        return;
      }
      if (policy == dppf::non_finite_policy::skip) {
        CHECK(tr.stats().skipped);
      } else {
        CHECK(tr.stats().reset);
      }
    });
    if (policy == dppf::non_finite_policy::raise) CHECK(raised == 3);
  }
}
