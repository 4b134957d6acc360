#pragma once
// The training driver of the Fashion-MNIST example: M workers (one thread each in a dppf::thread_group
// group, or one MPI process each), each with its own shard of the training set that it reshuffles
// every epoch, its own copy of the model's flat parameter buffer (MLP or CNN), and a dppf::trainer that runs the local SGD step and,
// every tau steps, the consensus rule of the chosen method. After every epoch the workers'
// mean x_bar is evaluated on the full training and test sets (each worker evaluates one slice).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <dppf/dppf.hpp>
#include <dppf/sharpness.hpp>

#include "idx.hpp"
#include "network.hpp"

extern "C" void openblas_set_num_threads(int);

namespace fmnist {

inline const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"dppf", "local_sgd", "elastic", "leader", "grawa", "diloco", "ddp", "single"};
  return names;
}

struct run_options {
  std::string method = "dppf";
  int workers = 4;
  std::int64_t tau = 8;
  double alpha = 0.1;    ///< DPPF pull; also the pull of elastic, leader and grawa
  double lambda = 0.05;  ///< DPPF push
  std::string push = "constant";  ///< DPPF push mode: constant (lambda) or inverse_mv (lambda / (M MV^2))
  std::int64_t push_warmup = 0;   ///< DPPF: the first steps with the push off
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 0.0;
  double outer_lr = 0.7;        ///< DiLoCo's outer Nesterov SGD
  double outer_momentum = 0.5;  // 0.9 (the paper's, for hundreds of inner steps) diverges at tau <= 8 here
  int epochs = 4;
  std::size_t batch = 64;  ///< per worker and step
  std::uint64_t seed = 1;
  std::string model = "mlp";  ///< mlp or cnn
  std::vector<std::size_t> sizes{784, 512, 512, 10};  ///< the MLP's layers; for the CNN, those of its head
  std::vector<std::size_t> channels{8, 16};          ///< the CNN's convolution stages
  std::size_t sharpness_samples = 1024;  ///< first training examples in the sharpness oracles (0: skip)
  std::size_t valley_directions = 8;     ///< random directions of the Inverse Mean Valley estimate
  std::string checkpoint_dir;            ///< every worker saves its checkpoints here (empty: none)
  std::int64_t checkpoint_every = 0;     ///< steps between checkpoints (0: at the end of every epoch)
  bool resume = false;                   ///< start from the newest checkpoint every worker has
  /// ddp: the gradient average in buckets of this many MiB (the first 1 MiB or less), each started
  /// during the backward pass as soon as its gradients are final (dppf::gradient_buckets), where
  /// the communicator is asynchronous; 0: one all-reduce after the backward pass. The numbers do
  /// not change where the engine's sum of an element does not depend on the buffer (threads).
  double bucket_mb = 25.0;
  /// The sync overlapped with the next d local steps (trainer_options::overlap_steps; 0: blocking).
  std::int64_t overlap_steps = 0;
  /// The format the sync's mean travels in (trainer_options::sync_precision).
  dppf::sync_precision sync_precision = dppf::sync_precision::full;
  /// The compute-only floor: the same workers and steps with every sync removed (tau beyond the
  /// run), to time against; the workers never meet, so x_bar's accuracy means nothing.
  bool no_sync = false;
};

/// --sync-precision's value: full, bf16 or fp16.
inline dppf::sync_precision parse_sync_precision(const std::string& v) {
  for (const auto p : {dppf::sync_precision::full, dppf::sync_precision::bf16, dppf::sync_precision::fp16})
    if (v == dppf::to_string(p)) return p;
  throw std::invalid_argument("--sync-precision: unknown format '" + v + "' (full, bf16 or fp16)");
}

/// The options that shape a run's numbers, one "key=value" line each (not the number of workers:
/// a checkpoint records its world size, and distributed runs take it from the launcher).
inline std::string options_text(const run_options& o) {
  std::string t;
  const auto put = [&](const char* key, const std::string& v) { t += std::string(key) + "=" + v + "\n"; };
  const auto num = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  const auto list = [](const std::vector<std::size_t>& v) {
    std::string out;
    for (const auto x : v) {
      if (!out.empty()) out += ',';
      out += std::to_string(x);
    }
    return out;
  };
  put("method", o.method);
  put("tau", std::to_string(o.tau));
  put("alpha", num(o.alpha));
  put("lambda", num(o.lambda));
  put("push", o.push);
  put("push-warmup", std::to_string(o.push_warmup));
  put("lr", num(o.lr));
  put("momentum", num(o.momentum));
  put("weight-decay", num(o.weight_decay));
  put("outer-lr", num(o.outer_lr));
  put("outer-momentum", num(o.outer_momentum));
  put("epochs", std::to_string(o.epochs));
  put("batch", std::to_string(o.batch));
  put("seed", std::to_string(o.seed));
  put("model", o.model);
  put("hidden", list(o.sizes));
  put("channels", list(o.channels));
  put("sharpness-samples", std::to_string(o.sharpness_samples));
  put("checkpoint-every", std::to_string(o.checkpoint_every));
  put("overlap-steps", std::to_string(o.overlap_steps));
  put("sync-precision", dppf::to_string(o.sync_precision));
  put("no-sync", o.no_sync ? "yes" : "no");
  return t;
}

