// dppf::elastic_group and dppf::elastic_trainer in one process: workers are threads meeting in a
// fresh FileStore directory, connected over loopback. A worker "dies" by leaving its loop and
// destroying its group (its sockets close), or "stalls" by sleeping past the timeout. Training is
// LocalSGD (or DPPF) with plain SGD on f_i(x) = |x - c_i|^2 / 2, so a double-precision
// simulation of who took part in which sync is the reference.
#include <dppf/elastic/checkpoint.hpp>
#include <dppf/elastic/trainer.hpp>
#include <dppf/dppf.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "elastic_reference.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

struct fresh_dir {
  std::string path;
  fresh_dir() {
    static std::atomic<int> counter{0};
    path = (std::filesystem::temp_directory_path() /
            ("dppf-elastic-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~fresh_dir() { std::filesystem::remove_all(path); }
  dppf::gloo_store store() const { return {.file_dir = path, .redis_host = {}, .redis_port = 6379, .prefix = "run"}; }
};

dppf::elastic_group_options fast(std::chrono::milliseconds timeout = 1500ms) {
  dppf::elastic_group_options o;
  o.gloo = {.timeout = timeout, .address = "127.0.0.1", .iface = {}, .check_arguments = true};
  o.admit_timeout = 20s;
  if (std::getenv("DPPF_ELASTIC_VERBOSE")) o.on_change = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  return o;
}

constexpr std::size_t n = 257;
constexpr double lr = 0.1;
constexpr std::int64_t tau = 3;

namespace ref = dppf_test::elastic;
std::vector<double> target(std::int64_t id) { return ref::target(id, n); }

// What each thread reports back.
struct outcome {
  std::vector<float> params;       // after the final average
  std::vector<float> at_join;      // a newcomer's parameters right after it was let in
  std::int64_t steps_at_join = -1;
  std::string error;
  dppf::elastic_stats stats;
  std::map<std::int64_t, std::vector<std::int64_t>> members_of_sync;  // sync index -> member ids
};

using trainer_t = dppf::elastic_trainer<dppf::sgd, dppf::local_sgd, dppf::host_executor>;

// Trains `total` steps; `stop_after(step)` returns true to make this worker die after that step,
// `stall(step)` a sleep to take after it, `after_step(step, group)` anything else.
void worker(const dppf::gloo_store& store, int founders, dppf::elastic_group_options options, std::int64_t total, outcome& out,
            const std::function<bool(std::int64_t)>& stop_after, const std::function<std::chrono::milliseconds(std::int64_t)>& stall,
            bool newcomer = false, const std::function<void(std::int64_t, const dppf::elastic_group&)>& after_step = {},
            const dppf::trainer_options& train = {.tau = tau}) {
  try {
    auto group = std::make_shared<dppf::elastic_group>(store, founders, options);
    trainer_t tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{}, dppf::host_executor{}, train);
    std::vector<float> x(n, 0.0f), g(n);
    tr.start(x);
    const auto c = target(group->id());  // final once in (a newcomer may have changed it)
    if (newcomer) {
      out.at_join = x;
      out.steps_at_join = tr.steps();
    }
    while (tr.steps() < total) {
      const std::int64_t s = tr.steps();
      for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
      const auto syncs = tr.syncs();
      tr.step(x, g);
      if (tr.syncs() > syncs) out.members_of_sync[tr.syncs()] = group->committed_members();
      if (stop_after && stop_after(s)) return;  // dies: the group (and its sockets) goes
      if (stall) std::this_thread::sleep_for(stall(s));
      if (after_step) after_step(s, *group);
    }
    tr.average(x);
    out.params = x;
    out.stats = tr.stats();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
}

std::vector<double> simulate(std::int64_t total, const ref::history& h) { return ref::simulate(total, h, n, lr, tau); }

void require_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  std::size_t at = 0;
  const double worst = ref::worst_error(got, want, &at);
  INFO("worst relative error " << worst << " at element " << at << " (" << got[at] << " vs " << want[at] << ")");
  CHECK(worst <= tol);
}

// A newcomer's parameters when let in are the mean after the sync it came at (LocalSGD: every
// member is at it), from the simulation of the history up to then.
void require_joined_at_the_mean(const outcome& newcomer, const ref::history& history) {
  ref::history before;
  for (auto& [k, v] : history)
    if (k <= newcomer.steps_at_join / tau) before[k] = v;
  require_close(newcomer.at_join, simulate(newcomer.steps_at_join, before), 1e-5);
}

}  // namespace

TEST_CASE("elastic_store: create succeeds for exactly one of many racing writers; get, list, erase") {
  fresh_dir dir;
  dppf::elastic_store store(dir.store(), 1s);
  std::atomic<int> wins{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t)
    pool.emplace_back([&, t] {
      dppf::elastic_store mine(dir.store(), 1s);
      if (mine.create("gen/1/commit", "writer " + std::to_string(t))) ++wins;
    });
  for (auto& t : pool) t.join();
  CHECK(wins.load() == 1);
  const auto value = store.get("gen/1/commit");
  REQUIRE(value.has_value());
  CHECK(value->rfind("writer ", 0) == 0);
  CHECK_FALSE(store.create("gen/1/commit", "late"));
  CHECK(*store.get("gen/1/commit") == *value);
  CHECK_FALSE(store.get("gen/2/commit").has_value());
  CHECK(store.create("gen/1/join/3", ""));
  CHECK(store.create("gen/1/join/12", ""));
  auto names = store.list("gen/1/join");
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"12", "3"});
  store.erase("gen/1/join/3");
  CHECK(store.list("gen/1/join") == std::vector<std::string>{"12"});
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { dppf::elastic_store bad({.file_dir = dir.path, .redis_host = "h", .redis_port = 1, .prefix = "p"}, 1s); }, "exactly one");
}

TEST_CASE("elastic_store: an unreachable redis-server raises communication_error naming it") {
  dppf::elastic_store store({.file_dir = {}, .redis_host = "127.0.0.1", .redis_port = 1, .prefix = "p"}, 500ms);
  dppf_test::check_throws_with<dppf::communication_error>([&] { (void)store.get("k"); }, "127.0.0.1:1");
}

TEST_CASE("elastic_generation: the stored record round-trips") {
  const dppf::elastic_generation g{7, {0, 2, 5, 11}, {11}, 5};
  const auto back = dppf::elastic_generation::decode(7, g.encode());
  CHECK(back.number == 7);
  CHECK(back.members == g.members);
  CHECK(back.fresh == g.fresh);
  CHECK(back.largest == 5);
  CHECK(back.has(5));
  CHECK_FALSE(back.has(3));
  CHECK(back.is_fresh(11));
}

