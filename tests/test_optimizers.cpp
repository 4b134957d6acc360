// Local optimizers (dppf::sgd, dppf::adamw) and learning-rate schedules against PyTorch.
//
// tests/data/optim_reference.bin holds trajectories of torch.optim.SGD / torch.optim.AdamW
// (foreach=False) and values of torch.optim.lr_scheduler, made by tools/make_reference.py (see its
// header for the format and how to regenerate; CI never needs PyTorch). Every step of every
// trajectory is compared element by element, for host and host_parallel, float and double.

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "support.hpp"
#include <dppf/optimizers/adamw.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/optimizers/schedule.hpp>
#include <dppf/optimizers/sgd.hpp>

namespace {

// ---------------------------------------------------------------------------------------------
// The reference file: text header lines, little-endian arrays (format in tools/make_reference.py).

struct ref_array {
  std::string dtype;  // "f32" or "f64"
  std::size_t rows = 0, cols = 0;
  std::vector<double> values;  // decoded, row-major (f32 values are exact in double)
};

struct reference_data {
  std::map<std::string, std::map<std::string, std::string>> options;
  std::map<std::string, ref_array> arrays;

  const ref_array& array(const std::string& name) const {
    const auto it = arrays.find(name);
    if (it == arrays.end()) throw std::runtime_error("reference data has no array " + name);
    return it->second;
  }
  // An array of element type T (its stored dtype must be T's), converted exactly.
  template <class T>
  std::vector<T> values(const std::string& name) const {
    const ref_array& a = array(name);
    if (a.dtype != (std::is_same_v<T, float> ? "f32" : "f64"))
      throw std::runtime_error("reference array " + name + " has dtype " + a.dtype);
    return std::vector<T>(a.values.begin(), a.values.end());
  }
  const std::map<std::string, std::string>& option_set(const std::string& name) const {
    const auto it = options.find(name);
    if (it == options.end()) throw std::runtime_error("reference data has no option set " + name);
    return it->second;
  }
};

template <class U>
U read_le(const unsigned char* p) {
  U u = 0;
  for (std::size_t b = 0; b < sizeof(U); ++b) u |= static_cast<U>(p[b]) << (8 * b);
  return u;
}

reference_data load_reference(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  reference_data data;
  std::size_t pos = 0;
  const auto next_line = [&] {
    const std::size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) throw std::runtime_error(path + ": truncated header line");
    std::string line = bytes.substr(pos, end - pos);
    pos = end + 1;
    return line;
  };
  if (next_line() != "dppf-optim-reference 1") throw std::runtime_error(path + ": not a dppf reference file");
  for (;;) {
    std::istringstream line(next_line());
    std::string kind, name;
    line >> kind;
    if (kind == "end") break;
    line >> name;
    if (kind == "options") {
      auto& kv = data.options[name];
      for (std::string item; line >> item;) {
        const auto eq = item.find('=');
        kv[item.substr(0, eq)] = item.substr(eq + 1);
      }
    } else if (kind == "array") {
      ref_array a;
      line >> a.dtype >> a.rows >> a.cols;
      const std::size_t width = a.dtype == "f32" ? 4 : 8;
      const std::size_t count = a.rows * a.cols;
      if (!line || (a.dtype != "f32" && a.dtype != "f64") || pos + count * width > bytes.size())
        throw std::runtime_error(path + ": bad array record " + name);
      const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + pos);
      a.values.resize(count);
      for (std::size_t i = 0; i < count; ++i)
        a.values[i] = width == 4 ? std::bit_cast<float>(read_le<std::uint32_t>(p + 4 * i))
                                 : std::bit_cast<double>(read_le<std::uint64_t>(p + 8 * i));
      pos += count * width;
      data.arrays.emplace(name, std::move(a));
    } else {
      throw std::runtime_error(path + ": unknown record " + kind);
    }
  }
  return data;
}

const reference_data& reference() {
  static const reference_data data = load_reference(DPPF_TEST_DATA_DIR "/optim_reference.bin");
  return data;
}

double number(const std::map<std::string, std::string>& o, const std::string& key) {
  return std::stod(o.at(key));
}
bool flag(const std::map<std::string, std::string>& o, const std::string& key) {
  return o.at(key) == "true";
}

dppf::sgd_options sgd_options_of(const std::map<std::string, std::string>& o) {
  return {.lr = number(o, "lr"),
          .momentum = number(o, "momentum"),
          .dampening = number(o, "dampening"),
          .weight_decay = number(o, "weight_decay"),
          .nesterov = flag(o, "nesterov"),
          .maximize = flag(o, "maximize")};
}
dppf::adamw_options adamw_options_of(const std::map<std::string, std::string>& o) {
  return {.lr = number(o, "lr"),
          .beta1 = number(o, "beta1"),
          .beta2 = number(o, "beta2"),
          .eps = number(o, "eps"),
          .weight_decay = number(o, "weight_decay"),
          .amsgrad = flag(o, "amsgrad"),
          .maximize = flag(o, "maximize")};
}

