#pragma once
// The Fashion-MNIST example's elastic mode (--comm gloo --elastic): one worker per process in a
// dppf::elastic_group, trained by a dppf::elastic_trainer, so a lost worker does not end the run
// and a new process is let in at a sync (docs/elastic.md).
//
// * The sync schedule is the group's: the founders' count M0 (--world-size) fixes the steps per
//   epoch (a founder's shard over the batch), whoever is left.
// * The data of a lost worker (--lost-shard, elastic_deal below): drop (every worker keeps its
//   shard; a lost one's images are no longer trained on) or redeal (at every step the group
//   trains on the next M0 x batch images of the epoch's order, split over the current members in
//   rank order, so a lost worker's share goes to the survivors from the next step on).
// * The per-epoch evaluation of x_bar runs as a committed operation of the group (discarded and
//   run again over the survivors when a worker is lost during it), so every member records the
//   same numbers; the final rank 0 prints the table.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <dppf/elastic/checkpoint.hpp>
#include <dppf/elastic/trainer.hpp>

#include "report.hpp"
#include "train.hpp"

namespace fmnist {

struct elastic_settings {
  int founders = 1;                  ///< workers of generation 0 (--world-size)
  int min_workers = 0;               ///< the quorum (0: a strict majority of the largest generation)
  std::string lost_shard = "drop";   ///< drop or redeal
  bool sync_log = false;             ///< one line per committed sync (--sync-log)
  dppf::gloo_store store;
  dppf::gloo_options gloo;
  /// Called by the founders, collectively, once the group formed (e.g. to agree on the options).
  std::function<void(dppf::gloo_communicator&)> agree;
  /// The run's options ("key=value" lines) that a newcomer must share (elastic_trainer_options).
  std::string options;
};

/// What a finished elastic run reports besides the numbers (every member agrees on the summary).
struct elastic_outcome {
  elastic_summary summary;
  bool printer = false;  ///< rank 0 at the end: the one that prints
};

inline void validate_elastic(const elastic_settings& s, const run_options& o) {
  if (s.lost_shard != "drop" && s.lost_shard != "redeal")
    throw std::invalid_argument("--lost-shard: unknown mode '" + s.lost_shard + "' (drop or redeal)");
  if (s.min_workers < 0) throw std::invalid_argument("--min-workers: must be >= 0");
  if (s.min_workers > s.founders)
    throw std::invalid_argument("--min-workers " + std::to_string(s.min_workers) + " is more than the " +
                                std::to_string(s.founders) + " workers (--world-size)");
  if (o.method == "single")
    throw std::invalid_argument("--elastic: --method single has one worker; use dppf, local_sgd, elastic, leader, grawa, "
                                "diloco or ddp");
}

/// Which training images a worker trains on at each step (see the top). Every member computes
/// the same dealing from the step, its id, rank and the member count, so it needs no messages.
class elastic_deal {
 public:
  elastic_deal(const run_options& o, std::size_t count, int founders, bool redeal)
      : o_(o), perm_(detail::dealing_permutation(o, count)), founders_(static_cast<std::size_t>(founders)), redeal_(redeal),
        shard_size_(count / founders_), steps_per_epoch_(static_cast<std::int64_t>(shard_size_ / o.batch)) {}

  std::int64_t steps_per_epoch() const noexcept { return steps_per_epoch_; }
  /// The most images one step may take (redeal with one member left).
  std::size_t max_batch() const noexcept { return o_.batch * founders_; }