TEST_CASE("elastic_trainer without faults equals the LocalSGD reference and every worker ends with the same bits") {
  fresh_dir dir;
  const int m = 3;
  const std::int64_t total = 12;
  std::vector<outcome> out(m);
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r) pool.emplace_back([&, r] { worker(dir.store(), m, fast(), total, out[static_cast<std::size_t>(r)], {}, {}); });
  for (auto& t : pool) t.join();
  for (auto& o : out) REQUIRE_MESSAGE(o.error.empty(), o.error);
  for (auto& o : out) {
    CHECK(std::memcmp(o.params.data(), out[0].params.data(), n * sizeof(float)) == 0);
    CHECK(o.stats.generation == 0);
    CHECK(o.stats.members == m);
    CHECK(o.stats.syncs == total / tau);
  }
  require_close(out[0].params, simulate(total, out[0].members_of_sync), 1e-5);
}

TEST_CASE("elastic_trainer: a worker lost between syncs; the survivors redo the sync over three and finish equal") {
  fresh_dir dir;
  const int m = 4;
  const std::int64_t total = 18, dies_after = 7;  // dies in the middle of the local steps of sync 3
  std::vector<outcome> out(m);
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      std::function<bool(std::int64_t)> stop;
      if (r == m - 1) stop = [&](std::int64_t s) { return s == dies_after; };
      worker(dir.store(), m, fast(), total, out[static_cast<std::size_t>(r)], stop, {});
    });
  for (auto& t : pool) t.join();
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < 15s);
  std::vector<outcome*> alive;
  for (auto& o : out)
    if (!o.params.empty() || !o.error.empty()) alive.push_back(&o);
  REQUIRE(alive.size() == 3);
  for (auto* o : alive) REQUIRE_MESSAGE(o->error.empty(), o->error);
  for (auto* o : alive) {
    CHECK(std::memcmp(o->params.data(), alive[0]->params.data(), n * sizeof(float)) == 0);
    CHECK(o->stats.members == 3);
    CHECK(o->stats.generation >= 1);
    CHECK(o->members_of_sync == alive[0]->members_of_sync);
  }
  const auto& history = alive[0]->members_of_sync;
  CHECK(history.at(2).size() == 4);
  CHECK(history.at(3).size() == 3);  // the sync the dead worker missed ran over the survivors
  require_close(alive[0]->params, simulate(total, history), 1e-5);
}

TEST_CASE("elastic_trainer: with two of three workers gone the last one stops with a quorum error") {
  fresh_dir dir;
  const int m = 3;
  std::vector<outcome> out(m);
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      std::function<bool(std::int64_t)> stop;
      if (r > 0) stop = [](std::int64_t s) { return s == 4; };
      worker(dir.store(), m, fast(1000ms), 30, out[static_cast<std::size_t>(r)], stop, {});
    });
  for (auto& t : pool) t.join();
  const auto took = std::chrono::steady_clock::now() - start;
  int stopped = 0;
  for (auto& o : out)
    if (!o.error.empty()) {
      ++stopped;
      INFO(o.error);
      CHECK(o.error.find("fewer than the quorum of 2") != std::string::npos);
      CHECK(o.error.find("partitioned minority stops") != std::string::npos);
    }
  CHECK(stopped == 1);
  CHECK(took < 12s);  // timeout 1 s + quorum wait 3 s, with margin for a loaded machine
}

TEST_CASE("elastic_trainer: min_workers lets two failures in a row through; the last two finish equal") {
  fresh_dir dir;
  const int m = 4;
  const std::int64_t total = 21;
  std::vector<outcome> out(m);
  std::vector<std::thread> pool;
  auto options = fast();
  options.min_workers = 2;
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      std::function<bool(std::int64_t)> stop;
      if (r == 2) stop = [](std::int64_t s) { return s == 4; };
      if (r == 3) stop = [](std::int64_t s) { return s == 10; };
      worker(dir.store(), m, options, total, out[static_cast<std::size_t>(r)], stop, {});
    });
  for (auto& t : pool) t.join();
  std::vector<outcome*> alive;
  for (auto& o : out)
    if (!o.params.empty() || !o.error.empty()) alive.push_back(&o);
  REQUIRE(alive.size() == 2);
  for (auto* o : alive) REQUIRE_MESSAGE(o->error.empty(), o->error);
  CHECK(std::memcmp(alive[0]->params.data(), alive[1]->params.data(), n * sizeof(float)) == 0);
  CHECK(alive[0]->stats.members == 2);
  CHECK(alive[0]->members_of_sync == alive[1]->members_of_sync);
  require_close(alive[0]->params, simulate(total, alive[0]->members_of_sync), 1e-5);
}

TEST_CASE("elastic_trainer: a newcomer is let in at a sync, gets the mean and the counters, and all finish equal") {
  fresh_dir dir;
  const int m = 3;
  const std::int64_t total = 30;
  std::vector<outcome> out(m + 1);
  std::vector<std::thread> pool;
  auto slow = [](std::int64_t) { return 30ms; };  // so the newcomer arrives mid-run
  for (int r = 0; r < m; ++r) pool.emplace_back([&, r] { worker(dir.store(), m, fast(), total, out[static_cast<std::size_t>(r)], {}, slow); });
  std::this_thread::sleep_for(300ms);
  pool.emplace_back([&] { worker(dir.store(), m, fast(), total, out[m], {}, slow, true); });
  for (auto& t : pool) t.join();
  for (auto& o : out) REQUIRE_MESSAGE(o.error.empty(), o.error);
  const auto& newcomer = out[m];
  REQUIRE(newcomer.steps_at_join > 0);
  CHECK(newcomer.steps_at_join % tau == 0);
  CHECK(newcomer.steps_at_join < total);
  for (auto& o : out) {
    CHECK(std::memcmp(o.params.data(), out[0].params.data(), n * sizeof(float)) == 0);
    CHECK(o.stats.members == m + 1);
  }
  // Its parameters at joining are the mean of the three members after that sync (LocalSGD: they
  // are all at the mean), from the reference simulation of the history.
  const auto& history = out[0].members_of_sync;
  CHECK(history.rbegin()->second.size() == 4);
  require_joined_at_the_mean(newcomer, history);
  require_close(out[0].params, simulate(total, history), 1e-5);
}