// The per-step learning rate of option sets with a schedule: the same schedules as lr_at() in
// tools/make_reference.py, here built from dppf's callables.
std::function<double(std::int64_t)> schedule_of(const std::map<std::string, std::string>& o, std::int64_t steps) {
  const auto it = o.find("schedule");
  if (it == o.end()) return {};
  const double lr = number(o, "lr");
  if (it->second == "cosine") return dppf::cosine_lr{.lr = lr, .total_steps = steps, .min_lr = 0.0};
  if (it->second == "warmup_cosine")
    return dppf::warmup<dppf::cosine_lr>{
        .steps = 20, .then = {.lr = lr, .total_steps = steps - 20, .min_lr = 1e-4}, .start_factor = 0.1};
  throw std::runtime_error("unknown schedule " + it->second);
}

const std::vector<std::string> sgd_sets = {"sgd_plain",
                                           "sgd_weight_decay",
                                           "sgd_maximize",
                                           "sgd_momentum",
                                           "sgd_momentum_dampening_wd",
                                           "sgd_nesterov_wd",
                                           "sgd_nesterov_maximize",
                                           "sgd_momentum_cosine"};
const std::vector<std::string> adamw_sets = {"adamw_default",     "adamw_no_decay",
                                             "adamw_weight_decay", "adamw_amsgrad",
                                             "adamw_maximize",    "adamw_betas_eps",
                                             "adamw_amsgrad_maximize_betas", "adamw_beta1_zero",
                                             "adamw_warmup_cosine"};

// ---------------------------------------------------------------------------------------------
// Tolerance of the PyTorch comparison.
//
// Both sides do the same operations in the same order with the same scalars rounded to T, but
// not always with the same roundings: PyTorch's vectorized CPU kernels (AVX2 here) evaluate
// `a.add(b, alpha=s)` -- the weight-decay term, the momentum and first-moment updates, the final
// `p.add_(d, alpha=-lr)` -- as one fused multiply-add, while our functors round the product and
// the sum separately (unless the compiler contracts them: g++ -march=haswell, nvcc by default).
// Each difference is within an ulp or so of the values involved, but it is fed back through the
// parameters and the state (momentum multiplies it by up to 1/(1 - momentum) = 10) over 120
// steps. Measured maximum of |ours - torch| / max(1, |torch|) (the parameters start as N(0, 1),
// so 1 is the parameter scale), over all option sets, both executors, all steps and elements:
//   default g++ -O3 (no FMA):      float 1.9e-6 (sgd momentum),  double 2.5e-15
//   g++ -O3 -march=haswell (FMA):  float 3.5e-6 (sgd nesterov),  double 3.8e-15
// (with FMA contraction SGD without momentum matches PyTorch bit for bit, which confirms the
// cause; AdamW stays within 2e-7 / 5e-16). The bounds are about 3 to 5 times the worst of
// these: far below any semantic slip (a wrong first-step rule, bias correction, decay order or
// sign moves the parameters by 1e-4 or more within a few steps).
template <class T>
constexpr double trajectory_tolerance = std::is_same_v<T, float> ? 1e-5 : 2e-14;

// How far a run is from the reference: the largest |ours - torch| / max(1, |torch|) and where.
struct deviation {
  double worst = 0.0;
  std::size_t step = 0, index = 0;
  double ours = 0.0, torch = 0.0;
  bool replicas_identical = true;
};

// Runs `opt` for every stored step on `replicas` copies of the reference problem side by side
// (enough elements for host_parallel to split the work between threads) and compares every
// element of every copy after every step.
template <class T, class Opt, class E>
deviation run_against_torch(const Opt& proto, const E& ex, const std::string& set, std::size_t replicas,
                            const std::function<double(std::int64_t)>& schedule,
                            std::vector<std::vector<T>>* trajectory = nullptr) {
  const reference_data& ref = reference();
  const std::string tag = std::is_same_v<T, float> ? "f32/" : "f64/";
  const std::vector<T> init = ref.values<T>(tag + "init");
  const std::vector<T> grads = ref.values<T>(tag + "grads");
  const std::vector<T> expected = ref.values<T>(tag + set);
  const std::size_t n = init.size();
  const std::size_t steps = ref.array(tag + set).rows;
  REQUIRE(ref.array(tag + set).cols == n);
  REQUIRE(ref.array(tag + "grads").rows == steps);
  REQUIRE(steps >= 100);
  std::vector<double> torch_lrs;
  if (schedule) {
    torch_lrs = ref.array(tag + set + "/lr").values;
    REQUIRE(torch_lrs.size() == steps);
  }

  Opt opt = proto;
  std::vector<T> params(n * replicas), g(n * replicas);
  for (std::size_t r = 0; r < replicas; ++r) std::copy(init.begin(), init.end(), params.begin() + r * n);
  auto state = opt.init(ex, params);
  deviation dev;
  for (std::size_t t = 0; t < steps; ++t) {
    if (schedule) {
      const double lr = schedule(static_cast<std::int64_t>(t));
      // dppf's closed form and the rate PyTorch was given come from the same expression.
      CHECK(std::abs(lr - torch_lrs[t]) <= 1e-15 * proto.lr());
      opt.set_lr(lr);
    }
    for (std::size_t r = 0; r < replicas; ++r)
      std::copy(grads.begin() + t * n, grads.begin() + (t + 1) * n, g.begin() + r * n);
    opt.step(ex, params, g, state);
    for (std::size_t r = 0; r < replicas; ++r) {
      for (std::size_t i = 0; i < n; ++i) {
        const double ours = params[r * n + i], torch = expected[t * n + i];
        const double err = std::abs(ours - torch) / std::max(1.0, std::abs(torch));
        if (!(err <= dev.worst)) dev = {err, t, i, ours, torch, dev.replicas_identical};
        if (r > 0 && std::memcmp(&params[r * n + i], &params[i], sizeof(T)) != 0) dev.replicas_identical = false;
      }
    }
    if (trajectory) trajectory->push_back(params);
  }
  CHECK(state.step == static_cast<std::int64_t>(steps));
  return dev;
}

