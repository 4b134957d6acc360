// The concepts mean what they say. For each of executor, local_optimizer, consensus and
// lr_schedule an archetype below has exactly the members the concept checks and nothing more;
// it is run through every algorithm that accepts the concept and compared with host_executor or
// a double-precision loop (the proof that the concept is complete). Types that miss one member
// are rejected at the call with the concept's name: tests/concepts/*.cpp, try-compiled by
// tests/concepts.cmake. Also here: one validate() per options aggregate, and buffer aliasing.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include <dppf/algorithms.hpp>
#include <dppf/communicators/single.hpp>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/consensus.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/optimizers.hpp>
#include <dppf/random/directions.hpp>
#include <dppf/sharpness.hpp>
#include <dppf/trainer.hpp>

#include "concepts/archetypes.hpp"
#include "support.hpp"

namespace {

using dppf_test::archetype_consensus;
using dppf_test::archetype_executor;
using dppf_test::archetype_optimizer;
using dppf_test::archetype_schedule;
using dppf_test::check_throws_with;
using dppf_test::random_vector;

static_assert(dppf::executor<archetype_executor>);
static_assert(!std::is_default_constructible_v<archetype_executor>);
static_assert(dppf::local_optimizer<archetype_optimizer, archetype_executor>);
static_assert(dppf::local_optimizer<archetype_optimizer, dppf::host_executor>);
static_assert(dppf::consensus<archetype_consensus, archetype_executor,
                              dppf::counting_communicator<dppf::thread_communicator>>);
static_assert(dppf::lr_schedule<archetype_schedule>);

// The library's own models.
static_assert(dppf::executor<dppf::host_executor> && dppf::executor<dppf::host_parallel_executor>);
static_assert(dppf::local_optimizer<dppf::sgd, dppf::host_executor> &&
              dppf::local_optimizer<dppf::adamw, dppf::host_parallel_executor>);
using counted_single = dppf::counting_communicator<dppf::single_communicator>;
static_assert(dppf::consensus<dppf::pull_push, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::local_sgd, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::elastic, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::leader, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::grawa, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::diloco, dppf::host_executor, counted_single> &&
              dppf::consensus<dppf::data_parallel, dppf::host_executor, counted_single>);

template <class T>
void check_equal(const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == want[i]);
  }
}

// Relative agreement of two double sums (archetype: index order; host: chunked).
void check_close(double got, double want) { CHECK(std::abs(got - want) <= 1e-12 * (1.0 + std::abs(want))); }

template <class T>
void algorithms_on_archetype() {
  const archetype_executor ax(0);
  const dppf::host_executor hx;
  const std::size_t n = 1003;
  const auto x = random_vector<T>(n, 11), y0 = random_vector<T>(n, 12);

  std::vector<T> a(n), h(n);
  dppf::fill(ax, a, T(1.5));
  dppf::fill(hx, h, T(1.5));
  check_equal(a, h);
  dppf::copy(ax, x, a);
  check_equal(a, x);
  dppf::scale(ax, a, T(-0.75));
  dppf::copy(hx, x, h);
  dppf::scale(hx, h, T(-0.75));
  check_equal(a, h);
  a = y0;
  h = y0;
  dppf::axpy(ax, T(0.3), x, a);
  dppf::axpy(hx, T(0.3), x, h);
  check_equal(a, h);

  double s = 0, d = 0, q = 0;
  for (std::size_t i = 0; i < n; ++i) {
    s += static_cast<double>(x[i]);
    d += static_cast<double>(x[i]) * static_cast<double>(y0[i]);
    q += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  check_close(dppf::sum(ax, x), s);
  check_close(dppf::dot(ax, x, y0), d);
  check_close(dppf::squared_norm(ax, x), q);

  // Random fills are pure functions of (key, index): the same bits as host_executor.
  dppf::fill_uniform(ax, a, {7, 1}, -2.0, 3.0);
  dppf::fill_uniform(hx, h, {7, 1}, -2.0, 3.0);
  check_equal(a, h);
  dppf::fill_normal(ax, a, {7, 2});
  dppf::fill_normal(hx, h, {7, 2});
  check_equal(a, h);
  dppf::fill_rademacher(ax, a, {7, 3});
  dppf::fill_rademacher(hx, h, {7, 3});
  check_equal(a, h);

  // Optimizer steps (state made from the parameters: init(ex, params)).
  for (const bool use_adamw : {false, true}) {
    std::vector<T> pa = x, ph = x;
    const auto g = random_vector<T>(n, 13);
    if (use_adamw) {
      const dppf::adamw opt{{.lr = 0.01, .amsgrad = true}};
      auto sa = opt.init(ax, pa);
      auto sh = opt.init(hx, ph);
      for (int t = 0; t < 3; ++t) {
        opt.step(ax, pa, g, sa);
        opt.step(hx, ph, g, sh);
      }
    } else {
      const dppf::sgd opt{{.lr = 0.1, .momentum = 0.9, .nesterov = true}};
      auto sa = opt.init(ax, pa);
      auto sh = opt.init(hx, ph);
      for (int t = 0; t < 3; ++t) {
        opt.step(ax, pa, g, sa);
        opt.step(hx, ph, g, sh);
      }
    }
    check_equal(pa, ph);
  }
}

}  // namespace

