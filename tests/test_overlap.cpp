// The overlapped sync (trainer_options::overlap_steps = d): d = 0 is the blocking sync bit for
// bit; each delayed rule against an independent double-precision replay of the delayed update
// (snapshot at the sync step, correction from the snapshot applied d steps later with the local
// progress kept) over many syncs, every element, fresh random inputs; the stats; errors of the
// in-flight all-reduce raise on every rank without a hang; a checkpoint taken while a sync is in
// flight resumes bit for bit; bad options are refused.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <dppf/checkpoint.hpp>
#include <dppf/dppf.hpp>

#include "compression_reference.hpp"
#include "overlap_reference.hpp"
#include "support.hpp"

using dppf_test::check_throws_with;

namespace {

using namespace dppf_test;

// ----- dppf -------------------------------------------------------------------------------------

template <class F>
void with_rule(const rule_spec& rule, F&& f) {
  if (rule.name == "pull_push")
    f(dppf::pull_push{{.alpha = rule.alpha, .lambda = rule.lambda}});
  else if (rule.name == "pull_push_inverse_mv")
    f(dppf::pull_push{{.alpha = rule.alpha, .lambda = rule.lambda, .push = dppf::push_mode::inverse_mv}});
  else if (rule.name == "local_sgd")
    f(dppf::local_sgd{});
  else if (rule.name == "elastic")
    f(dppf::elastic{{.alpha = rule.alpha}});
  else if (rule.name == "diloco")
    f(dppf::diloco{{.outer_lr = rule.outer_lr, .outer_momentum = rule.mu}});
  else
    FAIL("unknown rule " << rule.name);
}

dppf::trainer_options options_of(const schedule_spec& sch, dppf::sync_precision precision = dppf::sync_precision::full) {
  return {.tau = sch.tau, .warmup_steps = sch.warmup_steps, .warmup_tau = sch.warmup_tau, .overlap_steps = sch.d, .sync_precision = precision};
}

template <class T>
struct dppf_result {
  matrix x;
  std::vector<dppf::trainer_stats> stats;
  std::vector<dppf::communication_counts> counts;
  std::vector<char> in_flight_at_end;  // not vector<bool>: each rank writes its own element
};

template <class T>
dppf_result<T> run_dppf(const problem& p, const rule_spec& rule, const schedule_spec& sch,
                        dppf::sync_precision precision = dppf::sync_precision::full) {
  dppf_result<T> out;
  out.x.resize(static_cast<std::size_t>(p.workers));
  out.stats.resize(out.x.size());
  out.counts.resize(out.x.size());
  out.in_flight_at_end.resize(out.x.size());
  dppf::thread_group group(p.workers, {.timeout = std::chrono::seconds(60)});
  with_rule(rule, [&](auto consensus) {
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<T> x(p.x0[r].begin(), p.x0[r].end()), g(p.n);
      dppf::trainer tr{dppf::sgd{{.lr = p.lr}}, consensus, comm, dppf::host_executor{}, options_of(sch, precision)};
      for (int t = 0; t < p.steps; ++t) {
        p.gradient(t, comm.rank(), x, g);
        tr.step(x, g);
      }
      out.in_flight_at_end[r] = tr.sync_in_flight();
      tr.finish_sync(x);
      CHECK_FALSE(tr.sync_in_flight());
      out.x[r].assign(x.begin(), x.end());
      out.stats[r] = tr.stats();
      out.counts[r] = tr.comm().counts();
    });
  });
  return out;
}

template <class T>
constexpr double tolerance() {
  // Roundings in T over 83 contracting steps and ~20 syncs; a wrong delay or rule is off by
  // O(alpha) (checked below against the blocking replay).
  return std::is_same_v<T, float> ? 3e-5 : 1e-11;
}