template <class T, class Opt>
void check_against_torch(const std::vector<std::string>& sets,
                         typename Opt::options_type (*make)(const std::map<std::string, std::string>&)) {
  const reference_data& ref = reference();
  for (const std::string& set : sets) {
    const auto& o = ref.option_set(set);
    const Opt opt{make(o)};
    const auto schedule = schedule_of(o, static_cast<std::int64_t>(number(ref.option_set("meta"), "steps")));
    const auto check = [&](const std::string& executor, const deviation& dev) {
      INFO("option set " << set << ", " << executor << ", " << (std::is_same_v<T, float> ? "float" : "double"));
      INFO("worst at step " << dev.step << ", element " << dev.index << ": dppf " << dev.ours << ", torch "
                            << dev.torch << ", scaled error " << dev.worst);
      CHECK(dev.worst <= trajectory_tolerance<T>);
      CHECK(dev.replicas_identical);
    };
    std::vector<std::vector<T>> on_host, on_parallel;
    // 1000 copies of 37 elements: above host_parallel's serial threshold, split over 3 threads.
    check("host", run_against_torch<T>(opt, dppf::host_executor{}, set, 1000, schedule, &on_host));
    check("host_parallel", run_against_torch<T>(opt, dppf::host_parallel_executor{.threads = 3}, set, 1000, schedule,
                                                &on_parallel));
    INFO("option set " << set);
    REQUIRE(on_host.size() == on_parallel.size());
    bool identical = true;
    for (std::size_t t = 0; t < on_host.size(); ++t)
      identical = identical && std::memcmp(on_host[t].data(), on_parallel[t].data(), on_host[t].size() * sizeof(T)) == 0;
    CHECK_MESSAGE(identical, "host and host_parallel trajectories differ");
  }
}

dppf::sgd_options sgd_make(const std::map<std::string, std::string>& o) { return sgd_options_of(o); }
dppf::adamw_options adamw_make(const std::map<std::string, std::string>& o) { return adamw_options_of(o); }

// Runs f and checks that it throws E whose message contains every needle.
template <class E = std::invalid_argument, class F>
void check_throws_with(F&& f, std::initializer_list<std::string_view> needles) {
  bool thrown = false;
  try {
    f();
  } catch (const E& e) {
    thrown = true;
    const std::string what = e.what();
    INFO("message: " << what);
    for (std::string_view needle : needles) CHECK(what.find(needle) != std::string::npos);
  }
  CHECK_MESSAGE(thrown, "expected an exception mentioning '" << *needles.begin() << "'");
}

using dppf_test::random_vector;

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("reference data is complete") {
  const reference_data& ref = reference();
  const auto& meta = ref.option_set("meta");
  const std::size_t n = static_cast<std::size_t>(number(meta, "n"));
  const std::size_t steps = static_cast<std::size_t>(number(meta, "steps"));
  CHECK(steps >= 100);
  for (const char* tag : {"f32/", "f64/"}) {
    CHECK(ref.array(std::string(tag) + "init").cols == n);
    CHECK(ref.array(std::string(tag) + "grads").rows == steps);
    for (const auto* sets : {&sgd_sets, &adamw_sets})
      for (const auto& set : *sets) {
        CAPTURE(set);
        CHECK(ref.array(tag + set).rows == steps);
        CHECK(ref.array(tag + set).cols == n);
      }
  }
  // Every option set the generator wrote is exercised here (none silently skipped).
  std::size_t optimizer_sets = 0;
  for (const auto& [name, kv] : ref.options)
    if (name.starts_with("sgd_") || name.starts_with("adamw_")) ++optimizer_sets;
  CHECK(optimizer_sets == sgd_sets.size() + adamw_sets.size());
}