TEST_CASE("executor archetype runs every algorithm, random fill and optimizer step") {
  algorithms_on_archetype<float>();
  algorithms_on_archetype<double>();
}

TEST_CASE("executor archetype runs the sharpness estimators") {
  // f(x) = 1/2 sum_i c_i x_i^2: grad c x, H = diag(c), tr(H) = sum c, top eigenvalue max c.
  const std::size_t n = 64;
  std::vector<double> c(n);
  for (std::size_t i = 0; i < n; ++i) c[i] = 1.0 + static_cast<double>(i % 7);
  const auto x = random_vector<double>(n, 21);
  const auto loss = [&](std::span<const double> p) {
    double f = 0;
    for (std::size_t i = 0; i < n; ++i) f += 0.5 * c[i] * p[i] * p[i];
    return f;
  };
  const auto loss_and_grad = [&](std::span<const double> p, std::span<double> g) {
    for (std::size_t i = 0; i < n; ++i) g[i] = c[i] * p[i];
    return loss(p);
  };
  const archetype_executor ax(0);
  const dppf::host_executor hx;
  const auto tr = dppf::hessian_trace(ax, loss_and_grad, x, {.samples = 4});
  double want_trace = 0;
  for (double ci : c) want_trace += ci;
  // Rademacher probes of a diagonal H give the trace exactly (up to the finite differences).
  CHECK(tr.value == doctest::Approx(want_trace).epsilon(1e-6));
  const auto top = dppf::hessian_top_eigenvalue(ax, loss_and_grad, x, {.max_iters = 500, .tol = 1e-10});
  CHECK(top.value == doctest::Approx(7.0).epsilon(1e-4));
  const auto sam_a = dppf::sam_sharpness(ax, loss_and_grad, x);
  const auto sam_h = dppf::sam_sharpness(hx, loss_and_grad, x);
  CHECK(sam_a.value == doctest::Approx(sam_h.value).epsilon(1e-12));
  const auto mv_a = dppf::mean_valley(ax, loss, x, {.directions = 3});
  const auto mv_h = dppf::mean_valley(hx, loss, x, {.directions = 3});
  CHECK(mv_a.value == doctest::Approx(mv_h.value).epsilon(1e-9));
  const auto as_a = dppf::average_sharpness(ax, loss, x, {.samples = 3});
  const auto as_h = dppf::average_sharpness(hx, loss, x, {.samples = 3});
  CHECK(as_a.value == doctest::Approx(as_h.value).epsilon(1e-9));
}