template <class T>
void check_delayed(const std::string& name, const schedule_spec& sch, int m) {
  const std::uint64_t seed = fresh_seed();
  CAPTURE(name);
  CAPTURE(m);
  CAPTURE(sch.tau);
  CAPTURE(sch.d);
  CAPTURE(sch.warmup_steps);
  INFO("seed = " << seed);
  const problem p(m, seed);
  const rule_spec rule{.name = name, .alpha = name == "elastic" ? 0.2 : 0.3};  // elastic: M alpha <= 1
  const auto got = run_dppf<T>(p, rule, sch);
  const auto want = replay(p, rule, sch);
  const double err = max_relative_error(got.x, want.x);
  CHECK(err < tolerance<T>());
  // The delay matters: the blocking rule's trajectory is far from the delayed one (by ~3e-2).
  CHECK(max_relative_error(want.x, replay(p, rule, sch, false).x) > 100 * tolerance<T>());
  for (std::size_t r = 0; r < got.stats.size(); ++r) {
    CAPTURE(r);
    const auto& s = got.stats[r];
    CHECK(s.syncs == want.applied);
    CHECK(s.distance == doctest::Approx(want.last_r_all[r]).epsilon(1e3 * tolerance<T>()));
    CHECK(s.mean_distance == doctest::Approx(want.last_mv).epsilon(1e3 * tolerance<T>()));
    // One asynchronous all-reduce of N values per sync, no blocking one after the rule's init,
    // and the all-gather of r: the bytes the stats report.
    CHECK(got.counts[r].async_buffer_all_reduces == static_cast<std::uint64_t>(want.started));
    const std::uint64_t init_reduces = name == "elastic" || name == "diloco" ? 1 : 0;
    CHECK(got.counts[r].buffer_all_reduces == init_reduces);
    CHECK(s.sync_bytes == p.n * sizeof(T) + sizeof(double));
    CHECK(s.overlapped_syncs <= s.syncs);
    CHECK(static_cast<bool>(got.in_flight_at_end[r]) == want.in_flight_at_end);
  }
}

// Overlapped and compressed (bf16): the same delayed update with the snapshots' mean computed by
// an independent replay of the compressed sync (compression_reference.hpp), in double (in float
// the replay's and the trainer's roundings would now and then put a difference on either side of
// a bf16 rounding boundary: the compressed mean itself is checked in float in test_compression).
void check_delayed_compressed(const std::string& name, const schedule_spec& sch, int m) {
  const std::uint64_t seed = fresh_seed();
  CAPTURE(name);
  CAPTURE(m);
  CAPTURE(sch.tau);
  CAPTURE(sch.d);
  INFO("seed = " << seed);
  const problem p(m, seed);
  const rule_spec rule{.name = name, .alpha = name == "elastic" ? 0.2 : 0.3};
  const auto got = run_dppf<double>(p, rule, sch, dppf::sync_precision::bf16);
  dppf_test::compressed_sync_reference<double> compressed(dppf_test::reference_bf16(), static_cast<std::size_t>(m), mean_of(p.x0));
  const auto want = replay(p, rule, sch, true, [&](const matrix& s) { return compressed.sync(s); });
  CHECK(max_relative_error(got.x, want.x) < tolerance<double>());
  // Compression matters: the exact mean's trajectory is far from it.
  CHECK(max_relative_error(want.x, replay(p, rule, sch).x) > 1e3 * tolerance<double>());
  const std::size_t chunk = (p.n + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
  for (std::size_t r = 0; r < got.stats.size(); ++r) {
    CAPTURE(r);
    const auto& s = got.stats[r];
    CHECK(s.syncs == want.applied);
    CHECK(s.mean_distance == doctest::Approx(want.last_mv).epsilon(1e3 * tolerance<double>()));
    // Per sync one started all-to-all and all-gather of words, no all-reduce of N values after
    // the compressed state's (and the rule's) init; the bytes the stats report.
    CHECK(got.counts[r].all_to_alls == static_cast<std::uint64_t>(want.started));
    CHECK(got.counts[r].buffer_all_gathers == static_cast<std::uint64_t>(want.started) + 1);  // + the fingerprints'
    CHECK(got.counts[r].async_buffer_all_reduces == 0);
    const std::uint64_t init_reduces = 1 + (name == "elastic" || name == "diloco" ? 1 : 0);
    CHECK(got.counts[r].buffer_all_reduces == init_reduces);
    CHECK(s.sync_bytes == 2 * (static_cast<std::size_t>(m) * chunk + chunk) + sizeof(double));
    CHECK(static_cast<bool>(got.in_flight_at_end[r]) == want.in_flight_at_end);
  }
}

}  // namespace

TEST_CASE("overlapped compressed sync matches a double replay of the delayed update with the compressed mean, every rule") {
  for (const char* name : {"pull_push", "pull_push_inverse_mv", "local_sgd", "elastic", "diloco"})
    for (int m : {3, 4})
      for (const schedule_spec sch : {schedule_spec{.tau = 4, .d = 1}, schedule_spec{.tau = 4, .d = 3},
                                      schedule_spec{.tau = 4, .d = 4}, schedule_spec{.tau = 8, .d = 8}})
        check_delayed_compressed(name, sch, m);
}