  /// The images of `step` (counted from the start of the run) for the member `id` at `rank` of
  /// `members`.
  /// drop: the worker's own shard, slot id mod M0 (a founder's place in the founders' dealing,
  ///   the plain trainer's shard r), reshuffled every epoch by the plain trainer's engine: with
  ///   no fault the run trains exactly as `--comm gloo` without --elastic.
  /// redeal: images [step' x M0 x B, (step' + 1) x M0 x B) of the epoch's order (step' the step
  ///   within the epoch), the rank-th of `members` equal parts of floor(M0 x B / members).
  std::span<const std::size_t> batch(std::int64_t step, std::int64_t id, int rank, int members) {
    const std::int64_t epoch = step / steps_per_epoch_;
    const auto within = static_cast<std::size_t>(step % steps_per_epoch_);
    if (!redeal_) {
      const std::size_t slot = static_cast<std::size_t>(id) % founders_;
      if (slot != slot_) {  // the first call: the shard as dealt, shuffled once per epoch from the start
        slot_ = slot;
        order_.assign(perm_.begin() + static_cast<std::ptrdiff_t>(shard_size_ * slot),
                      perm_.begin() + static_cast<std::ptrdiff_t>(shard_size_ * (slot + 1)));
        rng_ = detail::shard_engine(o_, slot);
        epoch_ = -1;
      }
      for (; epoch_ < epoch; ++epoch_) std::shuffle(order_.begin(), order_.end(), rng_);
      return std::span<const std::size_t>(order_).subspan(within * o_.batch, o_.batch);
    }
    if (epoch != epoch_) {
      order_ = perm_;
      std::mt19937_64 engine(o_.seed ^ (0x5851f42d4c957f2dull * static_cast<std::uint64_t>(epoch + 1)));
      std::shuffle(order_.begin(), order_.end(), engine);
      epoch_ = epoch;
    }
    const std::size_t block = o_.batch * founders_;
    const std::size_t part = block / static_cast<std::size_t>(members);
    return std::span<const std::size_t>(order_).subspan(within * block + static_cast<std::size_t>(rank) * part, part);
  }

 private:
  const run_options& o_;
  std::vector<std::size_t> perm_;
  std::size_t founders_;
  bool redeal_;
  std::size_t shard_size_;
  std::int64_t steps_per_epoch_;
  std::vector<std::size_t> order_;
  std::mt19937_64 rng_;
  std::int64_t epoch_ = -1;
  std::size_t slot_ = static_cast<std::size_t>(-1);
};

namespace detail {

inline long long wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A line on stderr with the wall-clock time in ms (the cluster tests time recovery from it).
inline void elastic_line(const std::string& line) {
  std::fprintf(stderr, "[%lld] %s\n", wall_ms(), line.c_str());
  std::fflush(stderr);
}

// --checkpoint DIR under --elastic: DIR/<method>.step<K>.elastic.safetensors, one file for the
// group (dppf::save_elastic: the mean parameters, rank 0's optimizer and rule state and
// counters, the generation and member count), written by rank 0, its two newest kept. A resume,
// with any number of workers, loads the newest one on every member (rank 0 chooses it).
class elastic_checkpoints {
 public:
  explicit elastic_checkpoints(const run_options& o) : o_(o), dir_(o.checkpoint_dir) {}
  bool enabled() const { return !dir_.empty(); }
  bool due(std::int64_t steps, bool epoch_end) const {
    return enabled() && (o_.checkpoint_every > 0 ? steps % o_.checkpoint_every == 0 : epoch_end);
  }

  template <class Trainer>
  void save(Trainer& tr, const std::vector<float>& params) {
    dppf::safetensors out = dppf::save_elastic(tr, params);
    if (tr.group().rank() != 0) return;
    out.set_metadata("fmnist.options", options_text(o_));
    std::filesystem::create_directories(dir_);
    out.save(file(tr.steps()));  // atomic
    const auto all = steps();
    std::error_code ignored;
    for (std::size_t i = 2; i < all.size(); ++i) std::filesystem::remove(file(all[i]), ignored);
  }

  // The newest checkpoint rank 0 sees, loaded on every member; nullopt when there is none.
  template <class Trainer>
  std::optional<dppf::elastic_checkpoint_info> resume(Trainer& tr, std::vector<float>& params) {
    const auto mine = steps();
    const double newest = tr.group().comm().all_gather(mine.empty() ? -1.0 : static_cast<double>(mine[0]))[0];
    if (newest < 0.0) return std::nullopt;
    const auto path = file(static_cast<std::int64_t>(newest));
    const dppf::safetensors in = dppf::safetensors::load(path);
    const std::string diff = first_difference(options_text(o_), in.metadata("fmnist.options"), "in this run", "in the checkpoint");
    if (!diff.empty()) throw dppf::checkpoint_error("--resume: " + path.string() + " is of another run: " + diff);
    return dppf::load_elastic(in, tr, params);
  }

 private:
  std::filesystem::path file(std::int64_t step) const {
    return dir_ / (o_.method + ".step" + std::to_string(step) + ".elastic.safetensors");
  }
  std::vector<std::int64_t> steps() const {  // newest first
    return checkpoint_steps(dir_, o_.method + ".step", ".elastic.safetensors");
  }