/// "" when two options_text agree, else the first option that differs, as "--KEY is A ... B".
inline std::string first_difference(const std::string& a, const std::string& b, const std::string& a_is,
                                    const std::string& b_is) {
  return dppf::first_difference(a, b, a_is, b_is, "--");
}

/// Metrics of x_bar after one epoch.
struct epoch_record {
  int epoch = 0;
  double train_loss = 0.0, train_acc = 0.0, test_loss = 0.0, test_acc = 0.0;
  double minibatch_loss = 0.0;  ///< mean training minibatch loss of the workers during the epoch
  double relaxed_mv = 0.0;      ///< mean_i ||x_i - target|| at the epoch's last sync
  std::uint64_t comm_bytes = 0; ///< per worker, so far
  double wall_s = 0.0;          ///< since the start of training
};

struct run_result {
  run_options options;
  std::vector<epoch_record> epochs;
  std::optional<double> imv, hessian_top;  ///< empty when the estimators are not available
  std::int64_t steps = 0, syncs = 0;
  std::uint64_t comm_bytes = 0;
  double wall_s = 0.0;    ///< training and per-epoch evaluation (sharpness estimates not included)
  /// Rank 0's step loops only, each from a barrier before its first step (evaluation excluded;
  /// after a resume, this launch's); NaN where not measured.
  double train_s = std::numeric_limits<double>::quiet_NaN();
  std::vector<float> x_bar;  ///< the final model (rank 0)
  const epoch_record& last() const { return epochs.back(); }
};

/// What the progress display sees, from worker 0, every step.
struct progress_info {
  const std::string& method;
  int epoch, epochs;
  std::int64_t step, steps_per_epoch;
  double loss;             ///< running mean of worker 0's minibatch loss this epoch
  double samples_per_s;    ///< all workers together
};

struct callbacks {
  std::function<void(const progress_info&)> progress;
  std::function<void(const run_options&, const epoch_record&)> epoch;
  /// Worker 0 saved (resumed = false) or resumed from (true) the checkpoints of this step.
  std::function<void(const run_options&, std::int64_t step, bool resumed)> checkpoint;
  /// An early stop (e.g. a training-loss target): called on every worker, from its own thread, after
  /// each epoch's evaluation and checkpoint with that epoch's record (the same on every worker);
  /// true ends the training there, and the result then holds only the epochs trained. Empty:
  /// every one of o.epochs runs. Honoured by train(); the elastic and libtorch drivers ignore it.
  std::function<bool(const run_options&, const epoch_record&)> stop;
};

inline network<float> make_network(const run_options& o) { return {o.model, o.sizes, o.channels}; }

inline void validate(const run_options& o, std::size_t train_count) {
  const auto& names = method_names();
  if (std::find(names.begin(), names.end(), o.method) == names.end())
    throw std::invalid_argument("--method: unknown method '" + o.method +
                                "' (choose from dppf, local_sgd, elastic, leader, grawa, diloco, ddp, single)");
  (void)make_network(o);  // --model, --hidden and --channels
  if (o.push != "constant" && o.push != "inverse_mv")
    throw std::invalid_argument("--push: unknown mode '" + o.push + "' (constant or inverse_mv)");
  if (o.push_warmup < 0) throw std::invalid_argument("--push-warmup: must be >= 0");
  if (o.workers < 1) throw std::invalid_argument("--workers: must be >= 1, got " + std::to_string(o.workers));
  if (o.tau < 1) throw std::invalid_argument("--tau: must be >= 1, got " + std::to_string(o.tau));
  if (o.epochs < 1) throw std::invalid_argument("--epochs: must be >= 1, got " + std::to_string(o.epochs));
  if (o.batch < 1) throw std::invalid_argument("--batch: must be >= 1");
  if (!(o.lr > 0.0)) throw std::invalid_argument("--lr: must be > 0");
  if (!(o.bucket_mb >= 0.0 && o.bucket_mb * 1048576.0 < 1e15)) throw std::invalid_argument("--bucket-mb: must be >= 0 (0: no buckets)");
  const std::size_t m = o.method == "single" ? 1 : static_cast<std::size_t>(o.workers);
  if (train_count / m < o.batch)
    throw std::invalid_argument("--batch: " + std::to_string(o.batch) + " is larger than a worker's shard of " +
                                std::to_string(train_count / m) + " examples");
}