TEST_CASE_TEMPLATE("overlapped sync matches a double replay of the delayed update, every rule", T, double, float) {
  for (const char* name : {"pull_push", "pull_push_inverse_mv", "local_sgd", "elastic", "diloco"})
    for (int m : {3, 4})
      for (const schedule_spec sch : {schedule_spec{.tau = 4, .d = 1}, schedule_spec{.tau = 4, .d = 3},
                                      schedule_spec{.tau = 4, .d = 4}, schedule_spec{.tau = 5, .d = 2}})
        check_delayed<T>(name, sch, m);
}

TEST_CASE("overlapped sync during the warm-up: push off, a sync due before d steps first applies the previous") {
  // warmup_tau = 2 < d = 3: each warm-up sync is applied when the next one comes due.
  for (const char* name : {"pull_push", "diloco"})
    check_delayed<double>(name, {.tau = 4, .d = 3, .warmup_steps = 17, .warmup_tau = 2}, 3);
}

// ----- d = 0: the blocking sync, bit for bit ------------------------------------------------------

namespace {

// The blocking trainer's algorithm spelled out with the rule's own sync: the local step, then
// every tau steps rule.sync on the parameters (what the trainer did before overlap existed).
template <class T, class Rule>
matrix run_by_hand(const problem& p, Rule rule, std::int64_t tau, std::vector<dppf::communication_counts>& counts) {
  matrix out(static_cast<std::size_t>(p.workers));
  counts.resize(out.size());
  dppf::thread_group group(p.workers);
  group.run([&](dppf::thread_communicator member) {
    const auto r = static_cast<std::size_t>(member.rank());
    using comm_type = dppf::counting_communicator<dppf::thread_communicator>;
    using ctx_type = dppf::sync_context<dppf::host_executor, comm_type, T>;
    comm_type comm(member);
    const dppf::host_executor ex;
    const dppf::sgd opt{{.lr = p.lr}};
    std::vector<T> x(p.x0[r].begin(), p.x0[r].end()), g(p.n), scratch(p.n);
    (void)comm.all_reduce(0.0, dppf::reduce_op::max);         // the first step's agreement ...
    (void)comm.all_gather(static_cast<double>(p.n));          // ... and size check
    auto state = opt.template init<T>(ex, p.n);
    typename Rule::template state<std::vector<T>> rs{};
    ctx_type init_ctx{ex, comm, std::span<T>(x), std::span<T>(scratch), std::span<const T>()};
    rule.init(init_ctx, rs);
    double loss_sum = 0.0;
    for (int t = 0; t < p.steps; ++t) {
      p.gradient(t, member.rank(), x, g);
      const double loss = std::cos(t + 3.0 * member.rank());
      loss_sum += loss;
      opt.step(ex, x, g, state);
      if ((t + 1) % tau != 0) continue;
      ctx_type ctx{ex, comm, std::span<T>(x), std::span<T>(scratch), std::span<const T>(g)};
      ctx.loss = loss_sum / static_cast<double>(tau);
      (void)rule.sync(ctx, rs);
      loss_sum = 0.0;
    }
    out[r].assign(x.begin(), x.end());
    counts[r] = comm.counts();
  });
  return out;
}

template <class T, class Rule>
matrix run_trainer_d0(const problem& p, Rule rule, std::int64_t tau, std::vector<dppf::communication_counts>& counts) {
  matrix out(static_cast<std::size_t>(p.workers));
  counts.resize(out.size());
  dppf::thread_group group(p.workers);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<T> x(p.x0[r].begin(), p.x0[r].end()), g(p.n);
    dppf::trainer tr{dppf::sgd{{.lr = p.lr}}, rule, comm, dppf::host_executor{}, {.tau = tau, .overlap_steps = 0}};
    for (int t = 0; t < p.steps; ++t) {
      p.gradient(t, comm.rank(), x, g);
      tr.step(x, g, std::cos(t + 3.0 * comm.rank()));
      CHECK_FALSE(tr.sync_in_flight());
    }
    out[r].assign(x.begin(), x.end());
    counts[r] = tr.comm().counts();
  });
  return out;
}

