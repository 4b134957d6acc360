// Checkpoints: optimizer states, random engines and whole trainers saved and restored, with
// training continued from the restore compared bit for bit against an uninterrupted run; and
// every way a restore can fail, on every rank, with nothing changed.

#include <doctest/doctest.h>

#include <dppf/optimizers/adamw.hpp>
#include <dppf/checkpoint/trainer_checkpoint.hpp>
#include <dppf/consensus/data_parallel.hpp>
#include <dppf/consensus/diloco.hpp>
#include <dppf/consensus/elastic.hpp>
#include <dppf/consensus/grawa.hpp>
#include <dppf/consensus/leader.hpp>
#include <dppf/consensus/local_sgd.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/optimizers/schedule.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/trainer.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"
#include "test_checkpoint_files.hpp"

using dppf::checkpoint_error;
using dppf::safetensors;
using dppf_test::check_throws_with;

namespace {

// Rank r's checkpoint file in dir ("c<r>").
// (Appended, not "c" + to_string: GCC 12 warns falsely (-Wrestrict) about the latter here.)
std::filesystem::path rank_file(const dppf_test::temp_dir& dir, int rank) {
  std::string name = "c";
  name += std::to_string(rank);
  return dir.path / name;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// A deterministic, non-trivial gradient of the parameters, the step and the worker: every step
// depends on the state, so any difference after a restore grows instead of vanishing.
template <class T>
std::vector<T> gradient(const std::vector<T>& p, int step, int rank = 0) {
  std::vector<T> g(p.size());
  for (std::size_t i = 0; i < p.size(); ++i)
    g[i] = static_cast<T>(std::sin(1.3 * static_cast<double>(p[i]) + 0.1 * step + 0.01 * static_cast<double>(i) +
                                   0.7 * rank) +
                          0.5 * static_cast<double>(p[i]));
  return g;
}

template <class T>
double loss_of(const std::vector<T>& p, int step, int rank) {
  double s = 0.0;
  for (T x : p) s += static_cast<double>(x) * static_cast<double>(x);
  return s + 0.01 * step + 0.1 * rank;
}

// Every buffer of a state, in for_each_buffer order, with its name.
template <class State>
auto buffers_of(State& s) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  s.for_each_buffer([&](const char* name, auto& b) { out.emplace_back(name, std::vector<double>(b.begin(), b.end())); });
  return out;
}

// Every counter of a state, with its name.
template <class State>
std::vector<std::pair<std::string, std::int64_t>> counters_of(State& s) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  dppf::detail::for_each_counter(s, [&](const char* name, std::int64_t& c) { out.emplace_back(name, c); });
  return out;
}

template <class T, class Opt>
void check_optimizer_resume(const Opt& opt, int k) {
  const dppf::host_executor ex;
  dppf_test::temp_dir dir("optimizer");
  const std::size_t n = 37;
  const auto p0 = dppf_test::random_vector<T>(n, 7);

  auto p = p0;
  auto full = opt.init(ex, p);
  for (int t = 0; t < 2 * k; ++t) opt.step(ex, p, gradient(p, t), full);

  auto q = p0;
  auto first = opt.init(ex, q);
  for (int t = 0; t < k; ++t) opt.step(ex, q, gradient(q, t), first);
  safetensors out;
  dppf::save_buffer(out, "params", q);
  dppf::save_state(out, "optimizer", first);
  out.save(dir.path / "opt.safetensors");

  // A fresh process: parameters and state from the file only.
  const safetensors in = safetensors::load(dir.path / "opt.safetensors");
  std::vector<T> resumed(n, T(-99));
  auto state = opt.init(ex, resumed);
  dppf::load_buffer(in, "params", resumed);
  dppf::load_state(in, "optimizer", state);
  CHECK(state.step == k);
  for (int t = k; t < 2 * k; ++t) opt.step(ex, resumed, gradient(resumed, t), state);

  CHECK(same_bits(resumed, p));
  CHECK(state.step == full.step);
  const auto a = buffers_of(state), b = buffers_of(full);
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(same_bits(a[i].second, b[i].second));
  }

  // Control: continuing with the parameters but a fresh optimizer state does not reproduce the
  // run, so the comparison above would catch a state that was not restored.
  std::vector<T> params_only(n);
  dppf::load_buffer(in, "params", params_only);
  auto fresh = opt.init(ex, params_only);
  for (int t = k; t < 2 * k; ++t) opt.step(ex, params_only, gradient(params_only, t), fresh);
  CHECK_FALSE(same_bits(params_only, p));
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint of sgd and adamw state resumes bit for bit", T, float, double) {
  SUBCASE("sgd with momentum, nesterov, weight decay") {
    check_optimizer_resume<T>(dppf::sgd{{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true}}, 6);
  }
  SUBCASE("sgd with dampening") { check_optimizer_resume<T>(dppf::sgd{{.lr = 0.05, .momentum = 0.8, .dampening = 0.3}}, 5); }
  SUBCASE("adamw") { check_optimizer_resume<T>(dppf::adamw{{.lr = 0.01, .weight_decay = 0.1}}, 7); }
  SUBCASE("adamw amsgrad") { check_optimizer_resume<T>(dppf::adamw{{.lr = 0.01, .amsgrad = true}}, 4); }
}