TEST_CASE("sgd matches torch.optim.SGD step by step") {
  SUBCASE("float") { check_against_torch<float, dppf::sgd>(sgd_sets, &sgd_make); }
  SUBCASE("double") { check_against_torch<double, dppf::sgd>(sgd_sets, &sgd_make); }
}

TEST_CASE("adamw matches torch.optim.AdamW step by step") {
  SUBCASE("float") { check_against_torch<float, dppf::adamw>(adamw_sets, &adamw_make); }
  SUBCASE("double") { check_against_torch<double, dppf::adamw>(adamw_sets, &adamw_make); }
}

// ---------------------------------------------------------------------------------------------
// Determinism across executors, on fresh random data large enough to be split between threads.

TEST_CASE("sgd and adamw give bitwise-identical trajectories on host and host_parallel") {
  constexpr std::size_t n = 100003;  // not a multiple of any block size
  const auto inputs = [&](auto zero) {
    using T = decltype(zero);
    std::vector<std::vector<T>> v{random_vector<T>(n, 11)};
    for (std::uint64_t t = 0; t < 4; ++t) v.push_back(random_vector<T>(n, 100 + t, 0.5));
    return v;
  };
  const auto f_inputs = inputs(0.0f);
  const auto d_inputs = inputs(0.0);
  const auto run = [&](const auto& opt, const auto& ex, const auto& in) {
    using T = typename std::decay_t<decltype(in)>::value_type::value_type;
    std::vector<T> p = in[0];
    auto state = opt.init(ex, p);
    for (std::size_t t = 1; t < in.size(); ++t) opt.step(ex, p, in[t], state);
    std::vector<std::vector<T>> out{p};
    state.for_each_buffer([&](std::string_view, const auto& b) { out.emplace_back(b.begin(), b.end()); });
    return out;
  };
  const auto same = [&](const auto& opt, const std::string& set) {
    for (int threads : {2, 3}) {
      CAPTURE(set);
      CAPTURE(threads);
      const dppf::host_parallel_executor par{.threads = threads};
      const auto f_host = run(opt, dppf::host_executor{}, f_inputs), f_par = run(opt, par, f_inputs);
      const auto d_host = run(opt, dppf::host_executor{}, d_inputs), d_par = run(opt, par, d_inputs);
      REQUIRE(f_host.size() == f_par.size());
      REQUIRE(d_host.size() == d_par.size());
      for (std::size_t b = 0; b < f_host.size(); ++b) {
        CHECK(std::memcmp(f_host[b].data(), f_par[b].data(), n * sizeof(float)) == 0);
        CHECK(std::memcmp(d_host[b].data(), d_par[b].data(), n * sizeof(double)) == 0);
      }
    }
  };
  const reference_data& ref = reference();
  for (const auto& set : sgd_sets) same(dppf::sgd{sgd_options_of(ref.option_set(set))}, set);
  for (const auto& set : adamw_sets) same(dppf::adamw{adamw_options_of(ref.option_set(set))}, set);
}

// ---------------------------------------------------------------------------------------------
// Option validation: std::invalid_argument naming the optimizer, the field and the bad value.

TEST_CASE("sgd options are validated at construction") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  check_throws_with([] { dppf::sgd{{.lr = -0.1}}; }, {"sgd: lr must be >= 0", "-0.1"});
  check_throws_with([&] { dppf::sgd{{.lr = nan}}; }, {"sgd: lr must be >= 0", "nan"});
  check_throws_with([] { dppf::sgd{{.momentum = -0.5}}; }, {"sgd: momentum must be >= 0", "-0.5"});
  check_throws_with([] { dppf::sgd{{.momentum = 0.9, .dampening = 1.5}}; }, {"sgd: dampening", "1.5"});
  check_throws_with([] { dppf::sgd{{.momentum = 0.9, .dampening = -0.1}}; }, {"sgd: dampening", "-0.1"});
  check_throws_with([] { dppf::sgd{{.weight_decay = -1e-4}}; }, {"sgd: weight_decay must be >= 0", "-0.0001"});
  check_throws_with([] { dppf::sgd{{.lr = 0.1, .nesterov = true}}; }, {"sgd: nesterov", "requires momentum > 0"});
  check_throws_with([] { dppf::sgd{{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}}; },
                    {"sgd: nesterov", "requires dampening = 0"});
  // Valid corner cases construct.
  CHECK_NOTHROW(dppf::sgd{{.lr = 0.0}});
  CHECK_NOTHROW(dppf::sgd{{.lr = 0.1, .momentum = 0.9, .dampening = 1.0}});
  CHECK_NOTHROW(dppf::sgd{{.lr = 0.1, .momentum = 0.9, .nesterov = true}});

  dppf::sgd opt{{.lr = 0.1}};
  check_throws_with([&] { opt.set_lr(-1.0); }, {"sgd: lr must be >= 0", "-1"});
  CHECK(opt.lr() == 0.1);  // unchanged by the failed call
  opt.set_lr(0.25);
  CHECK(opt.lr() == 0.25);
  CHECK(opt.options().lr == 0.25);
}