TEST_CASE("trainer accepts the optimizer, consensus and schedule archetypes") {
  // Three workers, tau = 2: x -= lr(t) g every step, then x <- (x + x_bar) / 2; checked against
  // a double loop over all workers.
  constexpr int m = 3;
  constexpr std::size_t n = 17;
  constexpr int steps = 6;
  std::vector<std::vector<double>> x0(m), grads(m), got(m);
  for (int r = 0; r < m; ++r) {
    x0[r] = random_vector<double>(n, 100 + r);
    grads[r] = random_vector<double>(n, 200 + r);
  }
  std::vector<std::int64_t> syncs(m);
  std::vector<double> seen(m);
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<double> x = x0[r];
    dppf::trainer tr{archetype_optimizer{1.0}, archetype_consensus{}, comm, archetype_executor(0), {.tau = 2},
                     archetype_schedule{}};
    for (int t = 0; t < steps; ++t) tr.step(x, grads[r]);
    got[r] = x;
    seen[r] = tr.stats().distance;  // the rule's state counted every sync
    syncs[r] = tr.syncs();
  });
  std::vector<std::vector<double>> want = x0;
  for (int t = 0; t < steps; ++t) {
    const double lr = archetype_schedule{}(t);
    for (int r = 0; r < m; ++r)
      for (std::size_t i = 0; i < n; ++i) want[r][i] -= lr * grads[r][i];
    if ((t + 1) % 2 == 0) {
      std::vector<double> mean(n, 0.0);
      for (int r = 0; r < m; ++r)
        for (std::size_t i = 0; i < n; ++i) mean[i] += want[r][i] / m;
      for (int r = 0; r < m; ++r)
        for (std::size_t i = 0; i < n; ++i) want[r][i] = 0.5 * (want[r][i] + mean[i]);
    }
  }
  for (int r = 0; r < m; ++r) {
    CHECK(syncs[r] == steps / 2);
    CHECK(seen[r] == steps / 2);
    for (std::size_t i = 0; i < n; ++i) CHECK(got[r][i] == doctest::Approx(want[r][i]).epsilon(1e-12));
  }
}

TEST_CASE("optimizer state made from the parameters has their element type") {
  const dppf::host_executor ex;
  std::vector<double> p = random_vector<double>(8, 1);
  const std::vector<double> g = random_vector<double>(8, 2);
  auto s = dppf::sgd{{.lr = 0.1, .momentum = 0.5}}.init(ex, p);
  static_assert(std::is_same_v<decltype(s.momentum_buffer), std::vector<double>>);
  const std::vector<float> pf(3);
  auto a = dppf::adamw{}.init(ex, std::span<const float>(pf));
  static_assert(std::is_same_v<decltype(a.exp_avg), std::vector<float>>);
  CHECK(a.exp_avg.size() == 3);
  dppf::sgd{{.lr = 0.1, .momentum = 0.5}}.step(ex, p, g, s);
  CHECK(s.step == 1);
  // The mismatch (float state, double parameters) is a compile error: tests/concepts/.
}

// ---- validation: every *_options has validate() naming the field and value; owners call it.
template <class O>
void check_invalid(const O& o, const std::string& owner_and_field, const std::string& value) {
  check_throws_with<dppf::invalid_argument_error>([&] { o.validate(); }, owner_and_field);
  check_throws_with<std::invalid_argument>([&] { o.validate(); }, "(got " + value + ")");
}