template <class T, class Rule>
void check_d0(const char* name, Rule rule) {
  const std::uint64_t seed = fresh_seed();
  CAPTURE(name);
  INFO("seed = " << seed);
  const problem p(3, seed);
  std::vector<dppf::communication_counts> by_hand_counts, trainer_counts;
  const matrix by_hand = run_by_hand<T>(p, rule, 4, by_hand_counts);
  const matrix trained = run_trainer_d0<T>(p, rule, 4, trainer_counts);
  for (std::size_t r = 0; r < by_hand.size(); ++r) {
    CAPTURE(r);
    CHECK(std::memcmp(by_hand[r].data(), trained[r].data(), by_hand[r].size() * sizeof(double)) == 0);
    CHECK(trainer_counts[r].async_buffer_all_reduces == 0);
    CHECK(trainer_counts[r].buffer_all_reduces == by_hand_counts[r].buffer_all_reduces);
    CHECK(trainer_counts[r].bytes == by_hand_counts[r].bytes);
    CHECK(trainer_counts[r].collectives() == by_hand_counts[r].collectives());
  }
}

}  // namespace

TEST_CASE_TEMPLATE("overlap_steps = 0 is the blocking sync bit for bit, every rule", T, float, double) {
  check_d0<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.4}});
  check_d0<T>("pull_push inverse_mv", dppf::pull_push{{.alpha = 0.3, .lambda = 0.4, .push = dppf::push_mode::inverse_mv}});
  check_d0<T>("local_sgd", dppf::local_sgd{});
  check_d0<T>("elastic", dppf::elastic{{.alpha = 0.2}});
  check_d0<T>("diloco", dppf::diloco{});
  check_d0<T>("leader", dppf::leader{{.pull = 0.4}});
  check_d0<T>("grawa", dppf::grawa{{.alpha = 0.4}});
}

// ----- errors of the in-flight all-reduce -------------------------------------------------------

TEST_CASE("overlapped sync: a rank that fails before starting it makes every other rank raise, with no hang") {
  dppf::thread_group group(4, {.timeout = std::chrono::seconds(30)});
  std::atomic<int> raised{0};
  const auto start = std::chrono::steady_clock::now();
  check_throws_with<std::runtime_error>(
      [&] {
        group.run([&](dppf::thread_communicator comm) {
          std::vector<double> x(500, 1.0 + comm.rank()), g(500, 0.01);
          dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{}, comm, dppf::host_executor{}, {.tau = 4, .overlap_steps = 2}};
          for (int t = 0; t < 20; ++t) {
            if (comm.rank() == 2 && t == 7) {  // the step that would start the second sync
              std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the others are waiting by now
              throw std::runtime_error("rank 2 died before the sync");
            }
            try {
              tr.step(x, g);
            } catch (const dppf::communication_error& e) {
              // Raised by the in-flight all-reduce (test() or wait()), because the group was aborted.
              if (std::string(e.what()).find("aborted (rank 2 failed)") != std::string::npos && t >= 7 && t <= 9) ++raised;
              CHECK_FALSE(tr.sync_in_flight());  // dropped
              throw;
            }
          }
        });
      },
      "rank 2 died before the sync");
  CHECK(raised == 3);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));  // not the 30 s timeout
}

namespace {

// The communicator concept's blocking collectives, forwarded to `inner`: the wrappers below add
// (or leave out) the asynchronous ones.
template <class Inner>
struct forwarding_communicator {
  using memory_space = dppf::host_space;
  Inner inner;
  int rank() const { return inner.rank(); }
  int size() const { return inner.size(); }
  template <class In, class Out>
  void all_reduce(const In& in, Out&& out, dppf::reduce_op op) {
    inner.all_reduce(in, out, op);
  }
  template <class B>
  void all_reduce(B&& b, dppf::reduce_op op) {
    inner.all_reduce(b, op);
  }
  double all_reduce(double v, dppf::reduce_op op) { return inner.all_reduce(v, op); }
  std::vector<double> all_gather(double v) { return inner.all_gather(v); }
  template <class B>
  void broadcast(B&& b, int root) {
    inner.broadcast(b, root);
  }
  void barrier() { inner.barrier(); }
};

// A thread_communicator whose k-th asynchronous all-reduce fails at test() / wait() on every
// rank (after the real reduction ended, so no buffer is written later).
struct failing_async : forwarding_communicator<dppf::thread_communicator> {
  int fail_at;
  int started = 0;

  struct handle {
    dppf::thread_all_reduce_handle h;
    bool fail;
    bool test() {
      const bool done = h.test();
      if (done && fail) throw dppf::communication_error("injected failure of the asynchronous all_reduce");
      return done;
    }
    void wait() {
      h.wait();
      if (fail) throw dppf::communication_error("injected failure of the asynchronous all_reduce");
    }
  };