/// The example's worker on the CPU: its model, parameters, gradients and minibatch in host memory.
class host_replica {
 public:
  using executor_type = dppf::host_executor;

  host_replica(const run_options& o, const dataset& train, const dataset& test)
      : model_(make_network(o)), train_(train), test_(test), params_(model_.size()), grads_(model_.size()),
        xbar_(model_.size()), xb_(o.batch * train.dim), yb_(o.batch) {
    model_.init(params_, o.seed);  // the same start on every worker
  }

  executor_type executor() const { return {}; }
  std::vector<float>& params() { return params_; }
  std::vector<float>& grads() { return grads_; }
  std::vector<float>& xbar() { return xbar_; }

  /// Loss of the training examples `indices` at params(), and its gradient into grads(); `ready`
  /// is told each layer's segments as soon as their gradient is final (fmnist::gradient_ready).
  double loss_and_grad(std::span<const std::size_t> indices, const gradient_ready& ready = {}) {
    for (std::size_t i = 0; i < indices.size(); ++i) {
      std::copy_n(train_.x.data() + indices[i] * train_.dim, train_.dim, xb_.data() + i * train_.dim);
      yb_[i] = train_.y[indices[i]];
    }
    return model_.loss_and_grad(params_, xb_.data(), yb_.data(), indices.size(), grads_, ready);
  }

  const dppf::parameter_layout& layout() const noexcept { return model_.layout(); }

  /// Sums of the loss and correct predictions of xbar() on n examples of one set from `begin`.
  eval_sums evaluate_xbar(bool test_set, std::size_t begin, std::size_t n) {
    const dataset& d = test_set ? test_ : train_;
    return model_.evaluate(xbar_, d.x.data() + begin * d.dim, d.y.data() + begin, n);
  }

  std::vector<float> to_host(const std::vector<float>& b) const { return b; }

 private:
  network<float> model_;
  const dataset& train_;
  const dataset& test_;
  std::vector<float> params_, grads_, xbar_, xb_;
  std::vector<std::uint8_t> yb_;
};

/// Workers on the CPU.
struct host_backend {
  const dataset& train;
  const dataset& test;
  /// Before m workers start: with several, each runs OpenBLAS on one thread, so they do not
  /// oversubscribe the cores.
  void prepare(int m) const {
    openblas_set_num_threads(m > 1 ? 1 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  }
  host_replica make_replica(const run_options& o) const { return {o, train, test}; }
};

/// The trainer's options of a run whose rule syncs every `tau` steps.
inline dppf::trainer_options trainer_options_for(const run_options& o, std::int64_t tau) {
  return {.tau = tau, .warmup_steps = o.push_warmup, .overlap_steps = o.overlap_steps, .sync_precision = o.sync_precision};
}

namespace detail {

// IMV (additive threshold f + 0.1, Gaussian unit directions) and the Hessian's top eigenvalue
// (power iteration on finite differences of gradients) of x_bar, with the mean loss over the
// first o.sharpness_samples training images as the oracle.
inline void sharpness(run_result& result, const dataset& train) {
  const run_options& o = result.options;
  const std::size_t n = std::min(o.sharpness_samples, train.count);
  openblas_set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  network<float> model = make_network(o);
  const auto loss = [&](std::span<const float> x) { return model.loss(x, train.x.data(), train.y.data(), n); };
  const auto loss_and_grad = [&](std::span<const float> x, std::span<float> g) {
    return model.loss_and_grad(x, train.x.data(), train.y.data(), n, g);
  };
  const dppf::host_executor ex;
  result.imv = dppf::inverse_mean_valley(ex, loss, result.x_bar,
                                         {.directions = o.valley_directions, .delta = 0.1, .seed = o.seed}).value;
  result.hessian_top = dppf::hessian_top_eigenvalue(ex, loss_and_grad, result.x_bar,
                                                    {.max_iters = 50, .tol = 1e-3, .seed = o.seed}).value;
}

// What a worker's checkpoint holds beyond the trainer's state, so a resumed run reports what the
// uninterrupted one would: the finished epochs, the current epoch's loss sum, the bytes and
// seconds so far and the last sync's relaxed MV.
struct progress_state {
  std::vector<epoch_record> epochs;
  double loss_sum = 0.0, relaxed_mv = 0.0, wall_s = 0.0;
  std::uint64_t bytes = 0;
};

// The K of every file named <head><K><tail> in dir (K decimal digits), newest (largest) first.
inline std::vector<std::int64_t> checkpoint_steps(const std::string& dir, const std::string& head, const std::string& tail) {
  std::vector<std::int64_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= head.size() + tail.size() || name.rfind(head, 0) != 0 ||
        name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos) out.push_back(std::stoll(digits));
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

// A worker's checkpoints, DIR/<method>.step<K>.rank<R>.safetensors: dppf::save_trainer plus the
// options (metadata fmnist.options) and the progress_state (fmnist.progress, exact hex floats).
// Each worker keeps its two newest. Checkpoints come right after a sync (every is a multiple of
// tau) or an epoch's evaluation, so no worker passes the next one before every other worker has
// written this one: a crash leaves every worker with a common step among its two newest.
class checkpoints {
 public:
  checkpoints(const run_options& o, int rank)
      : dir_(o.checkpoint_dir), every_(o.checkpoint_every), method_(o.method), rank_(rank), text_(options_text(o)) {}