TEST_CASE("adamw options are validated at construction") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  check_throws_with([] { dppf::adamw{{.lr = -1e-3}}; }, {"adamw: lr must be >= 0", "-0.001"});
  check_throws_with([] { dppf::adamw{{.beta1 = 1.0}}; }, {"adamw: beta1 must be in [0, 1)", "got 1)"});
  check_throws_with([] { dppf::adamw{{.beta1 = -0.1}}; }, {"adamw: beta1 must be in [0, 1)", "-0.1"});
  check_throws_with([] { dppf::adamw{{.beta2 = 1.0}}; }, {"adamw: beta2 must be in [0, 1)", "got 1)"});
  check_throws_with([] { dppf::adamw{{.beta2 = 1.5}}; }, {"adamw: beta2 must be in [0, 1)", "1.5"});
  check_throws_with([&] { dppf::adamw{{.beta2 = nan}}; }, {"adamw: beta2 must be in [0, 1)", "nan"});
  check_throws_with([] { dppf::adamw{{.eps = 0.0}}; }, {"adamw: eps must be > 0", "got 0)"});
  check_throws_with([] { dppf::adamw{{.eps = -1e-8}}; }, {"adamw: eps must be > 0", "-1e-08"});
  check_throws_with([] { dppf::adamw{{.weight_decay = -0.01}}; }, {"adamw: weight_decay must be >= 0", "-0.01"});
  CHECK_NOTHROW(dppf::adamw{{.beta1 = 0.0, .beta2 = 0.0}});
  CHECK_NOTHROW(dppf::adamw{{.weight_decay = 0.0}});

  dppf::adamw opt{{.lr = 1e-3}};
  check_throws_with([&] { opt.set_lr(-1.0); }, {"adamw: lr must be >= 0"});
  CHECK(opt.lr() == 1e-3);
  opt.set_lr(2e-3);
  CHECK(opt.options().lr == 2e-3);
}

// ---------------------------------------------------------------------------------------------
// Bad buffers: a clear message, and nothing changed (parameters, state, step count).

namespace {

template <class Opt, class T>
void check_rejected_step(const Opt& opt, std::vector<T> params, std::vector<T> grads,
                         std::size_t state_size, std::initializer_list<std::string_view> needles) {
  const dppf::host_executor ex;
  auto state = opt.template init<T>(ex, state_size);
  // A state that is not all zero, so that an untouched one can be told apart.
  state.for_each_buffer([](std::string_view, auto& b) { std::ranges::fill(b, T(0.5)); });
  state.step = 3;
  const std::vector<T> params_before = params;
  std::vector<std::vector<T>> state_before;
  state.for_each_buffer([&](std::string_view, const auto& b) { state_before.emplace_back(b.begin(), b.end()); });

  check_throws_with([&] { opt.step(ex, params, grads, state); }, needles);
  CHECK(params == params_before);
  CHECK(state.step == 3);
  std::size_t k = 0;
  state.for_each_buffer([&](std::string_view, const auto& b) {
    REQUIRE(k < state_before.size());
    CHECK(std::vector<T>(b.begin(), b.end()) == state_before[k++]);
  });
  CHECK(k == state_before.size());
}

}  // namespace

TEST_CASE("sgd rejects mismatched and empty buffers without changing anything") {
  const dppf::sgd plain{{.lr = 0.1}};
  const dppf::sgd momentum{{.lr = 0.1, .momentum = 0.9}};
  const std::vector<float> p5 = random_vector<float>(5, 1), g5 = random_vector<float>(5, 2);
  for (const auto* opt : {&plain, &momentum}) {
    check_rejected_step(*opt, p5, random_vector<float>(4, 3), 5, {"sgd::step: gradients has 4 elements, expected 5"});
    check_rejected_step(*opt, p5, random_vector<float>(6, 3), 5, {"sgd::step: gradients has 6 elements, expected 5"});
    check_rejected_step(*opt, std::vector<float>{}, std::vector<float>{}, 5, {"sgd::step: parameters is empty"});
    check_throws_with([&] { (void)opt->init(dppf::host_executor{}, std::size_t{0}); }, {"sgd::init: parameters is empty"});
    check_throws_with([&] { (void)opt->init(dppf::host_executor{}, std::vector<double>{}); }, {"sgd::init: parameters is empty"});
  }
  // A momentum buffer made for another size.
  check_rejected_step(momentum, p5, g5, 7, {"sgd::step: momentum buffer has 7 elements, expected 5"});
  // The same checks hold for host_parallel and for std::span buffers.
  std::vector<double> p = random_vector<double>(5, 4), g = random_vector<double>(4, 5);
  const std::vector<double> before = p;
  auto state = momentum.init(dppf::host_parallel_executor{}, p);
  check_throws_with([&] { momentum.step(dppf::host_parallel_executor{}, std::span<double>(p), std::span<const double>(g), state); },
                    {"sgd::step: gradients has 4 elements, expected 5"});
  CHECK(p == before);
  CHECK(state.step == 0);
}

