// The overlapped sync over dppf::mpi_communicator (MPI_Iallreduce), with real processes: the
// delayed rules against the independent double replay (every rank can compute it, the problem
// comes from a seed rank 0 draws afresh and broadcasts), and real progress: the trainer's test()
// calls during the local steps complete the all-reduce before its due step, with no wait; a
// checkpoint taken with a sync in flight resumes bit for bit.
#include <doctest/doctest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <dppf/checkpoint/trainer_checkpoint.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/consensus/diloco.hpp>
#include <dppf/consensus/elastic.hpp>
#include <dppf/consensus/local_sgd.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include "mpi_support.hpp"
#include "overlap_reference.hpp"

using namespace dppf_test;

namespace {

std::uint64_t shared_seed() {
  std::uint64_t s = world_rank() == 0 ? fresh_seed() : 0;
  MPI_Bcast(&s, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return s;
}

// This rank's trainer on the problem; every rank's final parameters, gathered.
template <class T, class Rule>
matrix run_mpi(const problem& p, Rule rule, const schedule_spec& sch, dppf::trainer_stats& stats) {
  const int r = world_rank();
  std::vector<T> x(p.x0[static_cast<std::size_t>(r)].begin(), p.x0[static_cast<std::size_t>(r)].end()), g(p.n);
  dppf::trainer tr{dppf::sgd{{.lr = p.lr}}, rule, dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_executor{},
                   {.tau = sch.tau, .warmup_steps = sch.warmup_steps, .warmup_tau = sch.warmup_tau, .overlap_steps = sch.d}};
  for (int t = 0; t < p.steps; ++t) {
    p.gradient(t, r, x, g);
    tr.step(x, g);
  }
  tr.finish_sync(x);
  stats = tr.stats();
  std::vector<double> mine(x.begin(), x.end()), all(p.n * static_cast<std::size_t>(p.workers));
  MPI_Allgather(mine.data(), static_cast<int>(p.n), MPI_DOUBLE, all.data(), static_cast<int>(p.n), MPI_DOUBLE, MPI_COMM_WORLD);
  matrix out;
  for (int j = 0; j < p.workers; ++j)
    out.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(p.n) * j, all.begin() + static_cast<std::ptrdiff_t>(p.n) * (j + 1));
  return out;
}

template <class T, class Rule>
void check_mpi(const char* name, Rule rule, const schedule_spec& sch, double alpha = 0.3) {
  const std::uint64_t seed = shared_seed();
  CAPTURE(name);
  CAPTURE(sch.d);
  INFO("seed = " << seed);
  const problem p(world_size(), seed);
  dppf::trainer_stats stats;
  const matrix got = run_mpi<T>(p, rule, sch, stats);
  const auto want = replay(p, {.name = name, .alpha = alpha}, sch);
  // MPI sums in T in its own order (not in double): a little more rounding than threads.
  CHECK(max_relative_error(got, want.x) < (std::is_same_v<T, float> ? 1e-4 : 1e-10));
  CHECK(stats.syncs == want.applied);
  CHECK(stats.distance == doctest::Approx(want.last_r_all[static_cast<std::size_t>(world_rank())]).epsilon(1e-3));
  CHECK(stats.mean_distance == doctest::Approx(want.last_mv).epsilon(1e-3));
}

}  // namespace

TEST_CASE("overlapped sync over MPI matches a double replay of the delayed update") {
  if (world_size() < 2) return;
  for (const schedule_spec sch : {schedule_spec{.tau = 4, .d = 1}, schedule_spec{.tau = 4, .d = 4}}) {
    check_mpi<float>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.4}}, sch);
    check_mpi<double>("pull_push_inverse_mv",
                      dppf::pull_push{{.alpha = 0.3, .lambda = 0.4, .push = dppf::push_mode::inverse_mv}}, sch);
    check_mpi<float>("local_sgd", dppf::local_sgd{}, sch);
    check_mpi<double>("elastic", dppf::elastic{{.alpha = 0.2}}, sch, 0.2);
    check_mpi<float>("diloco", dppf::diloco{}, sch);
  }
}