TEST_CASE("checkpoint load_state rejects a state of other options and changes nothing") {
  const dppf::host_executor ex;
  const dppf::sgd with_momentum{{.lr = 0.1, .momentum = 0.9}};
  const dppf::sgd plain{{.lr = 0.1}};
  std::vector<float> p(5, 1.0f);
  auto s = with_momentum.init(ex, p);
  with_momentum.step(ex, p, std::vector<float>(5, 0.5f), s);
  safetensors f;
  dppf::save_state(f, "optimizer", s);
  CHECK(f.contains("optimizer.momentum_buffer"));
  CHECK(f.scalar<std::int64_t>("optimizer.step") == 1);
  const safetensors in = safetensors::parse(f.serialize(), "opt.safetensors");

  auto no_momentum = plain.init(ex, p);
  check_throws_with<checkpoint_error>([&] { dppf::load_state(in, "optimizer", no_momentum); },
                                      "tensor 'optimizer.momentum_buffer' has no counterpart in the live state");
  CHECK(no_momentum.step == 0);

  safetensors g;
  dppf::save_state(g, "optimizer", no_momentum);
  auto target = with_momentum.init(ex, p);
  check_throws_with<checkpoint_error>([&] { dppf::load_state(g, "optimizer", target); },
                                      "no tensor 'optimizer.momentum_buffer'");

  std::vector<float> longer(6);
  auto wrong_size = with_momentum.init(ex, longer);
  check_throws_with<checkpoint_error>([&] { dppf::load_state(in, "optimizer", wrong_size); },
                                      "tensor 'optimizer.momentum_buffer' has 5 elements (shape [5]), the live buffer has 6");

  std::vector<double> pd(5);
  auto wrong_type = with_momentum.init(ex, pd);
  wrong_type.step = 3;
  check_throws_with<checkpoint_error>([&] { dppf::load_state(in, "optimizer", wrong_type); },
                                      "tensor 'optimizer.momentum_buffer' has dtype F32, the live buffer has F64");
  CHECK(wrong_type.step == 3);

  // A counter of the wrong dtype, with the buffer right: the buffer must not be written either.
  safetensors h;
  h.add("optimizer.momentum_buffer", std::vector<float>(5, 42.0f));
  h.add_scalar("optimizer.step", 1.5);
  auto untouched = with_momentum.init(ex, p);
  check_throws_with<checkpoint_error>([&] { dppf::load_state(h, "optimizer", untouched); },
                                      "tensor 'optimizer.step' has dtype F64, the live buffer has I64");
  CHECK(untouched.momentum_buffer == std::vector<float>(5, 0.0f));

  const dppf::adamw ams{{.amsgrad = true}};
  auto adam_state = dppf::adamw{}.init(ex, p);
  safetensors a;
  dppf::save_state(a, "optimizer", adam_state);
  auto ams_state = ams.init(ex, p);
  check_throws_with<checkpoint_error>([&] { dppf::load_state(a, "optimizer", ams_state); },
                                      "no tensor 'optimizer.max_exp_avg_sq'");
}