  template <class In, class Out>
  handle start_all_reduce(const In& in, Out&& out, dppf::reduce_op op) {
    return {inner.start_all_reduce(in, out, op), started++ == fail_at};
  }
  template <class B>
  handle start_all_reduce(B&& b, dppf::reduce_op op) {
    return {inner.start_all_reduce(b, op), started++ == fail_at};
  }
};
static_assert(dppf::async_communicator<failing_async>);

}  // namespace

TEST_CASE("overlapped sync: an error at wait raises on every rank, the sync is dropped and training goes on") {
  const int m = 3;
  dppf::thread_group group(m, {.timeout = std::chrono::seconds(30)});
  std::atomic<int> raised{0};
  group.run([&](dppf::thread_communicator comm) {
    std::vector<double> x(300, 1.0 + comm.rank()), g(300, 0.0);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, failing_async{{comm}, 1}, dppf::host_executor{},
                     {.tau = 2, .overlap_steps = 2}};
    std::vector<double> before_error;
    for (int t = 0; t < 12; ++t) {
      // Gradients 0: only the syncs move x. The first sync (started at step 2) averages; the
      // second (started at step 4) fails and is dropped: x stays the mean.
      try {
        tr.step(x, g);
      } catch (const dppf::communication_error& e) {
        CHECK(std::string(e.what()).find("injected failure") != std::string::npos);
        CHECK(t == 5);  // started by the step with index 3, raised at its due step on every rank
        CHECK_FALSE(tr.sync_in_flight());
        CHECK(tr.syncs() == 1);
        ++raised;
      }
    }
    tr.finish_sync(x);
    // Started by steps 2, 4 (failed), 8, 10, 12 (the step that raised, 6, started none): 4 applied.
    CHECK(tr.syncs() == 4);
    const double mean = 1.0 + (m - 1) / 2.0;
    for (double v : x) CHECK(v == doctest::Approx(mean).epsilon(1e-15));
  });
  CHECK(raised == m);
}

// ----- checkpoints -------------------------------------------------------------------------------

namespace {

template <class Rule>
std::vector<std::vector<float>> run_with_checkpoint(const problem& p, Rule rule, dppf::trainer_options opt,
                                                     int stop_at, std::vector<dppf::safetensors>* files,
                                                     bool resume) {
  std::vector<std::vector<float>> out(static_cast<std::size_t>(p.workers));
  dppf::thread_group group(p.workers);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> x(p.x0[r].begin(), p.x0[r].end()), g(p.n);
    dppf::trainer tr{dppf::sgd{{.lr = p.lr, .momentum = 0.5}}, rule, comm, dppf::host_executor{}, opt};
    int t = 0;
    if (resume) {
      // A trainer with a sync of its own in flight: the load waits for it and replaces it.
      for (int k = 0; k < 5; ++k) {
        p.gradient(k + 40, comm.rank(), x, g);
        tr.step(x, g);
      }
      CHECK(tr.sync_in_flight());
      dppf::load_trainer((*files)[r], tr, x);
      t = static_cast<int>(tr.steps());
      CHECK(tr.sync_in_flight());
    }
    for (; t < p.steps; ++t) {
      if (!resume && t == stop_at && files) {
        CHECK(tr.sync_in_flight());
        (*files)[r] = dppf::save_trainer(tr, x);
        CHECK(tr.sync_in_flight());  // the checkpoint waited for the mean; the correction is still due
      }
      p.gradient(t, comm.rank(), x, g);
      tr.step(x, g);
    }
    tr.finish_sync(x);
    out[r] = x;
  });
  return out;
}

}  // namespace

TEST_CASE("a checkpoint with an overlapped sync in flight waits for its mean, records it, and resumes bit for bit") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed = " << seed);
  const problem p(3, seed);
  const dppf::trainer_options opt{.tau = 4, .overlap_steps = 3};
  const auto check_rule = [&](const char* name, auto rule) {
    CAPTURE(name);
    for (int stop_at : {12, 13, 14}) {  // the sync started by step index 11 (steps = 12) is applied by index 14
      CAPTURE(stop_at);
      const auto straight = run_with_checkpoint(p, rule, opt, -1, nullptr, false);
      std::vector<dppf::safetensors> files(static_cast<std::size_t>(p.workers));
      const auto first = run_with_checkpoint(p, rule, opt, stop_at, &files, false);
      CHECK(files[0].contains("overlap.snapshot"));
      CHECK(files[0].scalar<std::int64_t>("overlap.due") == 15);
      const auto resumed = run_with_checkpoint(p, rule, opt, -1, &files, true);
      for (std::size_t r = 0; r < straight.size(); ++r) {
        CAPTURE(r);
        CHECK(std::memcmp(straight[r].data(), first[r].data(), p.n * sizeof(float)) == 0);  // saving changes nothing
        CHECK(std::memcmp(straight[r].data(), resumed[r].data(), p.n * sizeof(float)) == 0);
      }
    }
  };
  check_rule("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.4}});
  check_rule("diloco", dppf::diloco{});
}