TEST_CASE("elastic_group: a store restarted empty is re-seeded; a newcomer that claimed a member's id takes a fresh one") {
  // Rank 0 empties the store between two syncs (a redis-server restarted without persistence)
  // and waits until a newcomer has claimed an id in it: id 0, a member's. At the next committed
  // sync rank 0 must find generation 0 gone and write it back with ids 0..2; the newcomer must
  // see its id held by a member, claim id 3 and be let in with the mean.
  fresh_dir dir;
  const int m = 3;
  const std::int64_t total = 30;
  std::vector<outcome> out(m + 1);
  std::mutex lines_mutex;
  std::vector<std::string> lines;
  auto options = fast(5000ms);  // the members wait in their next sync while rank 0 waits below
  options.on_change = [&](const std::string& line) {
    std::lock_guard lock(lines_mutex);
    lines.push_back(line);
  };
  auto said = [&](const std::string& what) {
    std::lock_guard lock(lines_mutex);
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(what) != std::string::npos; });
  };
  const std::string root = dir.path + "/run";
  std::atomic<bool> emptied{false};
  auto empty_the_store = [&](std::int64_t step, const dppf::elastic_group& g) {
    if (step != 7 || g.rank() != 0) return;
    std::filesystem::remove_all(root);
    emptied = true;
    for (int i = 0; i < 800 && !std::filesystem::exists(root + "/ids/0"); ++i) std::this_thread::sleep_for(5ms);
  };
  auto slow = [](std::int64_t) { return 20ms; };
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] { worker(dir.store(), m, options, total, out[static_cast<std::size_t>(r)], {}, slow, false, empty_the_store); });
  for (int i = 0; i < 1000 && !emptied; ++i) std::this_thread::sleep_for(2ms);
  REQUIRE(emptied);
  pool.emplace_back([&] { worker(dir.store(), m, options, total, out[m], {}, slow, true); });
  for (auto& t : pool) t.join();
  for (auto& o : out) REQUIRE_MESSAGE(o.error.empty(), o.error);
  CHECK(said("the store had lost generation 0"));
  CHECK(said("re-seeded ids 0..2 and the generation"));
  CHECK(said("id 0 belongs to a member of generation 0"));
  const auto& newcomer = out[m];
  CHECK(newcomer.stats.worker_id == 3);
  for (auto& o : out) {
    CHECK(std::memcmp(o.params.data(), out[0].params.data(), n * sizeof(float)) == 0);
    CHECK(o.stats.members == m + 1);
  }
  // The re-seeded store holds the generation the group moved to and every id.
  for (int id = 0; id <= m; ++id) CHECK(std::filesystem::exists(root + "/ids/" + std::to_string(id)));
  const auto& history = out[0].members_of_sync;
  REQUIRE(newcomer.steps_at_join > 0);
  require_joined_at_the_mean(newcomer, history);
  require_close(out[0].params, simulate(total, history), 1e-5);
}

TEST_CASE("elastic_trainer: a newcomer with other settings is refused, naming the difference; the members go on") {
  // A newcomer with another tau, newcomer_state or optimizer state (the trainer's own checks) or
  // another agreement text (the program's): it must raise invalid_argument naming the first
  // difference before any sync, and the two members regroup without it and finish equal to the
  // simulation of their syncs.
  struct settings {
    dppf::trainer_options options{.tau = tau};
    std::string text = "lr=0.1\n";
    dppf::newcomer_state state = dppf::newcomer_state::from_peer;
    double momentum = 0.0;
  };
  auto refused = [](settings newcomer_settings, const std::string& expected) {
    fresh_dir dir;
    const int m = 2;
    const std::int64_t total = 45;
    std::vector<outcome> out(m);
    std::string refusal;
    auto train = [&](outcome& o, settings mine, bool newcomer) {
      try {
        auto group = std::make_shared<dppf::elastic_group>(dir.store(), m, fast());
        trainer_t tr(group, dppf::sgd({.lr = lr, .momentum = mine.momentum}), dppf::local_sgd{}, dppf::host_executor{}, mine.options,
                     {.state = mine.state, .agreement = mine.text});
        std::vector<float> x(n, 0.0f), g(n);
        tr.start(x);
        const auto c = target(group->id());
        while (tr.steps() < total) {
          for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
          const auto syncs = tr.syncs();
          tr.step(x, g);
          if (tr.syncs() > syncs) o.members_of_sync[tr.syncs()] = group->committed_members();
          std::this_thread::sleep_for(20ms);
        }
        tr.average(x);
        o.params = x;
        o.stats = tr.stats();
      } catch (const std::invalid_argument& e) {
        if (newcomer) refusal = e.what();
        o.error = e.what();
      } catch (const std::exception& e) {
        o.error = e.what();
      }
    };
    outcome newcomer;
    std::vector<std::thread> pool;
    for (int r = 0; r < m; ++r) pool.emplace_back([&, r] { train(out[static_cast<std::size_t>(r)], settings{}, false); });
    std::this_thread::sleep_for(300ms);
    pool.emplace_back([&] { train(newcomer, newcomer_settings, true); });
    for (auto& t : pool) t.join();
    for (auto& o : out) REQUIRE_MESSAGE(o.error.empty(), o.error);
    CHECK_MESSAGE(refusal.find(expected) != std::string::npos, refusal);
    CHECK(newcomer.params.empty());
    CHECK(std::memcmp(out[0].params.data(), out[1].params.data(), n * sizeof(float)) == 0);
    CHECK(out[0].stats.members == m);
    CHECK(out[0].stats.generation >= 2);  // let in, then regrouped without it
    require_close(out[0].params, simulate(total, out[0].members_of_sync), 1e-5);
  };
  const std::string differ = "settings differ from the group's: ";
  SUBCASE("another tau") { refused({.options = {.tau = tau + 1}}, differ + "tau is 4 on this rank (2) and 3 on rank 0"); }
  SUBCASE("another agreement text") { refused({.text = "lr=0.2\n"}, differ + "lr is 0.2 on this rank (2) and 0.1 on rank 0"); }
  SUBCASE("another newcomer_state") {
    refused({.state = dppf::newcomer_state::fresh}, differ + "newcomer_state is fresh on this rank (2) and from_peer on rank 0");
  }
  SUBCASE("an optimizer state of another shape (momentum)") { refused({.momentum = 0.9}, differ + "the texts are of different versions"); }
}

TEST_CASE("elastic_trainer: a worker stalled past the timeout is excluded, then rejoins as new from the mean") {
  fresh_dir dir;
  const int m = 4;
  const std::int64_t total = 81;
  std::vector<outcome> out(m);
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      std::function<std::chrono::milliseconds(std::int64_t)> stall = [](std::int64_t) { return 60ms; };
      if (r == m - 1) stall = [](std::int64_t s) { return s == 4 ? 4000ms : 60ms; };  // "SIGSTOP" for 4 s
      worker(dir.store(), m, fast(1000ms), total, out[static_cast<std::size_t>(r)], {}, stall);
    });
  for (auto& t : pool) t.join();
  for (auto& o : out) REQUIRE_MESSAGE(o.error.empty(), o.error);
  for (auto& o : out) {
    CHECK(std::memcmp(o.params.data(), out[0].params.data(), n * sizeof(float)) == 0);
    CHECK(o.stats.members == m);
  }
  std::set<std::size_t> sizes;
  for (auto& [k, v] : out[0].members_of_sync) sizes.insert(v.size());
  CHECK(sizes.count(3) == 1);  // some syncs ran without it
  CHECK(out[0].members_of_sync.rbegin()->second.size() == 4);
}