namespace {

// A user's state: a buffer, a counter it lists itself, and a member called `step` that it does
// not list (a cache, say).
struct listed_counter_state {
  std::vector<float> weights = std::vector<float>(4, 0.0f);
  std::int64_t ticks = 0;
  std::int64_t step = 0;
  template <class F>
  void for_each_buffer(F&& f) {
    f("weights", weights);
  }
  template <class F>
  void for_each_counter(F&& f) {
    f("ticks", ticks);
  }
};

// A state that lists no counters, though it has a member called `step`.
struct unlisted_counter_state {
  std::vector<float> weights = std::vector<float>(3, 0.0f);
  std::int64_t step = 0;
  template <class F>
  void for_each_buffer(F&& f) {
    f("weights", weights);
  }
};

}  // namespace

TEST_CASE("checkpoint of a state holds exactly the counters it lists with for_each_counter") {
  listed_counter_state s;
  s.weights = {1.0f, -2.0f, 3.5f, 0.25f};
  s.ticks = 7;
  s.step = 9;
  safetensors f;
  dppf::save_state(f, "s", s);
  CHECK(f.contains("s.weights"));
  CHECK(f.scalar<std::int64_t>("s.ticks") == 7);
  CHECK_FALSE(f.contains("s.step"));
  listed_counter_state r;
  dppf::load_state(f, "s", r);
  CHECK(r.weights == s.weights);
  CHECK(r.ticks == 7);
  CHECK(r.step == 0);

  unlisted_counter_state u;
  u.step = 5;
  safetensors g;
  dppf::save_state(g, "u", u);
  CHECK(g.contains("u.weights"));
  CHECK_FALSE(g.contains("u.step"));
  CHECK(g.tensors().size() == 1);

  // The library's states list theirs.
  const dppf::host_executor ex;
  std::vector<float> p(3);
  auto s_sgd = dppf::sgd{{.momentum = 0.9}}.init(ex, p);
  auto s_adamw = dppf::adamw{}.init(ex, p);
  dppf::diloco::state<std::vector<float>> s_diloco;
  s_sgd.step = 4;
  s_adamw.step = 5;
  s_diloco.outer_steps = 6;
  using counters = std::vector<std::pair<std::string, std::int64_t>>;
  CHECK(counters_of(s_sgd) == counters{{"step", 4}});
  CHECK(counters_of(s_adamw) == counters{{"step", 5}});
  CHECK(counters_of(s_diloco) == counters{{"outer_steps", 6}});
  dppf::elastic::state<std::vector<float>> s_elastic;
  CHECK(counters_of(s_elastic).empty());
}

TEST_CASE("checkpoint of a random engine continues its sequence") {
  std::mt19937_64 engine(2024);
  for (int i = 0; i < 1000; ++i) (void)engine();
  safetensors f;
  dppf::save_rng(f, "data", engine);
  const safetensors in = safetensors::parse(f.serialize());
  std::mt19937_64 restored(1);
  dppf::load_rng(in, "data", restored);
  for (int i = 0; i < 100; ++i) CHECK(restored() == engine());

  safetensors bad;
  bad.set_metadata("rng.data", "12 not-a-number");
  std::mt19937_64 keep(5);
  const std::mt19937_64 copy = keep;
  check_throws_with<checkpoint_error>([&] { dppf::load_rng(bad, "data", keep); },
                                      "metadata 'rng.data' is not a valid state of this engine type");
  CHECK(keep == copy);
  check_throws_with<checkpoint_error>([&] { dppf::load_rng(bad, "other", keep); }, "no metadata entry 'rng.other'");
}