TEST_CASE("every options aggregate validates, naming the field and its value") {
  CHECK_NOTHROW(dppf::sgd_options{}.validate());
  check_invalid(dppf::sgd_options{.lr = -2.0}, "sgd: lr", "-2");
  check_invalid(dppf::sgd_options{.lr = INFINITY}, "sgd: lr", "inf");
  check_invalid(dppf::sgd_options{.dampening = 1.5}, "sgd: dampening", "1.5");
  check_invalid(dppf::sgd_options{.nesterov = true}, "sgd: nesterov", "true");
  CHECK_NOTHROW(dppf::adamw_options{}.validate());
  check_invalid(dppf::adamw_options{.beta2 = 1.0}, "adamw: beta2", "1");
  check_invalid(dppf::adamw_options{.eps = 0.0}, "adamw: eps", "0");
  CHECK_NOTHROW(dppf::pull_push_options{}.validate());
  check_invalid(dppf::pull_push_options{.alpha = 0.0}, "pull_push: alpha", "0");
  check_invalid(dppf::pull_push_options{.lambda = -1.0}, "pull_push: lambda", "-1");
  check_invalid(dppf::pull_push_options{.eps = -1e-3}, "pull_push: eps", "-0.001");
  CHECK_NOTHROW(dppf::elastic_options{}.validate());
  check_invalid(dppf::elastic_options{.alpha = 1.5}, "elastic: alpha", "1.5");
  check_invalid(dppf::elastic_options{.beta = -0.5}, "elastic: beta", "-0.5");
  CHECK_NOTHROW(dppf::leader_options{}.validate());
  check_invalid(dppf::leader_options{.pull = 0.0}, "leader: pull", "0");
  CHECK_NOTHROW(dppf::grawa_options{}.validate());
  check_invalid(dppf::grawa_options{.alpha = 2.0}, "grawa: alpha", "2");
  CHECK_NOTHROW(dppf::diloco_options{}.validate());
  check_invalid(dppf::diloco_options{.outer_lr = 0.0}, "diloco: outer_lr", "0");
  check_invalid(dppf::diloco_options{.outer_momentum = 1.0}, "diloco: outer_momentum", "1");
  check_invalid(dppf::diloco_options{.outer_momentum = 0.0}, "diloco: nesterov", "true");
  CHECK_NOTHROW(dppf::trainer_options{}.validate());
  check_invalid(dppf::trainer_options{.tau = 0}, "trainer: tau", "0");
  check_invalid(dppf::trainer_options{.warmup_steps = -3}, "trainer: warmup_steps", "-3");
  check_invalid(dppf::trainer_options{.warmup_tau = -1}, "trainer: warmup_tau", "-1");
  CHECK_NOTHROW(dppf::sam_sharpness_options{}.validate());
  check_invalid(dppf::sam_sharpness_options{.rho = 0.0}, "sam_sharpness: rho", "0");
  CHECK_NOTHROW(dppf::hessian_trace_options{}.validate());
  check_invalid(dppf::hessian_trace_options{.samples = 0}, "hessian_trace: samples", "0");
  CHECK_NOTHROW(dppf::hessian_top_eigenvalue_options{}.validate());
  check_invalid(dppf::hessian_top_eigenvalue_options{.tol = -1.0}, "hessian_top_eigenvalue: tol", "-1");
  CHECK_NOTHROW(dppf::average_sharpness_options{}.validate());
  check_invalid(dppf::average_sharpness_options{.sigma = 0.0}, "average_sharpness: sigma", "0");
  CHECK_NOTHROW(dppf::mean_valley_options{}.validate());
  check_invalid(dppf::mean_valley_options{.directions = 0}, "mean_valley: directions", "0");
  // Schedules.
  CHECK_NOTHROW(dppf::constant_lr{}.validate());
  check_invalid(dppf::constant_lr{.lr = NAN}, "constant_lr: lr", "nan");
  check_invalid(dppf::step_lr{.step_size = 0}, "step_lr: step_size", "0");
  check_invalid(dppf::cosine_lr{.total_steps = 0}, "cosine_lr: total_steps", "0");
  check_invalid(dppf::warmup<dppf::cosine_lr>{.steps = 2, .then = {.min_lr = -1.0}}, "cosine_lr: min_lr", "-1");
}

TEST_CASE("owners validate their options when built") {
  check_throws_with<dppf::invalid_argument_error>([] { dppf::sgd{{.lr = -1.0}}; }, "sgd: lr");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::adamw{{.beta1 = 1.0}}; }, "adamw: beta1");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::pull_push{{.alpha = 0.0}}; }, "pull_push: alpha");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::elastic{{.alpha = 0.0}}; }, "elastic: alpha");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::leader{{.pull = 2.0}}; }, "leader: pull");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::grawa{{.alpha = 0.0}}; }, "grawa: alpha");
  check_throws_with<dppf::invalid_argument_error>([] { dppf::diloco{{.outer_lr = -1.0}}; }, "diloco: outer_lr");
  const auto make = [](dppf::trainer_options o, auto schedule) {
    dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, o, schedule};
  };
  check_throws_with<dppf::invalid_argument_error>([&] { make({.tau = 0}, dppf::constant_lr{}); }, "trainer: tau");
  // The schedule is validated when the trainer is built, before its first call.
  check_throws_with<dppf::invalid_argument_error>([&] { make({}, dppf::step_lr{.step_size = 0}); },
                                                  "step_lr: step_size must be > 0");
  check_throws_with<dppf::invalid_argument_error>(
      [&] { make({}, dppf::warmup<dppf::step_lr>{.steps = 3, .then = {.gamma = -1.0}}); }, "step_lr: gamma");
  // Estimators validate their options before any oracle call.
  int calls = 0;
  const std::vector<double> x(4, 1.0);
  const auto loss = [&](std::span<const double>) {
    ++calls;
    return 1.0;
  };
  check_throws_with<dppf::invalid_argument_error>(
      [&] { (void)dppf::mean_valley(dppf::host_executor{}, loss, x, {.t_max = -1.0}); }, "mean_valley: t_max");
  CHECK(calls == 0);
}