  bool enabled() const { return !dir_.empty(); }
  bool due_in_epoch(std::int64_t steps) const { return enabled() && every_ > 0 && steps % every_ == 0; }
  bool due_at_epoch_end(std::int64_t steps) const { return enabled() && (every_ == 0 || steps % every_ == 0); }

  template <class Trainer>
  void save(Trainer& tr, const std::vector<float>& params, const progress_state& p) {
    dppf::safetensors out = dppf::save_trainer(tr, params);
    out.set_metadata("fmnist.options", text_);
    out.set_metadata("fmnist.progress", encode(p));
    std::filesystem::create_directories(dir_);
    out.save(file(tr.steps()));  // atomic
    const auto mine = steps();
    std::error_code ignored;
    for (std::size_t i = 2; i < mine.size(); ++i) std::filesystem::remove(file(mine[i]), ignored);
  }

  // Collective: loads the newest step of which every worker has a checkpoint (all or nothing, on
  // every worker) and returns its progress; nullopt when no worker has one (a fresh start).
  template <class Trainer, class Comm>
  std::optional<progress_state> resume(Trainer& tr, Comm& comm, std::vector<float>& params) {
    const auto mine = steps();
    const auto newest = comm.all_gather(mine.empty() ? -1.0 : static_cast<double>(mine[0]));
    const auto second = comm.all_gather(mine.size() < 2 ? -1.0 : static_cast<double>(mine[1]));
    double chosen = -1.0;
    bool any = false;
    for (std::size_t r = 0; r < newest.size(); ++r) any = any || newest[r] >= 0.0;
    if (!any) return std::nullopt;
    for (const double c : {newest[0], second[0]}) {
      bool everywhere = c >= 0.0;
      for (std::size_t r = 0; r < newest.size(); ++r) everywhere = everywhere && (newest[r] == c || second[r] == c);
      if (everywhere) chosen = std::max(chosen, c);
    }
    if (chosen < 0.0) {
      std::string have;
      for (std::size_t r = 0; r < newest.size(); ++r)
        have += (r ? "; rank " : "rank ") + std::to_string(r) + ": " + (newest[r] < 0 ? "none" : std::to_string(static_cast<long long>(newest[r]))) +
                (second[r] < 0 ? "" : ", " + std::to_string(static_cast<long long>(second[r])));
      throw dppf::checkpoint_error("--resume: the checkpoints of " + method_ + " in " + dir_.string() +
                                   " share no step across the ranks (" + have + ")");
    }
    const auto path = file(static_cast<std::int64_t>(chosen));
    std::string error;
    dppf::safetensors in;
    progress_state p;
    try {
      in = dppf::safetensors::load(path);
      const std::string diff = first_difference(text_, in.metadata("fmnist.options"), "in this run", "in the checkpoint");
      if (!diff.empty()) throw dppf::checkpoint_error("--resume: " + path.string() + " is of another run: " + diff);
      p = decode(in.metadata("fmnist.progress"), path.string());
    } catch (const std::exception& e) {
      error = e.what();
    }
    const auto failed = comm.all_gather(error.empty() ? 0.0 : 1.0);
    for (std::size_t r = 0; r < failed.size(); ++r)
      if (failed[r] != 0.0)
        throw dppf::checkpoint_error(error.empty() ? "--resume: rank " + std::to_string(r) + " cannot use its checkpoint" : error);
    dppf::load_trainer(in, tr, params);
    return p;
  }

 private:
  std::filesystem::path file(std::int64_t step) const {
    return dir_ / (method_ + ".step" + std::to_string(step) + ".rank" + std::to_string(rank_) + ".safetensors");
  }