namespace {

// What checkpointing sees of a trainer (its workspace for T, or nullptr, and its counters).
template <class T, class Trainer>
auto* workspace_of(Trainer& tr) {
  return dppf::detail::trainer_access::workspace<T>(tr);
}
template <class Trainer>
std::pair<double, std::int64_t> loss_accumulator_of(Trainer& tr) {
  const auto c = dppf::detail::trainer_access::get_counters(tr);
  return {c.loss_sum, c.loss_count};
}

// One worker's result: its parameters and every buffer and counter of its trainer.
struct worker_result {
  std::vector<double> params;
  bool workspace = false;
  std::vector<std::pair<std::string, std::vector<double>>> optimizer, consensus;
  std::vector<std::pair<std::string, std::int64_t>> optimizer_counters, consensus_counters;
  std::int64_t steps = 0, syncs = 0;
  std::pair<double, std::int64_t> loss;
};

template <class T, class Trainer>
worker_result result_of(Trainer& tr, const std::vector<T>& x) {
  worker_result r;
  r.params.assign(x.begin(), x.end());
  if (auto* ws = workspace_of<T>(tr)) {
    r.workspace = true;
    r.optimizer = buffers_of(ws->optimizer_state);
    r.consensus = buffers_of(ws->rule_state);
    r.optimizer_counters = counters_of(ws->optimizer_state);
    r.consensus_counters = counters_of(ws->rule_state);
  }
  r.steps = tr.steps();
  r.syncs = tr.syncs();
  r.loss = loss_accumulator_of(tr);
  return r;
}

template <class T>
void check_same(const worker_result& got, const worker_result& want) {
  CHECK(same_bits(got.params, want.params));
  CHECK(got.workspace == want.workspace);
  CHECK(got.steps == want.steps);
  CHECK(got.syncs == want.syncs);
  CHECK(got.optimizer_counters == want.optimizer_counters);
  CHECK(got.consensus_counters == want.consensus_counters);
  CHECK(std::memcmp(&got.loss.first, &want.loss.first, sizeof(double)) == 0);
  CHECK(got.loss.second == want.loss.second);
  REQUIRE(got.optimizer.size() == want.optimizer.size());
  for (std::size_t i = 0; i < got.optimizer.size(); ++i) {
    CHECK(got.optimizer[i].first == want.optimizer[i].first);
    CHECK(same_bits(got.optimizer[i].second, want.optimizer[i].second));
  }
  REQUIRE(got.consensus.size() == want.consensus.size());
  for (std::size_t i = 0; i < got.consensus.size(); ++i) {
    CHECK(got.consensus[i].first == want.consensus[i].first);
    CHECK(same_bits(got.consensus[i].second, want.consensus[i].second));
  }
}

constexpr int workers = 3;
constexpr std::size_t params_n = 23;

template <class T>
std::vector<T> initial_params(int rank) {
  return dppf_test::random_vector<T>(params_n, 100 + static_cast<std::uint64_t>(rank));
}

// Trains steps [from, to) on every worker.
template <class T, class Trainer>
void train(Trainer& tr, std::vector<T>& x, int rank, int from, int to) {
  for (int t = from; t < to; ++t) tr.step(x, gradient(x, t, rank), loss_of(x, t, rank));
}

// Runs 2k steps uninterrupted, and k steps + save + restore into fresh trainers (fresh groups,
// parameters overwritten with garbage) + k steps; compares every worker bit for bit.
template <class T, class MakeTrainer>
void check_trainer_resume(MakeTrainer make, int k) {
  dppf_test::temp_dir dir("trainer");
  std::vector<worker_result> uninterrupted(workers), resumed(workers);
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<T>(comm.rank());
    train(tr, x, comm.rank(), 0, 2 * k);
    uninterrupted[static_cast<std::size_t>(comm.rank())] = result_of<T>(tr, x);
  });
  const auto path = [&](int r) { return dir.path / ("ckpt-" + std::to_string(r) + ".safetensors"); };
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<T>(comm.rank());
    train(tr, x, comm.rank(), 0, k);
    dppf::save_trainer(path(comm.rank()), tr, x);
  });
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    std::vector<T> x(params_n, T(1234));
    dppf::load_trainer(path(comm.rank()), tr, x);
    CHECK(tr.steps() == k);
    train(tr, x, comm.rank(), k, 2 * k);
    resumed[static_cast<std::size_t>(comm.rank())] = result_of<T>(tr, x);
  });
  CHECK(uninterrupted[0].workspace);
  for (int r = 0; r < workers; ++r) {
    INFO("rank " << r);
    check_same<T>(resumed[static_cast<std::size_t>(r)], uninterrupted[static_cast<std::size_t>(r)]);
  }
  CHECK(uninterrupted[0].steps == 2 * k);
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint of a trainer resumes bit for bit through threads", T, float, double) {
  const dppf::trainer_options every3{.tau = 3};
  // k = 7: the checkpoint falls between two syncs (steps 6 and 9), so the loss accumulator and
  // the mid-period optimizer state must be restored exactly.
  SUBCASE("pull_push with sgd and a warm-up cosine schedule") {
    using schedule = dppf::warmup<dppf::cosine_lr>;
    const schedule lr{.steps = 3, .then = {.lr = 0.05, .total_steps = 20}};
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer<dppf::sgd, dppf::pull_push, dppf::thread_communicator, dppf::host_executor, schedule>(
          dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::pull_push{{.alpha = 0.3, .lambda = 0.05}}, comm, dppf::host_executor{},
          {.tau = 3, .warmup_steps = 4, .warmup_tau = 2}, lr);
    }, 7);
  }
  SUBCASE("elastic with adamw on host_parallel") {
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::adamw{{.lr = 0.01}}, dppf::elastic{{.alpha = 0.2}}, comm, dppf::host_parallel_executor{}, every3};
    }, 7);
  }
  SUBCASE("diloco with sgd") {
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.5}}, dppf::diloco{}, comm, dppf::host_executor{}, every3};
    }, 7);
  }
  SUBCASE("leader with adamw amsgrad and averaged optimizer state") {
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::adamw{{.lr = 0.01, .amsgrad = true}}, dppf::leader{}, comm, dppf::host_executor{},
                           dppf::trainer_options{.tau = 3, .average_optimizer_state = true}};
    }, 7);
  }
  SUBCASE("grawa, local_sgd and data_parallel") {
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::sgd{{.lr = 0.05}}, dppf::grawa{}, comm, dppf::host_executor{}, every3};
    }, 5);
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::local_sgd{}, comm, dppf::host_executor{}, every3};
    }, 4);
    check_trainer_resume<T>([&](dppf::thread_communicator comm) {
      return dppf::trainer{dppf::adamw{{.lr = 0.01}}, dppf::data_parallel{}, comm, dppf::host_executor{}};
    }, 5);
  }
}