// Real progress. Open MPI advances a non-blocking collective only inside MPI calls; the trainer
// calls test() after every local step and progress() lets the model's code call it more often.
// Here each local step is some compute with progress() calls in between (bounded): every sync's
// 8 MiB all-reduce must have completed before its due step, so no wait blocked (overlapped_syncs
// counts exactly those). With step()'s own test() alone the share is reported, not asserted (it
// depends on how many test() calls MPI's schedule needs).
TEST_CASE("overlapped sync over MPI: the all-reduce completes through test() during the local steps") {
  const std::size_t n = std::size_t{1} << 21;
  const int steps = 16;
  for (bool extra_progress : {true, false}) {
    std::vector<float> x(n, 1.0f + static_cast<float>(world_rank())), g(n, 0.0f);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, dppf::mpi_communicator{MPI_COMM_WORLD},
                     dppf::host_executor{}, {.tau = 4, .overlap_steps = 4}};
    std::vector<double> work(1 << 15, 1.0);
    long calls = 0;
    for (int t = 0; t < steps; ++t) {
      tr.step(x, g);  // gradients 0: only the syncs move x
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      for (bool settled = false; extra_progress && !settled && std::chrono::steady_clock::now() < deadline;) {
        for (auto& w : work) w = std::sqrt(w * 1.0000001 + 1e-9);  // the rest of a local step
        settled = tr.progress();
        ++calls;
      }
    }
    tr.finish_sync(x);
    const auto s = tr.stats();
    CHECK(s.syncs == steps / 4);
    // Started by steps 4, 8, 12, 16: the first three came due at 8, 12, 16; the last was applied by finish_sync.
    if (extra_progress)
      CHECK(s.overlapped_syncs == s.syncs);
    const float mean = 1.0f + static_cast<float>(world_size() - 1) / 2.0f;
    std::size_t bad = 0;
    for (float v : x) bad += std::abs(v - mean) > 1e-5f * mean;
    CHECK(bad == 0);
    if (world_rank() == 0)
      MESSAGE(std::string(extra_progress ? "with progress() between steps: " : "with step()'s test() alone: ")
              << s.overlapped_syncs << " of " << s.syncs << " syncs complete before their due step"
              << (extra_progress ? " (" + std::to_string(calls) + " progress() calls in all)" : std::string()));
  }
}

// A checkpoint with a sync in flight over MPI: the save waits for the MPI_Iallreduce (every rank
// started it) and records it; the resumed run equals the uninterrupted one bit for bit.
TEST_CASE("overlapped sync over MPI: a checkpoint in flight resumes bit for bit") {
  const std::uint64_t seed = shared_seed();
  INFO("seed = " << seed);
  const problem p(world_size(), seed);
  const int r = world_rank();
  const dppf::trainer_options opt{.tau = 4, .overlap_steps = 3};
  const auto make = [&] {
    return dppf::trainer{dppf::sgd{{.lr = p.lr, .momentum = 0.5}}, dppf::pull_push{{.alpha = 0.3, .lambda = 0.4}},
                         dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_executor{}, opt};
  };
  const auto run = [&](auto& tr, std::vector<float>& x, int from, int to) {
    std::vector<float> g(p.n);
    for (int t = from; t < to; ++t) {
      p.gradient(t, r, x, g);
      tr.step(x, g);
    }
  };
  const auto x0 = p.x0[static_cast<std::size_t>(r)];
  std::vector<float> straight(x0.begin(), x0.end()), first = straight, resumed(p.n, 0.0f);
  auto a = make();
  run(a, straight, 0, 30);
  a.finish_sync(straight);
  auto b = make();
  run(b, first, 0, 13);  // the sync started by step index 11 is in flight until index 14
  CHECK(b.sync_in_flight());
  const dppf::safetensors file = dppf::save_trainer(b, first);
  CHECK(file.contains("overlap.mean"));
  run(b, first, 13, 30);
  b.finish_sync(first);
  auto c = make();
  dppf::load_trainer(file, c, resumed);
  CHECK(c.sync_in_flight());
  run(c, resumed, 13, 30);
  c.finish_sync(resumed);
  CHECK(std::memcmp(straight.data(), first.data(), p.n * sizeof(float)) == 0);
  CHECK(std::memcmp(straight.data(), resumed.data(), p.n * sizeof(float)) == 0);
}