TEST_CASE("elastic_trainer refuses what is not elastic-safe, naming it") {
  fresh_dir dir;
  auto group = std::make_shared<dppf::elastic_group>(dir.store(), 1, fast());
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        trainer_t tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{}, dppf::host_executor{}, {.tau = tau, .average_optimizer_state = true});
      },
      "average_optimizer_state");
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { trainer_t tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{}, dppf::host_executor{}, {.tau = tau, .overlap_steps = tau}); },
      "overlap_steps must be below tau (and warmup_tau): a newcomer is let in between a sync's end and the next sync's start (got 3)");
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        trainer_t tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{}, dppf::host_executor{},
                     {.tau = tau, .warmup_steps = 10, .warmup_tau = 1, .overlap_steps = 1});
      },
      "must be below tau (and warmup_tau)");
  using dp_trainer = dppf::elastic_trainer<dppf::sgd, dppf::data_parallel, dppf::host_executor>;
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { dp_trainer tr(group, dppf::sgd({.lr = lr}), dppf::data_parallel{.gradients_averaged = true}, dppf::host_executor{}); },
      "gradients_averaged");
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        dp_trainer tr(group, dppf::sgd({.lr = lr}), dppf::data_parallel{}, dppf::host_executor{}, {},
                      {.state = dppf::newcomer_state::fresh});
      },
      "must be from_peer with data_parallel");
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::elastic_group bad(dir.store(), 0, fast()); }, "founders");
  auto o = fast();
  o.min_workers = -1;
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::elastic_group bad(dir.store(), 2, o); }, "min_workers");
}

TEST_CASE("gloo_communicator: connecting raises timeout_error within the timeout when a rank never comes") {
  fresh_dir dir;
  const auto start = std::chrono::steady_clock::now();
  dppf_test::check_throws_with<dppf::timeout_error>(
      [&] {
        dppf::gloo_communicator comm(dir.store(), 0, 2, {.timeout = 700ms, .address = "127.0.0.1", .iface = {}, .check_arguments = true});
      },
      "connect failed on rank 0 of 2");
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // Gloo's stores alone wait 30 s
}

// Without a fault the elastic trainer runs exactly the plain trainer's collectives, so it must
// give the same bits as dppf::trainer over gloo_communicator, for every elastic-safe rule.
template <class Rule>
void same_bits_as_plain_trainer(const Rule& rule, const dppf::trainer_options& options = {.tau = tau}) {
  const int m = 3;
  const std::int64_t total = 20;
  std::vector<std::vector<float>> elastic_x(m), plain_x(m);
  std::vector<std::string> errors(2 * m);
  auto grads = [](std::int64_t worker, std::int64_t step, const std::vector<float>& x, std::vector<float>& g) {
    const auto noise = dppf_test::random_vector<float>(n, static_cast<std::uint64_t>(1000 * worker + step), 0.1);
    const auto c = target(worker);
    for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]) + noise[i];
  };
  auto loss = [](std::int64_t worker, std::int64_t step) { return 1.0 + 0.1 * static_cast<double>((worker * 7 + step) % 5); };
  {
    fresh_dir dir;
    std::vector<std::thread> pool;
    for (int r = 0; r < m; ++r)
      pool.emplace_back([&, r] {
        try {
          auto group = std::make_shared<dppf::elastic_group>(dir.store(), m, fast());
          dppf::elastic_trainer<dppf::sgd, Rule, dppf::host_executor> tr(group, dppf::sgd({.lr = lr, .momentum = 0.9}), rule,
                                                                         dppf::host_executor{}, options);
          std::vector<float> x(n, 0.0f), g(n);
          tr.start(x);
          const int rank = group->rank();
          while (tr.steps() < total) {
            grads(rank, tr.steps(), x, g);
            tr.step(x, g, loss(rank, tr.steps()));
          }
          CHECK(tr.stats().members == m);
          tr.average(x);
          elastic_x[static_cast<std::size_t>(rank)] = x;
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(r)] = e.what();
        }
      });
    for (auto& t : pool) t.join();
  }
  {
    fresh_dir dir;
    std::vector<std::thread> pool;
    for (int r = 0; r < m; ++r)
      pool.emplace_back([&, r] {
        try {
          dppf::gloo_communicator comm(dir.store(), r, m, fast().gloo);
          dppf::trainer tr(dppf::sgd({.lr = lr, .momentum = 0.9}), rule, comm, dppf::host_executor{}, options);
          std::vector<float> x(n, 0.0f), g(n);
          while (tr.steps() < total) {
            grads(r, tr.steps(), x, g);
            tr.step(x, g, loss(r, tr.steps()));
          }
          tr.average(x);
          plain_x[static_cast<std::size_t>(r)] = x;
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(m + r)] = e.what();
        }
      });
    for (auto& t : pool) t.join();
  }
  for (auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
  for (int r = 0; r < m; ++r) {
    REQUIRE(elastic_x[static_cast<std::size_t>(r)].size() == n);
    CHECK(std::memcmp(elastic_x[static_cast<std::size_t>(r)].data(), plain_x[static_cast<std::size_t>(r)].data(), n * sizeof(float)) == 0);
  }
  CHECK(std::memcmp(plain_x[0].data(), plain_x[1].data(), n * sizeof(float)) == 0);
}

TEST_CASE("elastic_trainer with no fault gives the same bits as dppf::trainer over gloo_communicator, for every rule") {
  SUBCASE("data_parallel") { same_bits_as_plain_trainer(dppf::data_parallel{}); }
  SUBCASE("pull_push") { same_bits_as_plain_trainer(dppf::pull_push({.alpha = 0.3, .lambda = 0.02})); }
  SUBCASE("elastic (EASGD)") { same_bits_as_plain_trainer(dppf::elastic({.alpha = 0.2})); }
  SUBCASE("diloco") { same_bits_as_plain_trainer(dppf::diloco{}); }
  SUBCASE("leader (LSGD)") { same_bits_as_plain_trainer(dppf::leader{}); }
  SUBCASE("grawa") { same_bits_as_plain_trainer(dppf::grawa{}); }
}