TEST_CASE("a checkpoint with a sync in flight is refused by a blocking trainer on every rank, which stays unchanged") {
  const problem p(3, fresh_seed());
  std::vector<dppf::safetensors> files(3);
  (void)run_with_checkpoint(p, dppf::local_sgd{}, {.tau = 4, .overlap_steps = 2}, 13, &files, false);
  std::atomic<int> refused{0};
  dppf::thread_group group(3);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> x(p.n, 2.0f), g(p.n, 0.0f);
    dppf::trainer tr{dppf::sgd{{.lr = p.lr, .momentum = 0.5}}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 4}};
    tr.step(x, g);
    const std::vector<float> before = x;
    const auto steps = tr.steps();
    try {
      dppf::load_trainer(files[r], tr, x);
    } catch (const dppf::checkpoint_error& e) {
      // Rank 0..2 each refuse their own file (all equal in this respect).
      if (std::string(e.what()).find("overlap_steps = 0") != std::string::npos) ++refused;
    }
    CHECK(x == before);
    CHECK(tr.steps() == steps);
  });
  CHECK(refused == 3);
}

// ----- options ---------------------------------------------------------------------------------

namespace {
// A communicator with blocking collectives only (no start_all_reduce).
struct blocking_only : forwarding_communicator<dppf::single_communicator> {};
static_assert(dppf::communicator<blocking_only> && !dppf::async_communicator<blocking_only>);
}  // namespace

TEST_CASE("overlap_steps is validated and refused where there is no delayed sync") {
  using dppf::invalid_argument_error;
  const dppf::single_communicator one;
  const dppf::host_executor ex;
  const dppf::sgd opt{{.lr = 0.1}};
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::pull_push{}, one, ex, {.tau = 4, .overlap_steps = -1}}; },
                                            "trainer: overlap_steps must be in [0, tau] = [0, 4] (0: blocking sync) (got -1)");
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::pull_push{}, one, ex, {.tau = 4, .overlap_steps = 5}}; },
                                            "(got 5)");
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::data_parallel{}, one, ex, {.tau = 4, .overlap_steps = 1}}; },
                                            "data_parallel) averages gradients before every step");
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::leader{}, one, ex, {.tau = 4, .overlap_steps = 1}}; },
                                            "this consensus rule has no delayed form");
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::grawa{}, one, ex, {.tau = 4, .overlap_steps = 2}}; },
                                            "overlap_steps = 2: this consensus rule has no delayed form");
  check_throws_with<invalid_argument_error>([&] { dppf::trainer tr{opt, dppf::pull_push{}, blocking_only{}, ex, {.tau = 4, .overlap_steps = 1}}; },
                                            "needs an asynchronous communicator");
  // Allowed: d = tau, and d = 0 with anything.
  dppf::trainer ok{opt, dppf::pull_push{}, one, ex, {.tau = 4, .overlap_steps = 4}};
  dppf::trainer blocking{opt, dppf::data_parallel{}, blocking_only{}, ex, {.tau = 4, .overlap_steps = 0}};
  CHECK(ok.options().overlap_steps == 4);
  CHECK(blocking.options().overlap_steps == 0);
}

TEST_CASE("overlapped sync with one worker is local training plus a no-op correction") {
  std::vector<double> x = dppf_test::random_vector<double>(100, fresh_seed()), g(100), y = x;
  dppf::trainer tr{dppf::sgd{{.lr = 0.2}}, dppf::pull_push{}, dppf::single_communicator{}, dppf::host_executor{},
                   {.tau = 3, .overlap_steps = 2}};
  for (int t = 0; t < 20; ++t) {
    for (std::size_t k = 0; k < x.size(); ++k) g[k] = x[k] - 1.0;
    tr.step(x, g);
    for (std::size_t k = 0; k < y.size(); ++k) y[k] -= 0.2 * (y[k] - 1.0);
  }
  tr.finish_sync(x);
  // alpha = 0.1 pulls toward the mean of one worker (itself): x <- x - 0.1 (s - s) = x.
  for (std::size_t k = 0; k < x.size(); ++k) CHECK(x[k] == doctest::Approx(y[k]).epsilon(1e-14));
  CHECK(tr.stats().syncs == 6);
  CHECK(tr.stats().overlapped_syncs == 6);  // single_communicator: the mean is there at the start
}