TEST_CASE("checkpoint of a trainer taken before its first step restores the parameters only") {
  dppf_test::temp_dir dir("before-first-step");
  const auto make = [](dppf::thread_communicator comm) {
    return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::elastic{{.alpha = 0.2}}, comm, dppf::host_executor{}};
  };
  std::vector<std::vector<float>> want(2), got(2);
  dppf::thread_group(2).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<float>(comm.rank());
    const auto f = dppf::save_trainer(tr, x);
    CHECK(f.metadata("dppf.workspace") == "0");
    CHECK_FALSE(f.contains("optimizer.momentum_buffer"));
    f.save(rank_file(dir, comm.rank()));
    train(tr, x, comm.rank(), 0, 5);
    want[static_cast<std::size_t>(comm.rank())] = x;
  });
  dppf::thread_group(2).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    std::vector<float> x(params_n);
    dppf::load_trainer(rank_file(dir, comm.rank()), tr, x);
    CHECK(workspace_of<float>(tr) == nullptr);
    train(tr, x, comm.rank(), 0, 5);
    got[static_cast<std::size_t>(comm.rank())] = x;
  });
  CHECK(same_bits(got[0], want[0]));
  CHECK(same_bits(got[1], want[1]));
}

namespace {

using failing_trainer = dppf::trainer<dppf::sgd, dppf::elastic, dppf::thread_communicator, dppf::host_executor>;

failing_trainer make_failing(dppf::thread_communicator comm) {
  return failing_trainer(dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::elastic{{.alpha = 0.2}}, comm, dppf::host_executor{},
                         {.tau = 2});
}

auto make_diloco(dppf::thread_communicator comm) {
  return dppf::trainer{dppf::adamw{{.lr = 0.01}}, dppf::diloco{{.outer_momentum = 0.5}}, comm, dppf::host_executor{},
                       dppf::trainer_options{.tau = 2}};
}

// Saves 3 workers after 3 steps into dir/ckpt-<r>.safetensors.
template <class Make>
void write_group(const std::filesystem::path& dir, Make make) {
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<float>(comm.rank());
    train(tr, x, comm.rank(), 0, 3);
    dppf::save_trainer(dir / ("ckpt-" + std::to_string(comm.rank()) + ".safetensors"), tr, x);
  });
}