TEST_CASE("adamw rejects mismatched and empty buffers without changing anything") {
  const dppf::adamw plain{{.lr = 1e-2}};
  const dppf::adamw amsgrad{{.lr = 1e-2, .amsgrad = true}};
  const std::vector<double> p5 = random_vector<double>(5, 1), g5 = random_vector<double>(5, 2);
  for (const auto* opt : {&plain, &amsgrad}) {
    check_rejected_step(*opt, p5, random_vector<double>(3, 3), 5, {"adamw::step: gradients has 3 elements, expected 5"});
    check_rejected_step(*opt, std::vector<double>{}, std::vector<double>{}, 5, {"adamw::step: parameters is empty"});
    check_rejected_step(*opt, p5, g5, 6, {"adamw::step: exp_avg has 6 elements, expected 5"});
    check_throws_with([&] { (void)opt->init(dppf::host_executor{}, std::size_t{0}); }, {"adamw::init: parameters is empty"});
  }
  // A state made without amsgrad has no running maximum.
  std::vector<float> p = random_vector<float>(5, 6), g = random_vector<float>(5, 7);
  const std::vector<float> before = p;
  auto state = plain.init(dppf::host_executor{}, p);
  check_throws_with([&] { amsgrad.step(dppf::host_executor{}, p, g, state); },
                    {"adamw::step: max_exp_avg_sq has 0 elements, expected 5"});
  CHECK(p == before);
  CHECK(state.step == 0);
  CHECK(std::ranges::all_of(state.exp_avg, [](float x) { return x == 0.0f; }));
}

// ---------------------------------------------------------------------------------------------
// State: allocated through the executor, sized to the parameters, visited by for_each_buffer.

TEST_CASE("optimizer state for_each_buffer visits exactly the live buffers") {
  const dppf::host_executor ex;
  const auto visit = [](auto& state) {
    std::vector<std::pair<std::string, const void*>> seen;
    state.for_each_buffer([&](std::string_view name, auto& b) {
      seen.emplace_back(std::string(name), static_cast<const void*>(std::ranges::data(b)));
    });
    return seen;
  };
  using seen_t = std::vector<std::pair<std::string, const void*>>;

  auto s0 = dppf::sgd{{.lr = 0.1}}.init(ex, std::size_t{9});
  CHECK(visit(s0).empty());
  CHECK(s0.momentum_buffer.empty());

  auto s1 = dppf::sgd{{.lr = 0.1, .momentum = 0.9}}.init<double>(ex, 9);
  static_assert(std::is_same_v<decltype(s1.momentum_buffer), std::vector<double>>);
  CHECK(s1.momentum_buffer.size() == 9);
  CHECK(visit(s1) == seen_t{{"momentum_buffer", s1.momentum_buffer.data()}});

  auto a0 = dppf::adamw{}.init(ex, std::vector<float>(9));
  static_assert(std::is_same_v<decltype(a0.exp_avg), std::vector<float>>);
  CHECK(a0.max_exp_avg_sq.empty());
  CHECK(visit(a0) == seen_t{{"exp_avg", a0.exp_avg.data()}, {"exp_avg_sq", a0.exp_avg_sq.data()}});

  auto a1 = dppf::adamw{{.amsgrad = true}}.init(dppf::host_parallel_executor{}, std::vector<double>(9));
  CHECK(visit(a1) == seen_t{{"exp_avg", a1.exp_avg.data()},
                            {"exp_avg_sq", a1.exp_avg_sq.data()},
                            {"max_exp_avg_sq", a1.max_exp_avg_sq.data()}});
  for (const auto* b : {&a1.exp_avg, &a1.exp_avg_sq, &a1.max_exp_avg_sq}) {
    CHECK(b->size() == 9);
    CHECK(std::ranges::all_of(*b, [](double x) { return x == 0.0; }));
  }

  // The visited buffers are the state itself: after one step they hold torch's first-step
  // values (momentum buffer = decayed gradient; m = (1 - b1) g, v = (1 - b2) g^2), in double.
  std::vector<double> p = random_vector<double>(9, 21), g = random_vector<double>(9, 22);
  const std::vector<double> p0 = p;
  dppf::sgd{{.lr = 0.1, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01}}.step(ex, p, g, s1);
  dppf::adamw{{.amsgrad = true}}.step(dppf::host_parallel_executor{}, std::vector<double>(p0), g, a1);
  std::map<std::string, std::vector<double>> contents;
  const auto collect = [&](std::string_view name, const auto& b) { contents[std::string(name)].assign(b.begin(), b.end()); };
  s1.for_each_buffer(collect);
  a1.for_each_buffer(collect);
  for (std::size_t i = 0; i < 9; ++i) {
    CAPTURE(i);
    CHECK(contents["momentum_buffer"][i] == doctest::Approx(g[i] + 0.01 * p0[i]).epsilon(1e-15));
    CHECK(contents["exp_avg"][i] == doctest::Approx(0.1 * g[i]).epsilon(1e-15));
    CHECK(contents["exp_avg_sq"][i] == doctest::Approx(0.001 * g[i] * g[i]).epsilon(1e-14));
    CHECK(contents["max_exp_avg_sq"][i] == contents["exp_avg_sq"][i]);
  }
  CHECK(s1.step == 1);
  CHECK(a1.step == 1);
}

