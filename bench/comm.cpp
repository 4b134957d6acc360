// Communication benchmarks in one process: the `threads` all-reduce for M = 1, 2, 4, 8 workers, and
// a training step of every consensus rule through dppf::trainer for tau in {1, 4, 16, 64}, with
// the bytes each rank communicates per step (counted by the trainer's counting communicator).
//
// All-reduce bandwidths follow nccl-tests: algorithm bandwidth = N * sizeof(T) / time, bus
// bandwidth = algorithm bandwidth * 2 (M - 1) / M.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "bench_support.hpp"

namespace {

using namespace dppf_bench;

void set_bus_bandwidth(benchmark::State& state, double bytes_per_op, int m) {
  const double total = bytes_per_op * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(total));  // the algorithm bandwidth
  state.counters["bus_bandwidth"] = benchmark::Counter(total * 2.0 * (m - 1) / m, benchmark::Counter::kIsRate);
  state.counters["workers"] = m;
}

// One in-place average over M threads per iteration. Rank 0 runs the timed loop; the others run
// the same number of collectives (google-benchmark fixes max_iterations before the loop starts).
void bm_threads_all_reduce(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const int m = static_cast<int>(state.range(1));
  dppf::thread_group group(m);
  std::vector<std::vector<float>> x(static_cast<std::size_t>(m));
  for (int r = 0; r < m; ++r) {
    x[static_cast<std::size_t>(r)].resize(n);
    fill_random(x[static_cast<std::size_t>(r)], static_cast<std::uint64_t>(r));
  }
  const auto iterations = state.max_iterations;
  group.run([&](dppf::thread_communicator comm) {
    auto& mine = x[static_cast<std::size_t>(comm.rank())];
    if (comm.rank() == 0) {
      for (auto _ : state) comm.all_reduce(mine, dppf::reduce_op::avg);
    } else {
      for (benchmark::IterationCount i = 0; i < iterations; ++i) comm.all_reduce(mine, dppf::reduce_op::avg);
    }
  });
  set_bus_bandwidth(state, static_cast<double>(n * sizeof(float)), m);
}

// A gradient for every step: fixed values (the step's cost does not depend on them).
template <class Rule>
void bm_training_step(benchmark::State& state, Rule rule) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::int64_t tau = state.range(1);
  const int m = 2;  // one worker per core
  dppf::thread_group group(m);
  const auto iterations = state.max_iterations;
  std::uint64_t sync_bytes = 0, bytes = 0;
  std::int64_t steps = 0;
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> p(n), g(n);
    fill_random(p, 1);  // the same start on every worker
    fill_random(g, 10 + static_cast<std::uint64_t>(comm.rank()), -1e-2f, 1e-2f);
    dppf::trainer t(dppf::sgd({.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4}), rule, comm, dppf::host_parallel_executor{},
                    {.tau = tau});
    for (std::int64_t i = 0; i < tau; ++i) t.step(p, g, 1.0);  // untimed: at least one sync is counted
    if (comm.rank() == 0) {
      for (auto _ : state) t.step(p, g, 1.0);
      sync_bytes = t.stats().sync_bytes;  // the last sync (data parallel: the last step)
      bytes = t.stats().bytes;
      steps = t.stats().steps;
    } else {
      for (benchmark::IterationCount i = 0; i < iterations; ++i) t.step(p, g, 1.0);
    }
  });
  // Payload bytes one rank sends per step, scalars included, as counted by the trainer: one sync's
  // bytes spread over its tau steps (data parallel communicates every step). The run's average
  // (comm_bytes_per_step_run) also carries the rule's one-time init and a partial last period.
  const double per_step = Rule::averages_gradients ? static_cast<double>(sync_bytes)
                                                   : static_cast<double>(sync_bytes) / static_cast<double>(tau);
  state.counters["comm_bytes_per_step"] = per_step;
  state.counters["comm_bytes_per_param_step"] = per_step / static_cast<double>(n);
  state.counters["comm_bytes_per_step_run"] = static_cast<double>(bytes) / static_cast<double>(steps);
  state.counters["tau"] = static_cast<double>(tau);
}

void comm_sizes(benchmark::internal::Benchmark* b) {
  for (int m : {1, 2, 4, 8})
    for (int e = 16; e <= 26; e += 2) b->Args({std::int64_t{1} << e, m});
}

void step_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t tau : {1, 4, 16, 64}) b->Args({std::int64_t{1} << 20, tau});
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("all_reduce/threads", bm_threads_all_reduce)
      ->Apply(comm_sizes)
      ->ArgNames({"N", "M"})
      ->UseRealTime();
  const auto step = [](const char* name, auto rule) {
    benchmark::RegisterBenchmark((std::string("training_step/") + name).c_str(),
                                 [rule](benchmark::State& s) { bm_training_step(s, rule); })
        ->Apply(step_sizes)
        ->ArgNames({"N", "tau"})
        ->UseRealTime();
  };
  step("pull_push", dppf::pull_push{});
  step("local_sgd", dppf::local_sgd{});
  step("elastic", dppf::elastic{});
  step("leader", dppf::leader{});
  step("grawa", dppf::grawa{});
  step("diloco", dppf::diloco{});
  step("data_parallel", dppf::data_parallel{});
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