// The file at `path` with tensor `name` removed (the caller may add another under that name).
safetensors without(const std::filesystem::path& path, const std::string& name) {
  const safetensors f = safetensors::load(path);
  safetensors g;
  for (const auto& [k, v] : f.metadata()) g.set_metadata(k, v);
  for (const auto& [n, info] : f.tensors())
    if (n != name) g.add_bytes(n, info.type, info.shape, f.bytes(n));
  return g;
}

// Every rank tries to restore the file `file_of(rank)` into a trainer made by `make`, either
// fresh (no workspace yet) or after 3 steps (one sync: the consensus state has moved away from
// its initial value; the loss accumulator holds a step). Returns each rank's error message,
// after checking that nothing changed on any rank: parameters, whether the workspace exists,
// every optimizer and consensus buffer and counter, the trainer's counters and loss accumulator.
template <class Make, class FileOf>
std::vector<std::string> restore_everywhere(Make make, FileOf file_of, bool stepped_before) {
  std::vector<std::string> errors(workers);
  dppf::thread_group group(workers, {.timeout = std::chrono::seconds(30)});
  group.run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<float>(comm.rank() + 10);  // not the files' parameters
    if (stepped_before) train(tr, x, comm.rank(), 0, 3);
    const worker_result before = result_of<float>(tr, x);
    CHECK(before.workspace == stepped_before);
    try {
      dppf::load_trainer(file_of(comm.rank()), tr, x);
    } catch (const checkpoint_error& e) {
      errors[static_cast<std::size_t>(comm.rank())] = e.what();
    }
    INFO("rank " << comm.rank() << ", stepped before the load: " << stepped_before);
    check_same<float>(result_of<float>(tr, x), before);
  });
  for (int r = 0; r < workers; ++r) CHECK_MESSAGE(!errors[static_cast<std::size_t>(r)].empty(), "rank " << r << " did not raise");
  return errors;
}

template <class FileOf>
std::vector<std::string> restore_everywhere(FileOf file_of, bool stepped_before) {
  return restore_everywhere(make_failing, file_of, stepped_before);
}

}  // namespace

