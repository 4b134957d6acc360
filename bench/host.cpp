// Host benchmarks: the optimizer steps, the sharpness primitives and the local passes of every
// consensus rule's sync, on `host` and `host_parallel`, against the triad measured in this process.
//
// Names are <operation>/<executor>/<N>/real_time. Every benchmark reports bytes_per_second from
// its model's bytes (docs/performance.md, the model: fp32 SGD-momentum 20 B/param, AdamW 28, DPPF's local
// passes 20) and fraction_of_limit = achieved / triad.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "bench_support.hpp"

// The Philox fills (sharpness estimators draw their perturbations with them), when present.
#if __has_include(<dppf/random/directions.hpp>)
#include <dppf/random/directions.hpp>
#define DPPF_BENCH_RANDOM 1
#endif

namespace {

using namespace dppf_bench;

// A communicator that moves nothing: the all-reduce leaves the mean that is already in the
// output, gathers return M copies of this rank's value. It isolates a sync's local passes from
// its communication (benchmarked separately in dppf_bench_comm and dppf_bench_mpi).
struct local_only {
  using memory_space = dppf::host_space;
  int workers = 4;
  int me = 1;  // not rank 0, so the leader rule's worker is an ordinary one (no leader copy)

  int rank() const { return me; }
  int size() const { return workers; }
  template <class In, class Out>
  void all_reduce(const In&, Out&&, dppf::reduce_op) {}
  template <class B>
  void all_reduce(B&&, dppf::reduce_op) {}
  double all_reduce(double v, dppf::reduce_op) { return v; }
  std::vector<double> all_gather(double v) { return std::vector<double>(static_cast<std::size_t>(workers), v); }
  template <class B>
  void broadcast(B&&, int) {}
  void barrier() {}
};
static_assert(dppf::communicator<local_only>);

template <class Exec>
Exec make_executor() {
  return Exec{};
}

template <class Exec>
void bm_sgd(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  const auto n = static_cast<std::size_t>(state.range(0));
  const dppf::sgd opt({.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4});
  auto p = ex.template allocate<float>(n);
  auto g = ex.template allocate<float>(n);
  fill_random(p, 1);
  fill_random(g, 2, -1e-2f, 1e-2f);
  auto s = opt.init(ex, p);
  opt.step(ex, p, g, s);  // the first step copies the gradient into the momentum buffer
  for (auto _ : state) {
    opt.step(ex, p, g, s);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 20.0 * static_cast<double>(n));  // read p, g, m; write p, m
}

template <class Exec>
void bm_adamw(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  const auto n = static_cast<std::size_t>(state.range(0));
  const dppf::adamw opt({.lr = 1e-3, .weight_decay = 1e-2});
  auto p = ex.template allocate<float>(n);
  auto g = ex.template allocate<float>(n);
  fill_random(p, 1);
  fill_random(g, 2, -1e-2f, 1e-2f);
  auto s = opt.init(ex, p);
  opt.step(ex, p, g, s);
  for (auto _ : state) {
    opt.step(ex, p, g, s);
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 28.0 * static_cast<double>(n));  // read p, g, m, v; write p, m, v
}

template <class Exec>
void bm_dot(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  const auto n = static_cast<std::size_t>(state.range(0));
  auto x = ex.template allocate<float>(n);
  auto y = ex.template allocate<float>(n);
  fill_random(x, 1);
  fill_random(y, 2);
  for (auto _ : state) benchmark::DoNotOptimize(dppf::dot(ex, x, y));
  set_bandwidth(state, 8.0 * static_cast<double>(n));
}

template <class Exec>
void bm_squared_norm(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  const auto n = static_cast<std::size_t>(state.range(0));
  auto x = ex.template allocate<float>(n);
  fill_random(x, 1);
  for (auto _ : state) benchmark::DoNotOptimize(dppf::squared_norm(ex, x));
  set_bandwidth(state, 4.0 * static_cast<double>(n));
}

template <class Exec>
void bm_axpy(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  const auto n = static_cast<std::size_t>(state.range(0));
  auto x = ex.template allocate<float>(n);
  auto y = ex.template allocate<float>(n);
  fill_random(x, 1);
  fill_random(y, 2);
  float a = 1e-3f;
  for (auto _ : state) {
    dppf::axpy(ex, a, x, y);
    a = -a;  // y stays bounded
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 12.0 * static_cast<double>(n));
}

#if defined(DPPF_BENCH_RANDOM)
// x[i] from Philox4x32-10 keyed by (seed, stream, i): writes 4 B/param, compute-heavy.
template <class Exec, int Kind>
void bm_philox_fill(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  auto x = ex.template allocate<float>(static_cast<std::size_t>(state.range(0)));
  dppf::random_key key{42, 0};
  for (auto _ : state) {
    if constexpr (Kind == 0) dppf::fill_uniform(ex, x, key, -1.0, 1.0);
    if constexpr (Kind == 1) dppf::fill_normal(ex, x, key);
    if constexpr (Kind == 2) dppf::fill_rademacher(ex, x, key);
    ++key.stream;
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 4.0 * static_cast<double>(x.size()));
}
#endif

// The buffers of one worker's sync: parameters, the mean (scratch, as the all-reduce leaves it)
// and the last gradient.
struct sync_buffers {
  std::vector<float> x, mean, grad;
  explicit sync_buffers(std::size_t n) : x(n), mean(n), grad(n) {
    fill_random(x, 1);
    fill_random(grad, 3, -1e-2f, 1e-2f);
    for (std::size_t i = 0; i < n; ++i) mean[i] = x[i] + pseudo_random(i, 2, -1e-2f, 1e-2f);
  }
};

template <class Exec>
auto make_context(const Exec& ex, local_only& comm, sync_buffers& b) {
  return dppf::sync_context<Exec, local_only, float>{ex, comm, std::span<float>(b.x), std::span<float>(b.mean),
                                                      std::span<const float>(b.grad)};
}

// The DPPF distance pass alone: ||x - x_bar||^2 (reads x and x_bar: 8 B/param).
template <class Exec>
void bm_dppf_distance_pass(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  sync_buffers b(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.transform_reduce(dppf::detail::squared_distance_fn{}, std::span<const float>(b.x),
                                                 std::span<const float>(b.mean)));
  set_bandwidth(state, 8.0 * static_cast<double>(b.x.size()));
}

// The DPPF update pass alone: x <- x_bar + c (x - x_bar) (reads x, x_bar; writes x: 12 B/param).
template <class Exec>
void bm_dppf_update_pass(benchmark::State& state) {
  const Exec ex = make_executor<Exec>();
  sync_buffers b(static_cast<std::size_t>(state.range(0)));
  float c = 0.95f;
  for (auto _ : state) {
    ex.transform(dppf::detail::toward_fn<float>{c}, std::span<float>(b.x), std::span<const float>(b.mean));
    c = 1.0f / c;  // alternate contraction and expansion: x stays where it is
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, 12.0 * static_cast<double>(b.x.size()));
}

// A whole sync of one rule through its real code, communication excluded (local_only):
// `model_bytes` per parameter is what its local passes must move.
template <class Exec, class Rule>
void bm_sync_local(benchmark::State& state, Rule rule, double model_bytes) {
  const Exec ex = make_executor<Exec>();
  sync_buffers b(static_cast<std::size_t>(state.range(0)));
  local_only comm;
  auto ctx = make_context(ex, comm, b);
  ctx.loss = 1.0;
  typename Rule::template state<std::vector<float>> rule_state{};
  rule.init(ctx, rule_state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(rule.sync(ctx, rule_state));
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, model_bytes * static_cast<double>(b.x.size()));
}

template <class Exec>
void register_executor(const std::string& name) {
  const auto add = [&](const std::string& op, auto fn) {
    benchmark::RegisterBenchmark((op + "/" + name).c_str(), fn)->Apply(host_sizes)->UseRealTime();
  };
  add("sgd", bm_sgd<Exec>);
  add("adamw", bm_adamw<Exec>);
  add("dot", bm_dot<Exec>);
  add("squared_norm", bm_squared_norm<Exec>);
  add("axpy", bm_axpy<Exec>);
#if defined(DPPF_BENCH_RANDOM)
  add("philox_fill_uniform", bm_philox_fill<Exec, 0>);
  add("philox_fill_normal", bm_philox_fill<Exec, 1>);
  add("philox_fill_rademacher", bm_philox_fill<Exec, 2>);
#endif
  add("dppf_distance_pass", bm_dppf_distance_pass<Exec>);
  add("dppf_update_pass", bm_dppf_update_pass<Exec>);
  // Model bytes per fp32 parameter of each rule's local passes (the distance pass reads x and
  // the target, 8 B, in every rule):
  //   pull_push, local_sgd: + update reads x, x_bar, writes x (12)                      = 20
  //   leader (non-leader rank): as above, its broadcast target in scratch               = 20
  //   elastic: + update reads x, c, x_bar, writes x, c (20)                              = 28
  //   grawa: + gradient norm (4) + weighted copy (8) + update (12)                       = 32
  //   diloco: + update reads x_bar, global, v, writes x, global, v (24)                   = 32
  add("sync_local/pull_push", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::pull_push{}, 20.0); });
  add("sync_local/local_sgd", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::local_sgd{}, 20.0); });
  add("sync_local/leader", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::leader{}, 20.0); });
  add("sync_local/elastic", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::elastic{}, 28.0); });
  add("sync_local/grawa", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::grawa{}, 32.0); });
  add("sync_local/diloco", [](benchmark::State& s) { bm_sync_local<Exec>(s, dppf::diloco{}, 32.0); });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
#if defined(DPPF_BENCH_FLAGS)
  benchmark::AddCustomContext("extra_compile_flags", DPPF_BENCH_FLAGS);
#endif
  measure_host_limit();
  register_executor<dppf::host_executor>("host");
  register_executor<dppf::host_parallel_executor>("host_parallel");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