TEST_CASE("elastic_trainer with a compressed sync and no fault gives the same bits as dppf::trainer over gloo_communicator") {
  SUBCASE("local_sgd, bf16") { same_bits_as_plain_trainer(dppf::local_sgd{}, {.tau = tau, .sync_precision = dppf::sync_precision::bf16}); }
  SUBCASE("pull_push, fp16") {
    same_bits_as_plain_trainer(dppf::pull_push({.alpha = 0.3, .lambda = 0.02}), {.tau = tau, .sync_precision = dppf::sync_precision::fp16});
  }
}

TEST_CASE("elastic_trainer with an overlapped sync and no fault gives the same bits as dppf::trainer over gloo_communicator") {
  SUBCASE("local_sgd, d = 1") { same_bits_as_plain_trainer(dppf::local_sgd{}, {.tau = tau, .overlap_steps = 1}); }
  SUBCASE("pull_push, d = 2") { same_bits_as_plain_trainer(dppf::pull_push({.alpha = 0.3, .lambda = 0.02}), {.tau = tau, .overlap_steps = 2}); }
  SUBCASE("local_sgd, d = 2, bf16") {
    same_bits_as_plain_trainer(dppf::local_sgd{}, {.tau = tau, .overlap_steps = 2, .sync_precision = dppf::sync_precision::bf16});
  }
}

// m founders train `total` steps with `options`, slowly enough that a newcomer started 600 ms in
// arrives mid-run; founder r dies right after step dies_after[r]. Checks that every other worker
// (the newcomer last) finished without error, with the same bits and the same membership history
// (a newcomer's from its first sync), and returns their outcomes.
std::vector<outcome> lose_and_admit(int m, std::int64_t total, const dppf::trainer_options& options,
                                    const std::map<int, std::int64_t>& dies_after) {
  fresh_dir dir;
  std::vector<outcome> out(static_cast<std::size_t>(m) + 1);
  std::vector<std::thread> pool;
  auto slow = [](std::int64_t) { return 30ms; };
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      std::function<bool(std::int64_t)> stop;
      if (auto it = dies_after.find(r); it != dies_after.end()) stop = [s_die = it->second](std::int64_t s) { return s == s_die; };
      worker(dir.store(), m, fast(), total, out[static_cast<std::size_t>(r)], stop, slow, false, {}, options);
    });
  std::this_thread::sleep_for(600ms);
  pool.emplace_back([&] { worker(dir.store(), m, fast(), total, out[static_cast<std::size_t>(m)], {}, slow, true, {}, options); });
  for (auto& t : pool) t.join();
  std::vector<outcome> alive;
  for (auto& o : out)
    if (!o.params.empty() || !o.error.empty()) alive.push_back(o);
  const int members = m - static_cast<int>(dies_after.size()) + 1;
  REQUIRE(alive.size() == static_cast<std::size_t>(members));
  for (auto& o : alive) REQUIRE_MESSAGE(o.error.empty(), o.error);
  for (auto& o : alive) {
    CHECK(std::memcmp(o.params.data(), alive[0].params.data(), n * sizeof(float)) == 0);
    CHECK(o.stats.members == members);
    for (const auto& [k, ids] : o.members_of_sync) CHECK(alive[0].members_of_sync.at(k) == ids);
  }
  REQUIRE(alive.back().steps_at_join > 0);  // the newcomer was let in
  CHECK(alive[0].members_of_sync.rbegin()->second.size() == static_cast<std::size_t>(members));
  return alive;
}

// An overlapped sync through two losses and a newcomer. One worker dies just before it would
// start sync 3: the others' all-reduce in flight fails (at test() or the wait), the sync is
// discarded on all of them and redone over the four survivors, blocking, from their snapshots.
// Another dies right after starting sync 5: its all-reduce may complete, the sync's commit
// fails and it is redone over three. A newcomer is let in at a sync's end. Against the
// double-precision reference of the delayed update over the same membership history.
TEST_CASE("elastic_trainer with an overlapped sync: workers lost in flight and a newcomer let in; all equal the delayed reference") {
  const std::int64_t d = 2, total = 11 * tau + d;
  const auto alive = lose_and_admit(5, total, {.tau = tau, .overlap_steps = d}, {{4, 3 * tau - 2}, {3, 5 * tau - 1}});
  const auto& history = alive[0].members_of_sync;
  // each loss takes one member from the sync it broke (the newcomer may come in between)
  CHECK(history.at(2).size() == 5);
  CHECK(history.at(3).size() == history.at(2).size() - 1);
  CHECK(history.at(5).size() == history.at(4).size() - 1);
  CHECK(alive[0].stats.overlapped_syncs >= 1);
  require_close(alive[0].params, ref::simulate_delayed(total, history, n, lr, tau, d), 1e-5);
}

// Both: the overlapped compressed sync's exchanges fail in flight or in the commit and are redone
// over the survivors in full precision (the state then starts again, as after a newcomer); the
// same bits everywhere, within bf16's rounding of the delayed reference.
TEST_CASE("elastic_trainer with an overlapped compressed sync: workers lost in flight and a newcomer let in; near the delayed reference") {
  const std::int64_t d = 2, total = 11 * tau + d;
  const auto alive = lose_and_admit(5, total, {.tau = tau, .overlap_steps = d, .sync_precision = dppf::sync_precision::bf16},
                                    {{4, 3 * tau - 2}, {3, 5 * tau - 1}});
  const auto& history = alive[0].members_of_sync;
  CHECK(history.at(3).size() == history.at(2).size() - 1);
  CHECK(history.at(5).size() == history.at(4).size() - 1);
  const double worst = ref::worst_error(alive[0].params, ref::simulate_delayed(total, history, n, lr, tau, d));
  INFO("worst relative error against the delayed exact-mean reference: " << worst);
  CHECK(worst <= 2e-3);
  CHECK(worst > 1e-6);  // some syncs were compressed
}

// A compressed sync through a loss (the survivors' sync fails in its exchanges, is discarded
// and redone over three) and a newcomer: the state starts again over each new generation on
// every member alike, so all finish with the same bits, within bf16's rounding of the reference
// (a stale chunk layout or reference would fail a collective or land far from it).
TEST_CASE("elastic_trainer with a compressed sync: a worker lost and a newcomer let in; all finish equal, near the reference") {
  const std::int64_t total = 36;
  const auto alive = lose_and_admit(4, total, {.tau = tau, .sync_precision = dppf::sync_precision::bf16}, {{3, 7}});
  const auto& history = alive[0].members_of_sync;
  CHECK(history.at(2).size() == 4);
  CHECK(history.at(3).size() == 3);  // the sync the dead worker missed ran over the survivors
  CHECK(alive[0].stats.generation >= 2);
  const double worst = ref::worst_error(alive[0].params, simulate(total, history));
  INFO("worst relative error against the exact-mean reference: " << worst);
  CHECK(worst <= 2e-3);
  CHECK(worst > 1e-6);  // the syncs were compressed: float's own rounding is below 1e-6
}