TEST_CASE("checkpoint restore fails on every rank, with no hang and nothing changed, when one rank's file is bad") {
  dppf_test::temp_dir dir("failing");
  write_group(dir.path, make_failing);
  const auto file = [&](int r) { return dir.path / ("ckpt-" + std::to_string(r) + ".safetensors"); };

  SUBCASE("a truncated file on rank 1") {
    std::filesystem::resize_file(file(1), std::filesystem::file_size(file(1)) - 3);
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(file, stepped);
      CHECK(errors[1].find("run past the data area") != std::string::npos);
      CHECK(errors[1].find(file(1).string()) != std::string::npos);
      for (int r : {0, 2}) {
        INFO("rank " << r << ": " << errors[static_cast<std::size_t>(r)]);
        CHECK(errors[static_cast<std::size_t>(r)].find("rank(s) 1 could not restore their checkpoint; this is rank " +
                                                       std::to_string(r)) != std::string::npos);
      }
    }
  }
  SUBCASE("a missing file on rank 2") {
    std::filesystem::remove(file(2));
    const auto errors = restore_everywhere(file, false);
    CHECK(errors[2].find("cannot open: No such file or directory") != std::string::npos);
    CHECK(errors[0].find("rank(s) 2 could not restore") != std::string::npos);
  }
  SUBCASE("files swapped between ranks 0 and 1") {
    const auto errors = restore_everywhere([&](int r) { return file(r == 0 ? 1 : r == 1 ? 0 : r); }, false);
    CHECK(errors[0].find("metadata dppf.rank is '1', this run has '0'") != std::string::npos);
    CHECK(errors[1].find("metadata dppf.rank is '0', this run has '1'") != std::string::npos);
    CHECK(errors[2].find("rank(s) 0, 1 could not restore") != std::string::npos);
  }
  SUBCASE("a checkpoint of another optimizer configuration") {
    // Rank 0's file without its momentum buffer (saved by a run without momentum).
    without(file(0), "optimizer.momentum_buffer").save(file(0));
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(file, stepped);
      CHECK(errors[0].find("no tensor 'optimizer.momentum_buffer'") != std::string::npos);
      CHECK(errors[1].find("rank(s) 0 could not restore") != std::string::npos);
    }
  }
  SUBCASE("an EASGD center of the wrong size, found only once the workspace exists") {
    // The rule's init (the center: the mean of the parameters) runs before this can be checked;
    // a fresh trainer must still end with no workspace, a stepped one with its own center.
    safetensors g = without(file(1), "consensus.center");
    g.add("consensus.center", std::vector<float>(params_n + 1));
    g.save(file(1));
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(file, stepped);
      CHECK(errors[1].find("tensor 'consensus.center' has 24 elements (shape [24]), the live buffer has 23") !=
            std::string::npos);
      CHECK(errors[0].find("rank(s) 1 could not restore") != std::string::npos);
      CHECK(errors[2].find("rank(s) 1 could not restore") != std::string::npos);
    }
  }
  SUBCASE("a trainer counter of the wrong dtype on rank 2") {
    safetensors g = without(file(2), "trainer.loss_count");
    g.add_scalar("trainer.loss_count", 1.0);
    g.save(file(2));
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(file, stepped);
      CHECK(errors[2].find("tensor 'trainer.loss_count' has dtype F64, the live buffer has I64") != std::string::npos);
      CHECK(errors[0].find("rank(s) 2 could not restore") != std::string::npos);
    }
  }
  SUBCASE("a consensus rule whose init fails on the live group") {
    // alpha = 0.5 with 3 workers gives M * alpha > 1: the rule's init raises on every rank while
    // the workspace is built; the load reports it and changes nothing.
    const auto make_unstable = [](dppf::thread_communicator comm) {
      return failing_trainer(dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::elastic{{.alpha = 0.5}}, comm,
                             dppf::host_executor{}, {.tau = 2});
    };
    const auto errors = restore_everywhere(make_unstable, file, false);
    for (const auto& e : errors) CHECK(e.find("must be <= 1 for a stable center") != std::string::npos);
  }
  SUBCASE("a world size that differs") {
    dppf::thread_group(1).run([&](dppf::thread_communicator comm) {
      auto tr = make_failing(comm);
      std::vector<float> x(params_n);
      check_throws_with<checkpoint_error>([&] { dppf::load_trainer(file(0), tr, x); },
                                          "metadata dppf.world_size is '3', this run has '1'");
    });
  }
  SUBCASE("parameters of another size") {
    dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
      auto tr = make_failing(comm);
      std::vector<float> x(params_n + comm.rank());  // rank 0 matches, the others do not
      std::string error;
      try {
        dppf::load_trainer(file(comm.rank()), tr, x);
      } catch (const checkpoint_error& e) {
        error = e.what();
      }
      if (comm.rank() == 0) CHECK(error.find("rank(s) 1, 2 could not restore") != std::string::npos);
      else CHECK(error.find("tensor 'params' has 23 elements (shape [23]), the live buffer has") != std::string::npos);
      CHECK(workspace_of<float>(tr) == nullptr);
    });
  }
}