  const run_options& o_;
  std::filesystem::path dir_;
};

inline std::string membership(const dppf::elastic_group& g) {
  return "generation " + std::to_string(g.generation().number) + ", " + std::to_string(g.size()) + " workers (ids " +
         dppf::elastic_generation::join(g.generation().members) + "), this one rank " + std::to_string(g.rank());
}

template <class Rule>
run_result train_elastic_with(Rule rule, std::int64_t tau, const run_options& o, const dataset& train, const dataset& test,
                              const callbacks& cb, const elastic_settings& s, elastic_outcome& outcome) {
  dppf::elastic_group_options go;
  go.gloo = s.gloo;
  go.min_workers = s.min_workers;
  go.on_change = [](const std::string& line) { elastic_line("fashion_mnist: " + line); };
  auto group = std::make_shared<dppf::elastic_group>(s.store, s.founders, go);

  elastic_deal deal(o, train.count, s.founders, s.lost_shard == "redeal");
  const std::int64_t spe = deal.steps_per_epoch(), total = spe * o.epochs;
  run_options capacity = o;
  capacity.batch = deal.max_batch();  // redeal: a member's part grows as members go
  host_backend backend{train, test};
  backend.prepare(2);  // one OpenBLAS thread: one worker per process, as many per machine
  host_replica rep = backend.make_replica(capacity);
  dppf::elastic_trainer tr(group, dppf::sgd{{.lr = o.lr, .momentum = o.momentum, .weight_decay = o.weight_decay}}, rule,
                           dppf::host_executor{}, trainer_options_for(o, tau), {.agreement = s.options});
  tr.start(rep.params());
  const std::string me = "fashion_mnist: " + o.method + ": worker " + std::to_string(group->id());  // final once in
  elastic_line(me + ": " + (tr.steps() > 0 ? "let in at step " + std::to_string(tr.steps()) + ", " : "started, ") + membership(*group));

  run_result result;
  result.options = o;
  result.epochs.resize(static_cast<std::size_t>(o.epochs));
  const auto t0 = std::chrono::steady_clock::now();
  const auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  // x_bar's metrics, committed on every member (run again over the survivors after a loss).
  const auto evaluate = [&](double loss_mean, int epoch) {
    epoch_record rec{};
    group->run_committed(
        [&] {
          auto& comm = group->comm();
          const auto m = static_cast<std::size_t>(comm.size()), r = static_cast<std::size_t>(comm.rank());
          rec.minibatch_loss = comm.all_reduce(loss_mean, dppf::reduce_op::avg);
          dppf::copy(dppf::host_executor{}, rep.params(), rep.xbar());
          comm.all_reduce(rep.xbar(), dppf::reduce_op::avg);
          for (const bool test_set : {false, true}) {
            const std::size_t count = test_set ? test.count : train.count, per = (count + m - 1) / m;
            const std::size_t begin = std::min(count, per * r), n = std::min(count, begin + per) - begin;
            const eval_sums e = n ? rep.evaluate_xbar(test_set, begin, n) : eval_sums{};
            const double loss = comm.all_reduce(e.loss, dppf::reduce_op::sum);
            const double correct = comm.all_reduce(e.correct, dppf::reduce_op::sum);
            const double seen = comm.all_reduce(e.count, dppf::reduce_op::sum);
            (test_set ? rec.test_loss : rec.train_loss) = loss / seen;
            (test_set ? rec.test_acc : rec.train_acc) = correct / seen;
          }
        },
        [] {}, false);
    const dppf::elastic_stats st = tr.stats();
    rec.epoch = epoch;
    rec.relaxed_mv = st.mean_distance;
    rec.comm_bytes = st.bytes;
    rec.wall_s = seconds();
    return rec;
  };

  // After the last step of an epoch, every member evaluates.
  double loss_sum = 0.0;
  const auto end_of_epoch = [&] {
    if (tr.steps() == 0 || tr.steps() % spe != 0) return;
    const int epoch = static_cast<int>(tr.steps() / spe);
    const epoch_record rec = evaluate(loss_sum / static_cast<double>(spe), epoch);
    result.epochs[static_cast<std::size_t>(epoch - 1)] = rec;
    if (group->rank() == 0 && cb.epoch) cb.epoch(o, rec);
    loss_sum = 0.0;
  };
  elastic_checkpoints ckpt(o);
  // After every step: the epoch's evaluation and the checkpoint, both collective, so a newcomer
  // let in at a step joins them at that step as the members do.
  const auto end_of_step = [&] {
    end_of_epoch();
    if (ckpt.due(tr.steps(), tr.steps() % spe == 0)) {
      ckpt.save(tr, rep.params());
      if (group->rank() == 0 && cb.checkpoint) cb.checkpoint(o, tr.steps(), false);
    }
  };
  if (tr.steps() == 0) {  // the founders (newcomers come after a sync)
    if (s.agree) s.agree(group->comm());
    if (ckpt.enabled() && o.resume)
      if (const auto info = ckpt.resume(tr, rep.params())) {
        elastic_line(me + ": resumed at step " + std::to_string(tr.steps()) + " from the checkpoint of generation " +
                     std::to_string(info->generation) + " with " + std::to_string(info->members) + " workers, now " +
                     std::to_string(group->size()) + " (each from their mean and rank 0's optimizer state)");
        if (group->rank() == 0 && cb.checkpoint) cb.checkpoint(o, tr.steps(), true);
      }
  } else {
    end_of_step();
  }
  std::int64_t generation = group->generation().number;
  auto epoch_start = std::chrono::steady_clock::now();  // for the progress display's samples/s
  double epoch_images = 0.0;
  while (tr.steps() < total) {
    const std::int64_t step = tr.steps(), syncs = tr.syncs();
    const auto step_start = std::chrono::steady_clock::now();
    const auto batch = deal.batch(step, group->id(), group->rank(), group->size());
    const double group_images = static_cast<double>(batch.size()) * group->size();  // every member's part is as large
    const double loss = rep.loss_and_grad(batch);
    tr.step(rep.params(), rep.grads(), loss);
    const auto step_time = std::chrono::steady_clock::now() - step_start;
    loss_sum += loss;
    if (group->generation().number != generation) {
      generation = group->generation().number;
      elastic_line(me + ": membership changed at step " + std::to_string(tr.steps()) + ": now " + membership(*group));
    }
    if (s.sync_log && tr.syncs() > syncs)
      elastic_line(me + ": sync " + std::to_string(tr.syncs()) + " committed at step " + std::to_string(tr.steps()) + " (" +
                   membership(*group) + ")");
    const std::int64_t within = (tr.steps() - 1) % spe + 1;
    if (within == 1) {
      epoch_start = std::chrono::steady_clock::now() - step_time;
      epoch_images = 0.0;
    }
    epoch_images += group_images;
    if (group->rank() == 0 && cb.progress) {
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      cb.progress(progress_info{o.method, static_cast<int>((tr.steps() - 1) / spe) + 1, o.epochs, within, spe,
                                loss_sum / static_cast<double>(within), dt > 0.0 ? epoch_images / dt : 0.0});
    }
    end_of_step();
  }
  const dppf::elastic_stats st = tr.stats();
  tr.average(rep.params());
  const dppf::elastic_stats end = tr.stats();
  result.x_bar = rep.params();
  result.steps = st.steps;
  result.syncs = st.syncs;
  result.comm_bytes = st.bytes;
  result.wall_s = seconds();
  outcome = {{s.founders, end.members, end.generation}, group->rank() == 0};
  elastic_line(me + ": finished " + std::to_string(st.steps) + " steps, " + std::to_string(st.syncs) + " syncs, " +
               membership(*group));
  if (outcome.printer && o.sharpness_samples > 0) sharpness(result, train);
  return result;
}

}  // namespace detail

/// Trains one method as a worker of an elastic group (see the top); the result is complete on
/// every member, `outcome.printer` says whether this one prints it.
inline run_result train_elastic(const run_options& o, const dataset& train, const dataset& test, const callbacks& cb,
                                const elastic_settings& s, elastic_outcome& outcome) {
  run_options checked = o;
  checked.workers = s.founders;
  validate(checked, train.count);
  validate_elastic(s, checked);
  return with_rule(checked, [&](auto rule, std::int64_t tau) -> run_result {
    return detail::train_elastic_with(rule, tau, checked, train, test, cb, s, outcome);
  });
}

}  // namespace fmnist