TEST_CASE("elastic_trainer: data_parallel averages each step's gradients over the current members, through a loss and a newcomer") {
  // Three founders; one dies after step 7; a newcomer comes mid-run. Every gradient average is a
  // committed operation, so the members' parameters stay equal to the bit (the newcomer gets the
  // seed's), and equal the double-precision run of x <- x - lr (x - mean of c_i over the members
  // of each step).
  fresh_dir dir;
  const int m = 3;
  const std::int64_t total = 40;
  std::vector<outcome> out(m + 1);
  std::vector<std::map<std::int64_t, std::vector<std::int64_t>>> members_of_step(m + 1);
  std::atomic<bool> died{false};
  auto run = [&](int slot, bool newcomer, std::int64_t die_after) {
    auto& o = out[static_cast<std::size_t>(slot)];
    try {
      auto group = std::make_shared<dppf::elastic_group>(dir.store(), m, fast());
      dppf::elastic_trainer<dppf::sgd, dppf::data_parallel, dppf::host_executor> tr(group, dppf::sgd({.lr = lr}), dppf::data_parallel{},
                                                                                     dppf::host_executor{});
      std::vector<float> x(n, 0.0f), g(n);
      tr.start(x);
      if (newcomer) {
        o.at_join = x;
        o.steps_at_join = tr.steps();
      }
      while (tr.steps() < total) {
        const auto c = target(group->id());
        for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
        const std::int64_t s = tr.steps();
        tr.step(x, g);
        members_of_step[static_cast<std::size_t>(slot)][s] = group->committed_members();
        if (s == die_after) {
          died = true;
          return;
        }
        std::this_thread::sleep_for(20ms);
      }
      o.params = x;
      o.stats = tr.stats();
    } catch (const std::exception& e) {
      o.error = e.what();
    }
  };
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r) pool.emplace_back([&, r] { run(r, false, r == 1 ? 7 : -1); });
  for (int i = 0; i < 1000 && !died; ++i) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  pool.emplace_back([&] { run(m, true, -1); });
  for (auto& t : pool) t.join();
  std::vector<int> finishers;
  for (int r = 0; r <= m; ++r)
    if (r != 1) {
      REQUIRE_MESSAGE(out[static_cast<std::size_t>(r)].error.empty(), out[static_cast<std::size_t>(r)].error);
      finishers.push_back(r);
    }
  const auto& newcomer = out[m];
  REQUIRE(newcomer.steps_at_join > 0);
  CHECK(newcomer.steps_at_join < total);
  for (int r : finishers) {
    CHECK(std::memcmp(out[static_cast<std::size_t>(r)].params.data(), out[0].params.data(), n * sizeof(float)) == 0);
    CHECK(out[static_cast<std::size_t>(r)].stats.members == m);  // two founders and the newcomer
  }
  // The reference: founder 0's record of who took part in each step's average.
  const auto& history = members_of_step[0];
  REQUIRE(static_cast<std::int64_t>(history.size()) == total);
  std::set<std::size_t> sizes;
  std::vector<double> x(n, 0.0);
  for (const auto& [step, ids] : history) {
    sizes.insert(ids.size());
    std::vector<double> mean_c(n, 0.0);
    for (auto id : ids) {
      const auto c = target(id);
      for (std::size_t i = 0; i < n; ++i) mean_c[i] += c[i] / static_cast<double>(ids.size());
    }
    if (step == newcomer.steps_at_join) require_close(newcomer.at_join, x, 1e-5);
    for (std::size_t i = 0; i < n; ++i) x[i] -= lr * (x[i] - mean_c[i]);
  }
  CHECK(sizes == std::set<std::size_t>{2, 3});  // three, then two, then three again
  require_close(out[0].params, x, 1e-5);
}

// EASGD's center and DiLoCo's global model, momentum and count are replicated: after a worker was
// lost and another let in, every finisher must hold the same bits of them (the newcomer's came
// from the seed), and of the final mean.
template <class Rule>
void replicated_state_survives(const Rule& rule) {
  fresh_dir dir;
  const int m = 3;
  const std::int64_t total = 45;
  std::vector<std::string> errors(m + 1);
  std::vector<std::vector<float>> final_x(m + 1), state(m + 1);
  std::vector<std::vector<std::int64_t>> counters(m + 1);
  std::vector<bool> finished(m + 1, false);
  auto run = [&](int slot, bool dies) {
    try {
      auto group = std::make_shared<dppf::elastic_group>(dir.store(), m, fast());
      dppf::elastic_trainer<dppf::sgd, Rule, dppf::host_executor> tr(group, dppf::sgd({.lr = lr}), rule, dppf::host_executor{},
                                                                     {.tau = tau});
      std::vector<float> x(n, 0.0f), g(n);
      tr.start(x);
      const auto c = target(group->id());
      while (tr.steps() < total) {
        for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
        tr.step(x, g, 1.0);
        if (dies && tr.steps() == 10) return;
        std::this_thread::sleep_for(20ms);
      }
      tr.average(x);
      final_x[static_cast<std::size_t>(slot)] = x;
      auto* ws = dppf::detail::trainer_access::workspace<float>(tr.inner());
      ws->rule_state.for_each_buffer([&](const char*, auto& b) { state[static_cast<std::size_t>(slot)].insert(state[static_cast<std::size_t>(slot)].end(), b.begin(), b.end()); });
      if constexpr (dppf::detail::has_counters<decltype(ws->rule_state)>)
        ws->rule_state.for_each_counter([&](const char*, std::int64_t& v) { counters[static_cast<std::size_t>(slot)].push_back(v); });
      CHECK(tr.stats().members == m);
      finished[static_cast<std::size_t>(slot)] = true;
    } catch (const std::exception& e) {
      errors[static_cast<std::size_t>(slot)] = e.what();
    }
  };
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r) pool.emplace_back(run, r, r == m - 1);
  std::this_thread::sleep_for(400ms);
  pool.emplace_back(run, m, false);
  for (auto& t : pool) t.join();
  for (auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
  std::vector<int> done;
  for (int k = 0; k <= m; ++k)
    if (finished[static_cast<std::size_t>(k)]) done.push_back(k);
  REQUIRE(done.size() == 3);
  CHECK(done.back() == m);  // the newcomer finished
  const auto& s0 = state[static_cast<std::size_t>(done[0])];
  REQUIRE_FALSE(s0.empty());
  for (int k : done) {
    const auto& s = state[static_cast<std::size_t>(k)];
    REQUIRE(s.size() == s0.size());
    CHECK(std::memcmp(s.data(), s0.data(), s.size() * sizeof(float)) == 0);
    CHECK(counters[static_cast<std::size_t>(k)] == counters[static_cast<std::size_t>(done[0])]);
    CHECK(std::memcmp(final_x[static_cast<std::size_t>(k)].data(), final_x[static_cast<std::size_t>(done[0])].data(), n * sizeof(float)) == 0);
  }
}