  // The steps of this worker's checkpoints of this method, newest first.
  std::vector<std::int64_t> steps() const {
    return checkpoint_steps(dir_, method_ + ".step", ".rank" + std::to_string(rank_) + ".safetensors");
  }

  static std::string hex(double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%a", v);
    return b;
  }

  static std::string encode(const progress_state& p) {
    std::string t;
    const auto word = [&](const std::string& w) {
      if (!t.empty()) t += ' ';
      t += w;
    };
    for (const double v : {p.loss_sum, p.relaxed_mv, p.wall_s}) word(hex(v));
    word(std::to_string(p.bytes));
    for (const epoch_record& e : p.epochs) {
      word(std::to_string(e.epoch));
      for (const double v : {e.train_loss, e.train_acc, e.test_loss, e.test_acc, e.minibatch_loss, e.relaxed_mv, e.wall_s})
        word(hex(v));
      word(std::to_string(e.comm_bytes));
    }
    return t;
  }

  static progress_state decode(const std::string& t, const std::string& source) {
    std::vector<std::string> w;
    for (std::size_t i = 0; i < t.size();) {
      const auto end = std::min(t.find(' ', i), t.size());
      w.push_back(t.substr(i, end - i));
      i = end + 1;
    }
    if (w.size() < 4 || (w.size() - 4) % 9 != 0)
      throw dppf::checkpoint_error("--resume: " + source + ": malformed metadata fmnist.progress");
    std::size_t k = 0;
    const auto real = [&] { return std::strtod(w[k++].c_str(), nullptr); };
    const auto count = [&] { return std::strtoull(w[k++].c_str(), nullptr, 10); };
    progress_state p;
    p.loss_sum = real();
    p.relaxed_mv = real();
    p.wall_s = real();
    p.bytes = count();
    while (k < w.size()) {
      epoch_record e;
      e.epoch = static_cast<int>(count());
      for (double* v : {&e.train_loss, &e.train_acc, &e.test_loss, &e.test_acc, &e.minibatch_loss, &e.relaxed_mv, &e.wall_s})
        *v = real();
      e.comm_bytes = count();
      p.epochs.push_back(e);
    }
    return p;
  }