TEST_CASE("checkpoint restore of diloco fails on every rank with nothing changed when one rank's state is bad") {
  // DiLoCo's init sets the global model to the mean of the parameters and its outer momentum to
  // zero; a failed load must leave neither behind (fresh trainer) nor overwrite them (stepped).
  dppf_test::temp_dir dir("failing-diloco");
  write_group(dir.path, make_diloco);
  const auto file = [&](int r) { return dir.path / ("ckpt-" + std::to_string(r) + ".safetensors"); };
  SUBCASE("a global model of the wrong size on rank 2") {
    safetensors g = without(file(2), "consensus.global");
    g.add("consensus.global", std::vector<float>(params_n - 1));
    g.save(file(2));
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(make_diloco, file, stepped);
      CHECK(errors[2].find("tensor 'consensus.global' has 22 elements (shape [22]), the live buffer has 23") !=
            std::string::npos);
      CHECK(errors[0].find("rank(s) 2 could not restore") != std::string::npos);
    }
  }
  SUBCASE("no outer step counter on rank 0") {
    without(file(0), "consensus.outer_steps").save(file(0));
    for (bool stepped : {false, true}) {
      const auto errors = restore_everywhere(make_diloco, file, stepped);
      CHECK(errors[0].find("no tensor 'consensus.outer_steps'") != std::string::npos);
      CHECK(errors[1].find("rank(s) 0 could not restore") != std::string::npos);
    }
  }
}

TEST_CASE("checkpoint taken before the first step, restored into a trainer that has stepped, resumes like a fresh one") {
  // The file has no workspace: the trainer's own (momentum, center) must go, so the next step
  // initializes it from the restored parameters as a fresh trainer's first step does.
  dppf_test::temp_dir dir("drop-workspace");
  std::vector<worker_result> want(workers), got(workers);
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make_failing(comm);
    auto x = initial_params<float>(comm.rank());
    dppf::save_trainer(rank_file(dir, comm.rank()), tr, x);
    train(tr, x, comm.rank(), 0, 5);
    want[static_cast<std::size_t>(comm.rank())] = result_of<float>(tr, x);
  });
  dppf::thread_group(workers).run([&](dppf::thread_communicator comm) {
    auto tr = make_failing(comm);
    auto x = initial_params<float>(comm.rank() + 10);
    train(tr, x, comm.rank(), 0, 3);
    dppf::load_trainer(rank_file(dir, comm.rank()), tr, x);
    CHECK(workspace_of<float>(tr) == nullptr);
    CHECK(tr.steps() == 0);
    train(tr, x, comm.rank(), 0, 5);
    got[static_cast<std::size_t>(comm.rank())] = result_of<float>(tr, x);
  });
  for (int r = 0; r < workers; ++r) {
    INFO("rank " << r);
    check_same<float>(got[static_cast<std::size_t>(r)], want[static_cast<std::size_t>(r)]);
  }
}

TEST_CASE("checkpoint restores into a fresh trainer whose parameter buffer holds NaN") {
  // With tau = 1 the trainer syncs on its first step; restoring must not sync on the NaN that a
  // freshly allocated buffer may hold (the non-finite policy would raise).
  dppf_test::temp_dir dir("nan");
  const auto make = [](dppf::thread_communicator comm) {
    return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::elastic{{.alpha = 0.2}}, comm, dppf::host_executor{},
                         dppf::trainer_options{.tau = 1}};
  };
  std::vector<std::vector<float>> want(2), got(2);
  dppf::thread_group(2).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    auto x = initial_params<float>(comm.rank());
    train(tr, x, comm.rank(), 0, 3);
    dppf::save_trainer(rank_file(dir, comm.rank()), tr, x);
    train(tr, x, comm.rank(), 3, 6);
    want[static_cast<std::size_t>(comm.rank())] = x;
  });
  dppf::thread_group(2).run([&](dppf::thread_communicator comm) {
    auto tr = make(comm);
    std::vector<float> x(params_n, std::numeric_limits<float>::quiet_NaN());
    dppf::load_trainer(rank_file(dir, comm.rank()), tr, x);
    train(tr, x, comm.rank(), 3, 6);
    got[static_cast<std::size_t>(comm.rank())] = x;
  });
  CHECK(same_bits(got[0], want[0]));
  CHECK(same_bits(got[1], want[1]));
}