TEST_CASE("elastic_trainer: replicated rule state (EASGD, DiLoCo) stays identical across a loss and a newcomer") {
  SUBCASE("elastic (EASGD)") { replicated_state_survives(dppf::elastic({.alpha = 0.2})); }
  SUBCASE("diloco") { replicated_state_survives(dppf::diloco{}); }
}

TEST_CASE("elastic_trainer: a newcomer takes the seed's optimizer state and counters (from_peer) or keeps its own (fresh)") {
  for (const auto mode : {dppf::newcomer_state::from_peer, dppf::newcomer_state::fresh}) {
    CAPTURE(static_cast<int>(mode));
    fresh_dir dir;
    const int m = 2;
    const std::int64_t total = 30;
    std::vector<std::string> errors(m + 1);
    std::int64_t joined_at = -1, optimizer_step = -1;
    double momentum_norm = -1.0;
    std::vector<std::vector<float>> final_x(m + 1);
    auto run = [&](int slot, bool newcomer) {
      try {
        auto group = std::make_shared<dppf::elastic_group>(dir.store(), m, fast());
        dppf::elastic_trainer<dppf::sgd, dppf::local_sgd, dppf::host_executor> tr(
            group, dppf::sgd({.lr = lr, .momentum = 0.9}), dppf::local_sgd{}, dppf::host_executor{}, {.tau = tau}, {.state = mode});
        std::vector<float> x(n, 0.0f), g(n);
        tr.start(x);
        if (newcomer) {
          joined_at = tr.steps();
          auto& st = dppf::detail::trainer_access::workspace<float>(tr.inner())->optimizer_state;
          optimizer_step = st.step;
          momentum_norm = 0.0;
          for (float v : st.momentum_buffer) momentum_norm += double(v) * v;
        }
        const auto c = target(group->id());
        while (tr.steps() < total) {
          for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
          tr.step(x, g);
          std::this_thread::sleep_for(20ms);
        }
        tr.average(x);
        final_x[static_cast<std::size_t>(slot)] = x;
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(slot)] = e.what();
      }
    };
    std::vector<std::thread> pool;
    for (int r = 0; r < m; ++r) pool.emplace_back(run, r, false);
    std::this_thread::sleep_for(200ms);
    pool.emplace_back(run, m, true);
    for (auto& t : pool) t.join();
    for (auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
    REQUIRE(joined_at > 0);
    CHECK(joined_at < total);
    if (mode == dppf::newcomer_state::from_peer) {
      CHECK(optimizer_step == joined_at);  // SGD counts its steps: the seed's count
      CHECK(momentum_norm > 0.0);
    } else {
      CHECK(optimizer_step == 0);
      CHECK(momentum_norm == 0.0);
    }
    for (auto& x : final_x) CHECK(std::memcmp(x.data(), final_x[0].data(), n * sizeof(float)) == 0);
  }
}

// An elastic checkpoint is one file for the group: the members' mean parameters and rank 0's
// optimizer state, rule state and counters, with the generation and member count. Saved by the
// two survivors of three (generation 1), resumed by three workers: every one of them must hold
// exactly those tensors and counters, then train on to the same bits.
TEST_CASE("elastic checkpoint: records generation and members; another member count resumes from the mean and rank 0's state") {
  using easgd_t = dppf::elastic_trainer<dppf::sgd, dppf::elastic, dppf::host_executor>;
  const auto state_of = [](easgd_t& tr) {
    auto* ws = dppf::detail::trainer_access::workspace<float>(tr.inner());
    REQUIRE(ws != nullptr);
    std::vector<float> center;
    ws->rule_state.for_each_buffer([&](const char*, auto& b) { center.insert(center.end(), b.begin(), b.end()); });
    return std::pair{ws->optimizer_state.momentum_buffer, center};
  };
  const auto make = [](const dppf::gloo_store& store, int founders) {
    auto group = std::make_shared<dppf::elastic_group>(store, founders, fast());
    return std::pair{group, std::make_unique<easgd_t>(group, dppf::sgd({.lr = lr, .momentum = 0.9}), dppf::elastic({.alpha = 0.2}),
                                                      dppf::host_executor{}, dppf::trainer_options{.tau = tau})};
  };
  fresh_dir dir;
  const auto path = std::filesystem::path(dir.path) / "group.safetensors";
  const std::int64_t saved_at = 9;

  // 1. Three workers; one is lost after step 2, the other two save at step 9 (right after a sync).
  std::vector<std::vector<float>> x_saved(2), momentum_saved(2), center_saved(2);
  std::vector<std::string> errors(3);
  std::vector<dppf::elastic_checkpoint_info> infos(2);
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < 3; ++t)
      pool.emplace_back([&, t] {
        try {
          auto [group, tr] = make(dir.store(), 3);
          std::vector<float> x(n, 0.0f), g(n);
          tr->start(x);
          const auto c = target(group->id());
          while (tr->steps() < saved_at) {
            for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
            tr->step(x, g, 1.0);
            if (t == 2 && tr->steps() == 2) return;  // lost
          }
          const int r = group->rank();
          x_saved[static_cast<std::size_t>(r)] = x;
          std::tie(momentum_saved[static_cast<std::size_t>(r)], center_saved[static_cast<std::size_t>(r)]) = state_of(*tr);
          infos[static_cast<std::size_t>(r)] = dppf::save_elastic(path, *tr, x);
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(t)] = e.what();
        }
      });
    for (auto& t : pool) t.join();
  }
  for (auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
  for (const auto& info : infos) {
    CHECK(info.generation == 1);
    CHECK(info.members == 2);
  }
  const dppf::safetensors file = dppf::safetensors::load(path);
  const auto info = dppf::elastic_checkpoint_of(file);
  CHECK(info.generation == 1);
  CHECK(info.members == 2);
  std::vector<float> file_x(n);
  file.read("params", std::span<float>(file_x));
  std::vector<double> mean(n);
  for (std::size_t i = 0; i < n; ++i) mean[i] = (double(x_saved[0][i]) + double(x_saved[1][i])) / 2.0;
  require_close(file_x, mean, 1e-6);
  CHECK(std::memcmp(x_saved[0].data(), x_saved[1].data(), n * sizeof(float)) != 0);  // the mean is not a copy of one
  CHECK(std::memcmp(center_saved[0].data(), center_saved[1].data(), center_saved[0].size() * sizeof(float)) == 0);

  // 2. Three workers resume from it on a fresh store.
  fresh_dir again;
  std::vector<std::vector<float>> final_x(3);
  std::vector<std::string> resume_errors(3);
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < 3; ++t)
      pool.emplace_back([&, t] {
        try {
          auto [group, tr] = make(again.store(), 3);
          std::vector<float> x(n, 0.0f), g(n);
          tr->start(x);
          const auto got = dppf::load_elastic(dppf::safetensors::load(path), *tr, x);
          CHECK(got.generation == 1);
          CHECK(got.members == 2);
          CHECK(std::memcmp(x.data(), file_x.data(), n * sizeof(float)) == 0);
          const auto [momentum, center] = state_of(*tr);
          REQUIRE(momentum.size() == n);
          CHECK(std::memcmp(momentum.data(), momentum_saved[0].data(), n * sizeof(float)) == 0);  // rank 0's
          CHECK(std::memcmp(center.data(), center_saved[0].data(), center.size() * sizeof(float)) == 0);
          CHECK(tr->steps() == saved_at);
          CHECK(tr->syncs() == saved_at / tau);
          const auto c = target(group->id());
          while (tr->steps() < saved_at + 2 * tau) {
            for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
            tr->step(x, g, 1.0);
          }
          tr->average(x);
          final_x[static_cast<std::size_t>(t)] = x;
        } catch (const std::exception& e) {
          resume_errors[static_cast<std::size_t>(t)] = e.what();
        }
      });
    for (auto& t : pool) t.join();
  }
  for (auto& e : resume_errors) REQUIRE_MESSAGE(e.empty(), e);
  CHECK(std::memcmp(momentum_saved[0].data(), momentum_saved[1].data(), n * sizeof(float)) != 0);  // rank 0's, not any
  for (auto& x : final_x) CHECK(std::memcmp(x.data(), final_x[0].data(), n * sizeof(float)) == 0);

  // 3. A plain trainer's checkpoint is refused by name.
  dppf::safetensors plain = file;
  plain.set_metadata("dppf.checkpoint", "trainer 1");
  dppf_test::check_throws_with<dppf::checkpoint_error>([&] { (void)dppf::elastic_checkpoint_of(plain); }, "not an elastic checkpoint");
}