// ---------------------------------------------------------------------------------------------
// The documented usage shape (docs/architecture.md), as written, against a plain double loop of
// torch.optim.SGD's update.

TEST_CASE("sgd usage shape of the documented API compiles and works") {
  const std::size_t n = 1000;
  std::vector<float> params(n), grads(n);  // any parameter_buffer
  params = random_vector<float>(n, 31);
  dppf::host_executor ex;

  dppf::sgd opt{{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  auto state = opt.init(ex, params.size());  // state lives in ex's memory space

  std::vector<double> p(params.begin(), params.end()), m(n);
  for (std::uint64_t t = 0; t < 5; ++t) {
    grads = random_vector<float>(n, 40 + t);
    opt.step(ex, params, grads, state);  // one torch.optim.SGD step, exactly
    for (std::size_t i = 0; i < n; ++i) {  // the documented update, in double
      const double d = grads[i] + 5e-4 * p[i];
      m[i] = t == 0 ? d : 0.9 * m[i] + d;
      p[i] -= 0.1 * (d + 0.9 * m[i]);
    }
  }
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(params[i] - p[i]) / std::max(1.0, std::abs(p[i])));
  CHECK(worst < 1e-5);
  CHECK(state.step == 5);

  // The same with host_parallel and a std::span over caller-owned memory.
  std::vector<float> storage = random_vector<float>(n, 31);
  std::span<float> view(storage);
  dppf::host_parallel_executor pex;
  auto pstate = opt.init(pex, view);
  for (std::uint64_t t = 0; t < 5; ++t) opt.step(pex, view, random_vector<float>(n, 40 + t), pstate);
  CHECK(storage == params);
}

// ---------------------------------------------------------------------------------------------
// Schedules against torch.optim.lr_scheduler (StepLR, CosineAnnealingLR, LinearLR and
// SequentialLR(LinearLR, CosineAnnealingLR)), as the optimizer sees the rate at steps 0, 1, ...
// PyTorch updates the rate recursively, dppf uses the closed form: they agree to rounding. The
// measured difference is below 1e-15 * lr; the bound is 1e-13 * lr.

namespace {

std::function<double(std::int64_t)> schedule_from(const std::map<std::string, std::string>& o) {
  const std::string& kind = o.at("kind");
  const double lr = number(o, "lr");
  const auto integer = [&](const char* key) { return static_cast<std::int64_t>(number(o, key)); };
  if (kind == "step_lr") return dppf::step_lr{.lr = lr, .step_size = integer("step_size"), .gamma = number(o, "gamma")};
  if (kind == "cosine_lr")
    return dppf::cosine_lr{.lr = lr, .total_steps = integer("total_steps"), .min_lr = number(o, "min_lr")};
  if (kind == "warmup")
    return dppf::warmup<>{.steps = integer("steps"), .then = {.lr = lr}, .start_factor = number(o, "start_factor")};
  if (kind == "warmup_cosine")
    return dppf::warmup<dppf::cosine_lr>{
        .steps = integer("steps"),
        .then = {.lr = lr, .total_steps = integer("total_steps"), .min_lr = number(o, "min_lr")},
        .start_factor = number(o, "start_factor")};
  throw std::runtime_error("unknown schedule kind " + kind);
}

}  // namespace

TEST_CASE("schedules match torch.optim.lr_scheduler") {
  const reference_data& ref = reference();
  std::size_t tested = 0;
  for (const auto& entry : ref.options) {  // not a structured binding: clang 14 cannot capture one
    const std::string& name = entry.first;
    const auto& o = entry.second;
    if (!o.contains("kind")) continue;
    CAPTURE(name);
    const auto schedule = schedule_from(o);
    const std::vector<double> torch = ref.array("schedule/" + name).values;
    REQUIRE(torch.size() > 30);
    const double lr = number(o, "lr");
    for (std::size_t t = 0; t < torch.size(); ++t) {
      CAPTURE(t);
      const double ours = schedule(static_cast<std::int64_t>(t));
      INFO("dppf " << ours << ", torch " << torch[t]);
      CHECK(std::abs(ours - torch[t]) <= 1e-13 * lr);
    }
    ++tested;
  }
  CHECK(tested == 7);
}

TEST_CASE("schedules: closed forms, composition and where they differ from torch") {
  // constant
  CHECK(dppf::constant_lr{.lr = 0.3}(0) == 0.3);
  CHECK(dppf::constant_lr{.lr = 0.3}(123456) == 0.3);
  // step_lr: lr * gamma^floor(t / step_size), exactly at the boundaries.
  const dppf::step_lr s{.lr = 1.0, .step_size = 3, .gamma = 0.5};
  CHECK(s(0) == 1.0);
  CHECK(s(2) == 1.0);
  CHECK(s(3) == 0.5);
  CHECK(s(8) == 0.25);
  CHECK(s(9) == 0.125);
  // cosine_lr: lr at 0, the midpoint at total/2, min_lr at total and for ever after (torch's
  // CosineAnnealingLR would rise again after T_max).
  const dppf::cosine_lr c{.lr = 0.1, .total_steps = 10, .min_lr = 0.02};
  CHECK(c(0) == 0.1);
  CHECK(c(5) == doctest::Approx(0.06).epsilon(1e-15));
  CHECK(c(10) == 0.02);
  CHECK(c(11) == 0.02);
  CHECK(c(1000) == 0.02);
  for (std::int64_t t = 0; t < 10; ++t) CHECK(c(t + 1) < c(t));
  // warmup: start_factor * then(0) at 0, linear, then(0) at `steps`, then `then` shifted.
  const dppf::warmup<dppf::cosine_lr> w{.steps = 4, .then = c, .start_factor = 0.0};
  CHECK(w(0) == 0.0);
  CHECK(w(1) == doctest::Approx(0.025).epsilon(1e-15));
  CHECK(w(2) == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(w(3) == doctest::Approx(0.075).epsilon(1e-15));
  for (std::int64_t t = 4; t < 20; ++t) CHECK(w(t) == c(t - 4));
  // steps = 0 is no warm-up at all.
  const dppf::warmup<dppf::step_lr> none{.steps = 0, .then = s, .start_factor = 0.1};
  for (std::int64_t t = 0; t < 10; ++t) CHECK(none(t) == s(t));
  // They model lr_schedule (what the trainer accepts).
  static_assert(dppf::lr_schedule<dppf::constant_lr> && dppf::lr_schedule<dppf::step_lr> &&
                dppf::lr_schedule<dppf::cosine_lr> && dppf::lr_schedule<dppf::warmup<dppf::cosine_lr>>);
}

TEST_CASE("schedules reject invalid fields with the field's name") {
  // validate() checks the fields; the trainer calls it once when it is built.
  check_throws_with([] { (void)dppf::step_lr{.lr = 0.1, .step_size = 0}.validate(); }, {"step_lr: step_size must be > 0", "got 0"});
  check_throws_with([] { (void)dppf::step_lr{.lr = -0.1, .step_size = 2}.validate(); }, {"step_lr: lr must be >= 0", "-0.1"});
  check_throws_with([] { (void)dppf::step_lr{.lr = 0.1, .step_size = 2, .gamma = -0.5}.validate(); },
                    {"step_lr: gamma must be >= 0", "-0.5"});
  check_throws_with([] { (void)dppf::cosine_lr{.lr = 0.1, .total_steps = 0}.validate(); },
                    {"cosine_lr: total_steps must be > 0", "got 0"});
  check_throws_with([] { (void)dppf::cosine_lr{.lr = 0.1, .total_steps = -5}.validate(); },
                    {"cosine_lr: total_steps must be > 0", "-5"});
  check_throws_with([] { (void)dppf::cosine_lr{.lr = -1.0, .total_steps = 5}.validate(); }, {"cosine_lr: lr must be >= 0"});
  check_throws_with([] { (void)dppf::cosine_lr{.lr = 0.1, .total_steps = 5, .min_lr = -1e-3}.validate(); },
                    {"cosine_lr: min_lr must be >= 0", "-0.001"});
  check_throws_with([] { (void)dppf::warmup<>{.steps = -1}.validate(); }, {"warmup: steps must be >= 0", "-1"});
  check_throws_with([] { (void)dppf::warmup<>{.steps = 5, .start_factor = 1.5}.validate(); },
                    {"warmup: start_factor must be in [0, 1]", "1.5"});
  check_throws_with([] { (void)dppf::warmup<>{.steps = 5, .start_factor = -0.1}.validate(); },
                    {"warmup: start_factor must be in [0, 1]", "-0.1"});
  // A bad `then` is reported by `then`.
  check_throws_with([] { (void)dppf::warmup<dppf::cosine_lr>{.steps = 5, .then = {.total_steps = 0}}.validate(); },
                    {"cosine_lr: total_steps must be > 0"});
}