  std::filesystem::path dir_;
  std::int64_t every_;
  std::string method_;
  int rank_;
  std::string text_;
};

// ddp with --bucket-mb > 0: the gradient average overlapped with the backward pass, where the
// communicator can start an all-reduce and the replica reports its gradients (the CPU one).
template <class Rule, class Comm, class Replica>
inline constexpr bool bucketed_ddp =
    std::is_same_v<Rule, dppf::data_parallel> && dppf::async_communicator<Comm> && std::is_same_v<Replica, host_replica>;

// The buckets of a worker (nothing where bucketed_ddp is false).
template <class Counted, bool = true>
struct ddp_buckets {
  using type = std::optional<dppf::gradient_buckets<Counted>>;
};
template <class Counted>
struct ddp_buckets<Counted, false> {
  struct type {};
};

// --bucket-mb in MiB, as PyTorch's bucket_cap_mb; the first bucket 1 MiB at most, as PyTorch's.
inline dppf::gradient_bucket_options bucket_options(double mb) {
  const auto cap = std::max(static_cast<std::size_t>(mb * 1048576.0), sizeof(float));
  return {.bucket_bytes = cap, .first_bucket_bytes = std::min(cap, std::size_t{1} << 20)};
}

// Function templates rather than `if constexpr` inside train_with's generic lambda, which nvcc 13
// does not discard: the rule's gradients_averaged, and the buckets, only where buckets are possible.
template <bool Possible, class Rule>
Rule with_averaged_gradients(Rule rule, bool averaged) {
  if constexpr (Possible) rule.gradients_averaged = averaged;
  return rule;
}
// One step's loss and gradients; with buckets, each bucket's average started as backward fills it.
template <bool Possible, class Buckets, class Replica, class Batch>
double loss_and_grad(Buckets& buckets, Replica& rep, const Batch& batch) {
  if constexpr (Possible) {
    if (buckets) {
      buckets->begin(rep.grads());
      const double loss = rep.loss_and_grad(batch, [&](std::size_t a, std::size_t b) { buckets->ready(a, b); });
      buckets->finish();
      return loss;
    }
  }
  return rep.loss_and_grad(batch);
}
template <bool Possible, class Buckets, class Comm, class Replica>
void emplace_buckets(Buckets& buckets, Comm& comm, Replica& rep, double mb) {
  if constexpr (Possible) buckets.emplace(comm, rep.layout(), bucket_options(mb));
}

// One global permutation of the training set deals the shards (worker r's is its r-th slice), so
// every shard sees every class.
inline std::vector<std::size_t> dealing_permutation(const run_options& o, std::size_t count) {
  std::vector<std::size_t> perm(count);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  std::mt19937_64 deal(o.seed ^ 0x9e3779b97f4a7c15ull);
  std::shuffle(perm.begin(), perm.end(), deal);
  return perm;
}

// The random engine that reshuffles worker r's shard at the start of every epoch.
inline std::mt19937_64 shard_engine(const run_options& o, std::size_t r) {
  return std::mt19937_64(o.seed * 1000003ull + static_cast<std::uint64_t>(r));
}

// Runs the training of one method with rule `rule` on m workers; launch(f, m) calls f(comm)
// for every worker of this process (all M as threads, or this process's rank under MPI); each
// worker's model and buffers come from backend.make_replica.
template <class Rule, class Backend, class Launch>
run_result train_with(Rule rule, std::int64_t tau, const run_options& o, const dataset& train, const dataset& test,
                      const callbacks& cb, int m, const Backend& backend, Launch&& launch) {
  const std::size_t shard_size = train.count / static_cast<std::size_t>(m);
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>(shard_size / o.batch);

  const std::vector<std::size_t> perm = dealing_permutation(o, train.count);

  backend.prepare(m);
  run_result result;
  result.options = o;
  result.epochs.resize(static_cast<std::size_t>(o.epochs));
  const auto t0 = std::chrono::steady_clock::now();
  const auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double earlier_s = 0.0;  // rank 0's seconds in the run a resume continues
  double train_s = 0.0;    // rank 0's step loops

  launch([&](auto comm) {
    const int r = comm.rank();
    auto rep = backend.make_replica(o);
    std::vector<std::size_t> shard(perm.begin() + static_cast<std::ptrdiff_t>(shard_size * static_cast<std::size_t>(r)),
                                   perm.begin() + static_cast<std::ptrdiff_t>(shard_size * static_cast<std::size_t>(r + 1)));
    std::mt19937_64 rng = shard_engine(o, static_cast<std::size_t>(r));
    const auto ex = rep.executor();
    constexpr bool buckets_possible = bucketed_ddp<Rule, decltype(comm), decltype(rep)>;
    const Rule worker_rule = with_averaged_gradients<buckets_possible>(rule, o.bucket_mb > 0.0);
    dppf::trainer tr{dppf::sgd{{.lr = o.lr, .momentum = o.momentum, .weight_decay = o.weight_decay}}, worker_rule,
                     std::move(comm), ex, trainer_options_for(o, tau)};
    auto& eval_comm = tr.comm().inner();  // uncounted: evaluation traffic is not training traffic
    typename ddp_buckets<std::remove_reference_t<decltype(tr.comm())>, buckets_possible>::type buckets;
    if constexpr (buckets_possible)
      if (o.bucket_mb > 0.0) {
        emplace_buckets<buckets_possible>(buckets, tr.comm(), rep, o.bucket_mb);
        // Outside the timed steps: an engine may connect its asynchronous side at the first start
        // (Gloo's second context).
        float one = 0.0f;
        eval_comm.start_all_reduce(std::span<float>(&one, 1), dppf::reduce_op::sum).wait();
      }

    // Checkpoints (host parameters only): a resume restores the trainer, then replays the data
    // order up to the checkpoint's step.
    checkpoints ckpt(o, r);
    progress_state before;           // what the interrupted run had done
    std::int64_t resumed_syncs = -1;  // until the next sync, its relaxed MV is the checkpoint's
    constexpr bool host_params = std::is_same_v<std::remove_cvref_t<decltype(rep.params())>, std::vector<float>>;
    if constexpr (host_params) {
      if (ckpt.enabled() && o.resume) {
        if (auto p = ckpt.resume(tr, eval_comm, rep.params())) {
          before = std::move(*p);
          before.bytes -= tr.stats().bytes;  // the load's own agreement is not training traffic
          resumed_syncs = tr.stats().syncs;
          if (r == 0) earlier_s = before.wall_s;  // read after launch returns
          if (r == 0 && cb.checkpoint) cb.checkpoint(o, tr.steps(), true);
        }
      }
    }
    const auto progress_now = [&](double loss_sum) {
      const dppf::trainer_stats st = tr.stats();
      return progress_state{before.epochs, loss_sum, st.syncs == resumed_syncs ? before.relaxed_mv : st.mean_distance,
                            before.wall_s + seconds(), before.bytes + st.bytes};
    };
    const auto save = [&](const progress_state& p) {
      if constexpr (host_params) {
        ckpt.save(tr, rep.params(), p);
        eval_comm.barrier();  // every rank has written its file: what rank 0's note then says
        if (r == 0 && cb.checkpoint) cb.checkpoint(o, tr.steps(), false);
      }
    };
    const std::int64_t first_step = tr.steps();
    const int first_epoch = static_cast<int>(first_step / steps_per_epoch);
    for (int e = 0; e < first_epoch && e < o.epochs; ++e) std::shuffle(shard.begin(), shard.end(), rng);

    // Each worker evaluates one slice of each set; the sums are all-reduced.
    const auto evaluate = [&](bool test_set) {
      const std::size_t count = test_set ? test.count : train.count;
      const std::size_t per = (count + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
      const std::size_t begin = std::min(count, per * static_cast<std::size_t>(r)), n = std::min(count, begin + per) - begin;
      const eval_sums s = n ? rep.evaluate_xbar(test_set, begin, n) : eval_sums{};
      const double loss = eval_comm.all_reduce(s.loss, dppf::reduce_op::sum);
      const double correct = eval_comm.all_reduce(s.correct, dppf::reduce_op::sum);
      const double total = eval_comm.all_reduce(s.count, dppf::reduce_op::sum);
      return std::pair{loss / total, correct / total};
    };

    bool stopped = false;  // by cb.stop, on every worker at the same epoch
    for (int e = first_epoch; e < o.epochs; ++e) {
      std::shuffle(shard.begin(), shard.end(), rng);
      const bool resumed_epoch = e == first_epoch && first_step > 0;
      double loss_sum = resumed_epoch ? before.loss_sum : 0.0;
      eval_comm.barrier();  // the step loop's time (train_s) starts together on every rank
      const auto epoch_start = std::chrono::steady_clock::now();
      for (std::int64_t s = resumed_epoch ? first_step % steps_per_epoch : 0; s < steps_per_epoch; ++s) {
        const auto batch = std::span(shard).subspan(static_cast<std::size_t>(s) * o.batch, o.batch);
        const double loss = loss_and_grad<buckets_possible>(buckets, rep, batch);
        tr.step(rep.params(), rep.grads(), loss);
        loss_sum += loss;
        if (s + 1 < steps_per_epoch && ckpt.due_in_epoch(tr.steps())) save(progress_now(loss_sum));
        if (r == 0 && cb.progress) {
          const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
          const double seen = static_cast<double>(s + 1) * static_cast<double>(o.batch) * m;
          cb.progress(progress_info{o.method, e + 1, o.epochs, s + 1, steps_per_epoch,
                                    loss_sum / static_cast<double>(s + 1), dt > 0.0 ? seen / dt : 0.0});
        }
      }
      if (r == 0) train_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      const double mb_loss = eval_comm.all_reduce(loss_sum / static_cast<double>(steps_per_epoch), dppf::reduce_op::avg);
      dppf::copy(ex, rep.params(), rep.xbar());
      eval_comm.all_reduce(rep.xbar(), dppf::reduce_op::avg);
      const auto [train_loss, train_acc] = evaluate(false);
      const auto [test_loss, test_acc] = evaluate(true);
      // Every rank agrees on every value above, so rank 0 records them.
      const progress_state now = progress_now(0.0);
      const epoch_record rec{e + 1, train_loss, train_acc, test_loss, test_acc, mb_loss, now.relaxed_mv, now.bytes, now.wall_s};
      before.epochs.push_back(rec);
      if (r == 0 && cb.epoch) cb.epoch(o, rec);
      if (ckpt.due_at_epoch_end(tr.steps())) save(progress_now(0.0));
      eval_comm.barrier();
      if (cb.stop && cb.stop(o, rec)) {
        stopped = true;
        break;
      }
    }
    const progress_state end = progress_now(0.0);
    const dppf::trainer_stats st = tr.stats();
    tr.average(rep.params());  // the deliverable model, x_bar, on every worker
    if (r == 0) {
      if (stopped) result.epochs.resize(end.epochs.size());
      for (std::size_t e = 0; e < result.epochs.size() && e < end.epochs.size(); ++e) result.epochs[e] = end.epochs[e];
      result.x_bar = rep.to_host(rep.params());
      result.steps = st.steps;
      result.syncs = st.syncs;
      result.comm_bytes = end.bytes;
    }
  }, m);
  result.wall_s = earlier_s + seconds();
  result.train_s = train_s;
  if (!result.x_bar.empty() && o.sharpness_samples > 0) sharpness(result, train);
  return result;
}

}  // namespace detail

/// Calls go(rule, tau) with the consensus rule and sync period of o.method (o validated).
template <class Go>
run_result with_rule(const run_options& o, Go&& go_every) {
  // --no-sync: a period no run reaches (the trainer's first sync would be at step tau).
  const auto go = [&](auto rule, std::int64_t tau) {
    return go_every(rule, o.no_sync ? std::numeric_limits<std::int64_t>::max() : tau);
  };
  const std::string& k = o.method;
  if (k == "dppf") {
    const auto mode = o.push == "inverse_mv" ? dppf::push_mode::inverse_mv : dppf::push_mode::constant;
    return go(dppf::pull_push{{.alpha = o.alpha, .lambda = o.lambda, .push = mode}}, o.tau);
  }
  if (k == "local_sgd") return go(dppf::local_sgd{}, o.tau);
  if (k == "elastic") return go(dppf::elastic{{.alpha = o.alpha}}, o.tau);
  if (k == "leader") return go(dppf::leader{{.pull = o.alpha}}, o.tau);
  if (k == "grawa") return go(dppf::grawa{{.alpha = o.alpha}}, o.tau);
  if (k == "diloco") return go(dppf::diloco{{.outer_lr = o.outer_lr, .outer_momentum = o.outer_momentum}}, o.tau);
  if (k == "ddp") return go(dppf::data_parallel{}, 1);
  // single: one worker on all the data, never synchronizing.
  return go(dppf::local_sgd{}, std::numeric_limits<std::int64_t>::max());
}

/// Raises, before any worker starts, the trainer's own error for sync options it refuses with
/// o.method's rule (--overlap-steps with ddp, leader or grawa; --sync-precision with them; a
/// compressed overlapped sync), prefixed by the flags, by building a trainer of that rule on one
/// worker (dppf::single_communicator). A refusal that depends on the engine still comes from the run's own trainer.
inline void check_trainer_options(const run_options& o) {
  if (o.overlap_steps < 0) throw std::invalid_argument("--overlap-steps: must be >= 0 (0: blocking sync), got " + std::to_string(o.overlap_steps));
  if (o.no_sync && (o.overlap_steps != 0 || o.sync_precision != dppf::sync_precision::full))
    throw std::invalid_argument("--no-sync: there is no sync to overlap or compress (drop --overlap-steps / --sync-precision)");
  if (o.no_sync && (o.method == "ddp" || o.method == "single"))
    throw std::invalid_argument("--no-sync: " + o.method + " has no periodic sync to remove (for the local methods only)");
  if (o.overlap_steps == 0 && o.sync_precision == dppf::sync_precision::full) return;
  try {
    // First with room for d steps, so a rule's refusal is said before the range of d.
    for (const bool room : {true, false})
      with_rule(o, [&](auto rule, std::int64_t tau) {
        const std::int64_t period = room ? std::max(tau, o.overlap_steps) : tau;
        dppf::trainer tr{dppf::sgd{{.lr = o.lr}}, rule, dppf::single_communicator{}, dppf::host_executor{}, trainer_options_for(o, period)};
        return run_result{};
      });
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--method " + o.method +
                                (o.overlap_steps ? " --overlap-steps " + std::to_string(o.overlap_steps) : std::string()) +
                                (o.sync_precision != dppf::sync_precision::full
                                     ? std::string(" --sync-precision ") + dppf::to_string(o.sync_precision) : std::string()) +
                                ": " + e.what());
  }
}

/// Trains one method on `train` with m workers started by launch (see detail::train_with) and
/// evaluates x_bar on `train` and `test` after every epoch; the result is complete on rank 0.
template <class Backend, class Launch>
run_result train(const run_options& o, const dataset& train, const dataset& test, const callbacks& cb, int m,
                 const Backend& backend, Launch&& launch) {
  validate(o, train.count);
  check_trainer_options(o);
  if (train.dim != o.sizes.front() || test.dim != o.sizes.front())
    throw std::invalid_argument("fashion_mnist: the model expects " + std::to_string(o.sizes.front()) +
                                " inputs but the data has " + std::to_string(train.dim));
  return with_rule(o, [&](auto rule, std::int64_t tau) {
    return detail::train_with(rule, tau, o, train, test, cb, m, backend, launch);
  });
}

/// As above with the workers as threads of this process (a dppf::thread_group group).
inline run_result train(const run_options& o, const dataset& train, const dataset& test, const callbacks& cb = {}) {
  const int m = o.method == "single" ? 1 : o.workers;
  return fmnist::train(o, train, test, cb, m, host_backend{train, test}, [](auto&& f, int workers) {
    dppf::thread_group group(workers);
    group.run(f);
  });
}

}  // namespace fmnist