// ----- non-finite snapshots ------------------------------------------------------------------------

TEST_CASE("overlapped sync: a non-finite snapshot follows the policy on every rank at the due step") {
  using policy = dppf::non_finite_policy;
  for (const policy on : {policy::raise, policy::skip, policy::reset}) {
    CAPTURE(static_cast<int>(on));
    const int m = 3;
    const std::size_t n = 50;
    std::vector<std::vector<double>> before(m), after(m);
    std::atomic<int> raised{0};
    dppf::thread_group group(m);
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<double> x = dppf_test::random_vector<double>(n, fresh_seed()), g(n, 0.0);
      dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{{.alpha = 0.5, .lambda = 0.1}}, comm,
                       dppf::host_executor{}, {.tau = 3, .on_non_finite = on, .overlap_steps = 2}};
      for (int t = 0; t < 4; ++t) {  // the sync started by steps = 3 is due at steps = 5
        if (t == 2 && r == 1) x[7] = std::numeric_limits<double>::quiet_NaN();  // in the snapshot
        tr.step(x, g);  // zero gradients: local steps change nothing
      }
      CHECK(tr.sync_in_flight());
      before[r] = x;
      try {
        tr.step(x, g);
      } catch (const dppf::non_finite_error& e) {
        if (std::string(e.what()).find("rank(s) 1") != std::string::npos) ++raised;
      }
      CHECK_FALSE(tr.sync_in_flight());
      if (on == policy::skip) CHECK(tr.stats().skipped);
      if (on == policy::reset) CHECK(tr.stats().reset);
      after[r] = x;
    });
    for (std::size_t r = 0; r < static_cast<std::size_t>(m); ++r) {
      CAPTURE(r);
      if (on == policy::reset) {
        // The live parameters of every worker <- the mean of those whose snapshot was finite.
        for (std::size_t k = 0; k < n; ++k)
          CHECK(after[r][k] == doctest::Approx((before[0][k] + before[2][k]) / 2).epsilon(1e-15));
      } else if (r != 1) {
        CHECK(std::memcmp(after[r].data(), before[r].data(), n * sizeof(double)) == 0);  // nothing applied
      }
    }
    if (on == policy::raise) CHECK(raised == m);
  }
}

// ----- the fixed point, average(), progress() -----------------------------------------------------

namespace {

// DPPF on a valley: 16 curved coordinates (gradient (1 + k/2) x_k) and 32 flat ones, whose
// gradient is 0, or noise of standard deviation `noise`. Returns every rank's r_i at the end and
// the relaxed MV averaged over the last half of the syncs.
struct valley_result {
  std::vector<double> r;
  double mean_mv = 0.0;
};

valley_result run_valley(int m, double alpha, double lambda, std::int64_t d, double noise, std::uint64_t seed) {
  const std::size_t n = 48, k_curved = 16;
  const int steps = 2400;
  valley_result res{std::vector<double>(static_cast<std::size_t>(m))};
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<double> x = dppf_test::random_vector<double>(n, seed + r, 0.05), g(n);
    std::mt19937_64 gen(seed + 1000 + r);
    std::normal_distribution<double> normal(0.0, noise > 0 ? noise : 1.0);
    dppf::trainer tr{dppf::sgd{{.lr = 0.05}}, dppf::pull_push{{.alpha = alpha, .lambda = lambda}}, comm,
                     dppf::host_executor{}, {.tau = 4, .overlap_steps = d}};
    double mv_sum = 0.0;
    int counted = 0;
    for (int t = 0; t < steps; ++t) {
      for (std::size_t k = 0; k < n; ++k)
        g[k] = k < k_curved ? (1.0 + 0.5 * static_cast<double>(k)) * x[k] : (noise > 0 ? normal(gen) : 0.0);
      const auto syncs = tr.syncs();
      tr.step(x, g);
      if (tr.syncs() != syncs && t >= steps / 2) {
        mv_sum += tr.stats().mean_distance;
        ++counted;
      }
    }
    res.r[r] = tr.stats().distance;
    if (r == 0) res.mean_mv = mv_sum / counted;
  });
  return res;
}

}  // namespace

