// One worker of an elastic group across emulated hosts (tests/cluster/elastic_cluster.sh).
//
//   elastic_probe train <out dir>     trains LocalSGD on f_id(x) = |x - c_id|^2 / 2 (the reference
//       of tests/elastic_reference.hpp). Environment: DPPF_ELASTIC_STORE (redis:<host>:<port> or
//       file:<dir>), DPPF_ELASTIC_PREFIX, DPPF_GLOO_ADDR (this host), FOUNDERS, STEPS, TAU,
//       STEP_MS (a sleep per step, so faults land mid-run), TIMEOUT_MS, MIN_WORKERS. Prints every
//       membership change with the wall-clock time in ms; writes <out>/params.<id> (the final mean,
//       raw floats), <out>/history.<id> ("sync ids..." lines) and, for a newcomer,
//       <out>/joined.<id> (its parameters when let in) and <out>/joined_history.<id>.
//       Exits 0, or 3 with the error (quorum lost, store unreachable, ...).
//   elastic_probe check <params file> <history file> [joined step]   compares the parameters with
//       the double-precision simulation of the history (STEPS, TAU as above), or with the mean of
//       the sync after which a newcomer was let in at `joined step`; exits 1 beyond 1e-5.
#include <dppf/elastic/trainer.hpp>
#include <dppf/dppf.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../elastic_reference.hpp"

namespace {

constexpr std::size_t n = 1000;
constexpr double lr = 0.05;

long env(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v ? std::atol(v) : fallback;
}

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void write_floats(const std::string& path, const std::vector<float>& x) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
}

void write_history(const std::string& path, const dppf_test::elastic::history& h) {
  std::ofstream out(path);
  for (const auto& [k, ids] : h) {
    out << k;
    for (auto id : ids) out << ' ' << id;
    out << '\n';
  }
}

dppf_test::elastic::history read_history(const std::string& path) {
  dppf_test::elastic::history h;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::int64_t k = 0, id = 0;
    s >> k;
    while (s >> id) h[k].push_back(id);
  }
  return h;
}

int train(const std::string& dir) {
  const char* store_s = std::getenv("DPPF_ELASTIC_STORE");
  const char* prefix = std::getenv("DPPF_ELASTIC_PREFIX");
  const char* addr = std::getenv("DPPF_GLOO_ADDR");
  if (!store_s || !prefix || !addr) {
    std::fprintf(stderr, "elastic_probe: set DPPF_ELASTIC_STORE, DPPF_ELASTIC_PREFIX, DPPF_GLOO_ADDR\n");
    return 2;
  }
  dppf::gloo_store store{.file_dir = {}, .redis_host = {}, .redis_port = 6379, .prefix = prefix};
  const std::string spec = store_s;
  if (spec.rfind("file:", 0) == 0) {
    store.file_dir = spec.substr(5);
  } else {
    const auto colon = spec.rfind(':');
    store.redis_host = spec.substr(6, colon - 6);
    store.redis_port = std::atoi(spec.c_str() + colon + 1);
  }
  const long steps = env("STEPS", 120), tau = env("TAU", 4), step_ms = env("STEP_MS", 40);
  dppf::elastic_group_options options;
  options.gloo = {.timeout = std::chrono::milliseconds(env("TIMEOUT_MS", 2000)), .address = addr, .iface = {}, .check_arguments = true};
  options.min_workers = static_cast<int>(env("MIN_WORKERS", 0));
  options.admit_timeout = std::chrono::seconds(30);
  options.on_change = [](const std::string& line) {
    std::printf("[%lld] %s\n", now_ms(), line.c_str());
    std::fflush(stdout);
  };
  std::int64_t id = -1;
  try {
    auto group = std::make_shared<dppf::elastic_group>(store, static_cast<int>(env("FOUNDERS", 4)), options);
    dppf::elastic_trainer<dppf::sgd, dppf::local_sgd, dppf::host_executor> tr(group, dppf::sgd({.lr = lr}), dppf::local_sgd{},
                                                                              dppf::host_executor{}, {.tau = tau});
    std::vector<float> x(n, 0.0f), g(n);
    tr.start(x);
    id = group->id();  // final once in (a newcomer may have given up a member's id)
    dppf_test::elastic::history h;
    if (tr.steps() > 0) {  // let in mid-run: what it got, and the history up to then
      write_floats(dir + "/joined." + std::to_string(id), x);
      std::printf("[%lld] elastic worker %lld: let in at step %lld\n", now_ms(), static_cast<long long>(id),
                  static_cast<long long>(tr.steps()));
    }
    while (tr.steps() < steps) {
      const auto c = dppf_test::elastic::target(group->id(), n);
      for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(x[i] - c[i]);
      const auto syncs = tr.syncs();
      tr.step(x, g);
      if (tr.syncs() > syncs) h[tr.syncs()] = group->committed_members();
      std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    }
    tr.average(x);
    write_floats(dir + "/params." + std::to_string(id), x);
    write_history(dir + "/history." + std::to_string(id), h);
    const auto s = tr.stats();
    std::printf("[%lld] elastic worker %lld: finished %lld steps, %lld syncs, in generation %lld of %d workers\n", now_ms(),
                static_cast<long long>(id), static_cast<long long>(s.steps), static_cast<long long>(s.syncs),
                static_cast<long long>(s.generation), s.members);
  } catch (const std::exception& e) {
    std::printf("[%lld] elastic worker %lld: stopped: %s\n", now_ms(), static_cast<long long>(id), e.what());
    return 3;
  }
  return 0;
}

int check(const std::string& params, const std::string& history, long joined_at) {
  const bool joined = joined_at >= 0;
  std::ifstream in(params, std::ios::binary);
  std::vector<float> x(n);
  in.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(n * sizeof(float)));
  if (!in) {
    std::fprintf(stderr, "check: cannot read %s\n", params.c_str());
    return 1;
  }
  auto h = read_history(history);
  if (h.empty()) {
    std::fprintf(stderr, "check: no history in %s\n", history.c_str());
    return 1;
  }
  const long tau = env("TAU", 4);
  std::int64_t total = env("STEPS", 120);
  if (joined) {  // the newcomer was let in after sync k: its parameters are that sync's mean
    const long at = joined_at;
    total = at;
    for (auto it = h.begin(); it != h.end();) it = it->first > at / tau + 1 ? h.erase(it) : std::next(it);
  }
  std::size_t at = 0;
  const double worst = dppf_test::elastic::worst_error(x, dppf_test::elastic::simulate(total, h, n, lr, tau), &at);
  std::printf("check: %s %s: worst relative error %.3g (element %zu) against the simulation of %zu syncs\n", params.c_str(),
              joined ? "when let in" : "at the end", worst, at, h.size());
  return worst <= 1e-5 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "train" && argc > 2) return train(argv[2]);
  if (mode == "check" && argc > 3) return check(argv[2], argv[3], argc > 4 ? std::atol(argv[4]) : -1);
  std::fprintf(stderr, "usage: elastic_probe train <out dir> | check <params> <history> [joined step]\n");
  return 2;
}