// An elastic checkpoint holds none of the saving member's own sync state: a compressed sync's
// (its chunks and residuals are the saver's, over two members) and an overlapped sync in flight
// (the save is right after a sync's start). Three members resume from it, start a compressed
// state again from the loaded mean, and train on alike.
void resumed_without_own_sync_state(const dppf::trainer_options& options) {
  const auto run = [&](const dppf::gloo_store& store, int m, std::int64_t until, const std::function<void(trainer_t&, std::vector<float>&)>& begin,
                       const std::function<void(trainer_t&, std::vector<float>&)>& end) {
    std::vector<std::string> errors(static_cast<std::size_t>(m));
    std::vector<std::thread> pool;
    for (int t = 0; t < m; ++t)
      pool.emplace_back([&, t] {
        try {
          auto group = std::make_shared<dppf::elastic_group>(store, m, fast());
          trainer_t tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{}, dppf::host_executor{}, options);
          std::vector<float> x(n, 0.0f), g(n);
          tr.start(x);
          if (begin) begin(tr, x);
          const auto c = target(group->id());
          while (tr.steps() < until) {
            for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
            tr.step(x, g, 1.0);
          }
          end(tr, x);
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(t)] = e.what();
        }
      });
    for (auto& t : pool) t.join();
    for (auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
  };
  fresh_dir dir;
  const auto path = std::filesystem::path(dir.path) / "group.safetensors";
  const std::int64_t saved_at = 2 * tau;
  run(dir.store(), 2, saved_at, {}, [&](trainer_t& tr, std::vector<float>& x) {
    auto* ws = dppf::detail::trainer_access::workspace<float>(tr.inner());
    REQUIRE(ws != nullptr);
    // the live trainer has it; the file must not
    if (options.sync_precision != dppf::sync_precision::full) REQUIRE(ws->compressed.has_value());
    if (options.overlap_steps > 0) REQUIRE(ws->pending.has_value());
    (void)dppf::save_elastic(path, tr, x);
  });
  const dppf::safetensors file = dppf::safetensors::load(path);
  CHECK_FALSE(file.contains("compressed.values"));
  CHECK_FALSE(file.contains("overlap.snapshot"));
  CHECK_FALSE(file.metadata().contains("dppf.sync_precision"));
  std::vector<float> file_x(n);
  file.read("params", std::span<float>(file_x));

  fresh_dir again;
  std::vector<std::vector<float>> final_x(3);
  std::mutex lock;
  run(
      again.store(), 3, saved_at + 3 * tau,
      [&](trainer_t& tr, std::vector<float>& x) {
        (void)dppf::load_elastic(dppf::safetensors::load(path), tr, x);
        CHECK(std::memcmp(x.data(), file_x.data(), n * sizeof(float)) == 0);
        auto* ws = dppf::detail::trainer_access::workspace<float>(tr.inner());
        REQUIRE(ws != nullptr);
        CHECK_FALSE(ws->pending.has_value());
        if (options.sync_precision == dppf::sync_precision::full) return;
        REQUIRE(ws->compressed.has_value());
        // started again from the loaded mean, every member alike: r = x, no residual
        CHECK(std::memcmp(ws->compressed->reference().data(), file_x.data(), n * sizeof(float)) == 0);
        CHECK(std::ranges::all_of(ws->compressed->residual(), [](float e) { return e == 0.0f; }));
      },
      [&](trainer_t& tr, std::vector<float>& x) {
        // overlapped: the sync in flight at the save was dropped, and the last one is still in flight
        const std::int64_t syncs = options.overlap_steps > 0 ? saved_at / tau - 1 + 2 : saved_at / tau + 3;
        CHECK(tr.syncs() == syncs);
        tr.average(x);
        const std::lock_guard hold(lock);
        final_x[static_cast<std::size_t>(tr.group().rank())] = x;
      });
  for (auto& x : final_x) {
    REQUIRE(x.size() == n);
    CHECK(std::memcmp(x.data(), final_x[0].data(), n * sizeof(float)) == 0);
  }
}

TEST_CASE("elastic checkpoint without the saver's own sync state: compressed, or with a sync in flight; resumed by another member count") {
  SUBCASE("bf16") { resumed_without_own_sync_state({.tau = tau, .sync_precision = dppf::sync_precision::bf16}); }
  SUBCASE("overlapped, d = 1") { resumed_without_own_sync_state({.tau = tau, .overlap_steps = 1}); }
}