TEST_CASE("trainer checks each rate a user schedule returns") {
  // A user callable has no validate(): its rates are checked as they come.
  const auto schedule = [](std::int64_t step) { return step < 2 ? 0.1 : -0.5; };
  dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {}, schedule};
  std::vector<float> x(5, 1.0f);
  const std::vector<float> g(5, 1.0f);
  tr.step(x, g);
  tr.step(x, g);
  const std::vector<float> before = x;
  check_throws_with<dppf::invalid_argument_error>([&] { tr.step(x, g); },
                                                  "trainer: the schedule's rate at step 2 must be >= 0 and finite (got -0.5)");
  check_equal(x, before);  // nothing changed
  const auto nan_at_start = [](std::int64_t) { return NAN; };
  check_throws_with<dppf::invalid_argument_error>(
      [&] {
        dppf::trainer bad{dppf::sgd{}, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {},
                          nan_at_start};
      },
      "the schedule's rate at step 0");
}

// ---- aliasing: buffers of one call are the same memory or disjoint.
template <class E>
void aliasing_on(const E& ex) {
  const std::size_t n = 40000;  // above host_parallel_executor's serial threshold
  std::vector<double> x = random_vector<double>(n, 5), want = x;
  for (double& v : want) v += 0.25 * v;
  dppf::axpy(ex, 0.25, x, x);  // x += 0.25 x
  check_equal(x, want);
  // copy onto itself is the identity; dot of x with itself is its squared norm.
  dppf::copy(ex, x, x);
  check_equal(x, want);
  CHECK(dppf::dot(ex, x, x) == dppf::squared_norm(ex, x));
  // An optimizer step whose gradient is the parameter buffer itself: p -= lr p.
  std::vector<double> p(n, 2.0);
  const dppf::sgd opt{{.lr = 0.5}};
  auto s = opt.init(ex, p);
  opt.step(ex, p, p, s);
  for (double v : p) CHECK(v == 1.0);
  // Partial overlap is rejected with both buffers named, before anything is written.
  std::vector<double> big = random_vector<double>(n + 1, 6);
  const std::vector<double> keep = big;
  const std::span<const double> head(big.data(), n);
  const std::span<double> tail(big.data() + 1, n);
  check_throws_with<dppf::invalid_argument_error>([&] { dppf::axpy(ex, 1.0, head, tail); },
                                                  "buffers 0 and 1 overlap partially");
  check_equal(big, keep);
  // Inputs that are only read may overlap in any way: sum_i big[i] big[i + 1].
  double lagged = 0.0;
  for (std::size_t i = 0; i < n; ++i) lagged += keep[i] * keep[i + 1];
  CHECK(dppf::dot(ex, head, std::span<const double>(tail)) == doctest::Approx(lagged).epsilon(1e-12));
  // Adjacent (touching, disjoint) halves are fine.
  const std::span<const double> first(big.data(), n / 2);
  const std::span<double> second(big.data() + n / 2, n / 2);
  dppf::copy(ex, first, second);
  for (std::size_t i = 0; i < n / 2; ++i) CHECK(big[n / 2 + i] == keep[i]);
}

TEST_CASE("buffers of one call may alias exactly but not overlap partially") {
  aliasing_on(dppf::host_executor{});
  aliasing_on(dppf::host_parallel_executor{});
  aliasing_on(dppf::host_parallel_executor{.threads = 3});
}