TEST_CASE("overlapped DPPF keeps the fixed point r = lambda / alpha in flat directions; the relaxed MV with noise") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed = " << seed);
  const double alpha = 0.3, lambda = 0.6, target = lambda / alpha;
  for (std::int64_t d : {0, 1, 2, 4}) {
    CAPTURE(d);
    // Without gradient in the flat directions x does not move there between the snapshot and
    // the correction, so the delayed update is the blocking one: the same fixed point.
    const auto res = run_valley(3, alpha, lambda, d, 0.0, seed);
    for (double r : res.r) CHECK(std::abs(r - target) < 0.01 * target);
  }
  // With gradient noise in the flat directions the spread also diffuses. There the gradient does
  // not depend on x, so the local steps add the same increments whenever the correction lands,
  // and each lands before the next snapshot: the snapshots, and so the relaxed MV, are the
  // blocking sync's (up to rounding; the curved coordinates have decayed by the second half).
  const double blocking = run_valley(3, alpha, lambda, 0, 0.5, seed).mean_mv;
  std::string line = " d=0: " + std::to_string(blocking);
  for (std::int64_t d : {1, 2, 4}) {
    CAPTURE(d);
    const double mv = run_valley(3, alpha, lambda, d, 0.5, seed).mean_mv;
    CHECK(std::abs(mv - blocking) < 1e-3 * blocking);
    line += " d=" + std::to_string(d) + ": " + std::to_string(mv);
  }
  MESSAGE("lambda/alpha = " << target << "; relaxed MV with gradient noise 0.5 in the flat directions," << line);
}

TEST_CASE("average() and progress() with an overlapped sync in flight") {
  const int m = 3;
  const std::size_t n = 64;
  std::vector<std::vector<double>> live(m), averaged(m);
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<double> x = dppf_test::random_vector<double>(n, fresh_seed()), g(n);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 4, .overlap_steps = 3}};
    for (int t = 0; t < 5; ++t) {  // the sync started by steps = 4 is in flight at steps = 5
      for (std::size_t k = 0; k < n; ++k) g[k] = x[k] - static_cast<double>(r);
      tr.step(x, g);
    }
    CHECK(tr.sync_in_flight());
    // thread_group: the mean is there once every rank started; progress() says so (bounded).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!tr.progress() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    CHECK(tr.progress());
    CHECK(tr.sync_in_flight());  // arrived, not yet applied
    live[r] = x;
    tr.average(x);  // applies it (x_i <- s_bar + x_i - s_i), then the mean of the x_i
    CHECK_FALSE(tr.sync_in_flight());
    CHECK(tr.syncs() == 1);
    averaged[r] = x;
  });
  // mean_i (s_bar + x_i - s_i) = mean_i x_i: the live parameters' mean.
  for (std::size_t k = 0; k < n; ++k) {
    const double want = (live[0][k] + live[1][k] + live[2][k]) / 3.0;
    for (int r = 0; r < m; ++r) CHECK(averaged[static_cast<std::size_t>(r)][k] == doctest::Approx(want).epsilon(1e-13));
  }
}

TEST_CASE("overlapped sync: buffers and the optimizer state are still averaged at the sync step itself") {
  const int m = 3;
  const std::size_t n = 40;
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    const double r = comm.rank();
    std::vector<double> x(n, r), g(n, 0.0), buffers(5, 10.0 * r);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1, .momentum = 0.9}}, dppf::local_sgd{}, comm, dppf::host_executor{},
                     {.tau = 2, .average_optimizer_state = true, .overlap_steps = 2}};
    for (std::size_t k = 0; k < n; ++k) g[k] = r;  // momentum buffers differ across ranks
    tr.step(x, g, 0.0, buffers);
    for (double b : buffers) CHECK(b == 10.0 * r);  // no sync yet
    tr.step(x, g, 0.0, buffers);                   // sync step: started, buffers averaged now
    CHECK(tr.sync_in_flight());
    for (double b : buffers) CHECK(b == doctest::Approx(10.0));
    auto* ws = dppf::detail::trainer_access::workspace<double>(tr);
    REQUIRE(ws != nullptr);
    // Momentum after two steps is g (1 + 0.9) on rank r; its mean over ranks is 1.9.
    for (double v : ws->optimizer_state.momentum_buffer) CHECK(v == doctest::Approx(1.9));
  });
}
