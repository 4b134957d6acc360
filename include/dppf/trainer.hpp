#pragma once
// dppf::trainer: composes a local optimizer, a consensus rule, a communicator and an executor.
// It owns no model: the user's code computes gradients into a buffer and calls step(), which runs
// the local optimizer step and, every tau steps, the rule's sync. State (optimizer, rule, scratch)
// is allocated through the executor on the first step, for the parameters' element type.
//
// Overlapped sync (trainer_options::overlap_steps = d > 0): at a sync step each worker copies
// x_i into a snapshot s_i and starts an asynchronous all-reduce of the snapshots; the next d
// local steps run while it proceeds (step() calls the handle's test() after each, which is what
// moves an MPI reduction forward), and at the d-th the rule's update is computed on the snapshot
// and applied with the local progress kept: x_i <- F(s_i) + (x_i - s_i). One extra buffer of N
// parameters (the snapshot); the mean arrives in the scratch buffer.
//
// Compressed sync (trainer_options::sync_precision = bf16 or fp16): the rule's mean is computed
// by compression/compressed_mean.hpp (16-bit differences from a shared reference, with error
// feedback) into the scratch buffer before the rule's sync runs; the parameters stay in their
// own type. Costs the reference and the residual (2 N parameters) and about 2 N words of scratch.
// Over a communicator whose members change (changing_membership: an elastic group), the first
// sync over new members is the exact mean in full precision and starts the state again.
//
// Both (overlap_steps = d > 0 and a compressed sync, over an async_exchange_communicator): the
// snapshot's compressed mean runs in three parts; the all-to-all starts at the sync step, the
// owners' reduction and the all-gather at the step (d + 1) / 2 steps later (when that is before
// the due step; else at the due step), the mean is written at the due step. Every rank passes
// those points at the same step, so the collectives start in the same order everywhere (which
// MPI requires) whatever each rank's test() saw. The same mean, the same bits, as the blocking
// compressed sync of the snapshot.

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <tuple>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "async_communicator.hpp"
#include "buffer.hpp"
#include "communicator.hpp"
#include "consensus/rule.hpp"
#include "communicators/counting.hpp"
#include "compression/compressed_mean.hpp"
#include "compression/precision.hpp"
#include "exchange_communicator.hpp"
#include "error.hpp"
#include "executor.hpp"
#include "optimizers/local_optimizer.hpp"
#include "optimizers/schedule.hpp"

namespace dppf {

struct trainer_options {
  std::int64_t tau = 4;           ///< local steps between syncs
  std::int64_t warmup_steps = 0;  ///< for the first W steps the push is off ...
  std::int64_t warmup_tau = 0;    ///< ... and syncs come every warmup_tau steps (0: every tau)
  bool average_optimizer_state = false;  ///< average momentum / Adam moments at every sync
  non_finite_policy on_non_finite = non_finite_policy::raise;
  /// d: the sync overlaps the next d local steps and its correction, computed on a snapshot
  /// taken at the sync step, is applied d steps later (0: the blocking sync). 0 <= d <= tau
  /// (elastic_trainer: d < tau); needs an async_communicator and an overlappable rule.
  std::int64_t overlap_steps = 0;
  /// The format the sync's mean travels in: full (the parameters' own type, today's all-reduce
  /// bit for bit), bf16 or fp16 (compressed_mean.hpp). Compressed needs an exchange_communicator,
  /// host memory and a rule whose sync reads the others only through the mean (the overlappable
  /// ones); with overlap_steps > 0 an async_exchange_communicator.
  dppf::sync_precision sync_precision = dppf::sync_precision::full;
  /// Error feedback of a compressed sync; off only to measure the drift it prevents.
  bool sync_error_feedback = true;

  /// Throws invalid_argument_error naming the first bad field and its value.
  void validate() const {
    detail::require_option(tau >= 1, "trainer", "tau", tau, "must be >= 1");
    detail::require_option(warmup_steps >= 0, "trainer", "warmup_steps", warmup_steps, "must be >= 0");
    detail::require_option(warmup_tau >= 0, "trainer", "warmup_tau", warmup_tau, "must be >= 0");
    if (overlap_steps < 0 || overlap_steps > tau)
      detail::require_option(false, "trainer", "overlap_steps", overlap_steps,
                             ("must be in [0, tau] = [0, " + std::to_string(tau) + "] (0: blocking sync)").c_str());
  }
};

/// The trainer's report: the last sync's report plus counters.
struct trainer_stats : sync_report {
  std::int64_t steps = 0;       ///< local steps taken
  std::int64_t syncs = 0;       ///< syncs run
  std::uint64_t bytes = 0;      ///< payload bytes this rank sent through collectives, in total
  std::uint64_t sync_bytes = 0; ///< of which in the last sync (for data parallel: the last step)
  std::uint64_t collectives = 0;
  std::uint64_t wire_bytes = 0; ///< bytes this rank sent on the wire, in total (communication_counts::wire_bytes)
  /// Overlapped syncs whose all-reduce had completed when their correction came due (the wait
  /// did not block): the reduction progressed during the local steps.
  std::int64_t overlapped_syncs = 0;
};

/// No learning-rate schedule: the optimizer's lr is used as it is.
struct fixed_lr {};

namespace detail {
struct trainer_access;  // what checkpointing needs of a trainer's internals (defined below)

// The handle of the trainer's asynchronous all-reduce of T (a placeholder when C has none).
template <class C, class Space, class T, bool = async_communicator<C>>
struct sync_handle {
  using type = completed_handle;
};
template <class C, class Space, class T>
struct sync_handle<C, Space, T, true> {
  using type = decltype(std::declval<C&>().start_all_reduce(std::declval<span_for<Space, const T>>(),
                                                            std::declval<span_for<Space, T>>(), reduce_op::avg));
};

// An overlapped compressed mean of T in flight (a placeholder where C cannot start exchanges).
template <class C, class T, bool = async_exchange_communicator<C>>
struct compressed_flight {
  using type = std::monostate;
};
template <class C, class T>
struct compressed_flight<C, T, true> {
  using type = typename compressed_mean<T>::template in_flight<C>;
};
}  // namespace detail

/// The optimizer is a local_optimizer on Exec, the rule a consensus on Exec over the trainer's
/// counting_communicator<Comm>, the schedule fixed_lr or an lr_schedule. These are checked by
/// static_asserts, which name the concept and say why it fails where the trainer is built (a
/// constraint on the class would only say "no viable deduction guide" in class template
/// argument deduction).
template <class Optimizer, class Consensus, communicator Comm, executor Exec, class Schedule = fixed_lr>
class trainer {
  static_assert(local_optimizer<Optimizer, Exec>, "dppf::trainer: Optimizer must model dppf::local_optimizer<Optimizer, Exec>");
  static_assert(consensus<Consensus, Exec, counting_communicator<Comm>>,
                "dppf::trainer: Consensus must model dppf::consensus<Consensus, Exec, counting_communicator<Comm>>");
  static_assert(std::same_as<Schedule, fixed_lr> || lr_schedule<Schedule>,
                "dppf::trainer: Schedule must be dppf::fixed_lr or model dppf::lr_schedule");

 public:
  trainer(Optimizer optimizer, Consensus rule, Comm comm, Exec ex, trainer_options options = {}, Schedule schedule = {})
      : optimizer_(std::move(optimizer)),
        rule_(std::move(rule)),
        comm_(std::move(comm)),
        ex_(std::move(ex)),
        options_(options),
        schedule_(std::move(schedule)),
        base_lr_(validated_initial_lr()) {}

  /// One local step on this worker (gradients in `grads`, optionally its loss) and, when due, the
  /// sync. Collective: every rank calls step() the same number of times.
  template <parameter_buffer P, parameter_buffer G>
    requires runs_on<Exec, P> && runs_on<Exec, G>
  void step(P&& params, const G& grads, double loss = std::numeric_limits<double>::quiet_NaN()) {
    step_impl(params, grads, loss, static_cast<span_for<typename Exec::memory_space, float>*>(nullptr));
  }

  /// As above, and `buffers` (non-trainable state such as BatchNorm statistics) is averaged at
  /// every sync, never pushed.
  template <parameter_buffer P, parameter_buffer G, parameter_buffer B>
    requires runs_on<Exec, P> && runs_on<Exec, G> && runs_on<Exec, B>
  void step(P&& params, const G& grads, double loss, B&& buffers) {
    auto v = view(buffers);
    step_impl(params, grads, loss, &v);
  }

  /// Allocates this trainer's state for `params` without taking a step (collective; the first
  /// step does it otherwise). Checks that every rank has the same number of parameters and lets
  /// the rule initialize its state from them. Used before loading a checkpoint.
  template <parameter_buffer P>
    requires runs_on<Exec, P>
  void prepare(P&& params) {
    using T = std::remove_cv_t<buffer_element_t<P&>>;
    detail::require_not_empty(std::ranges::size(params), "trainer::prepare: parameters");
    (void)prepare_workspace<T>(params);
  }

  /// x_bar on every rank (in place): the model to evaluate and deliver. Collective.
  template <parameter_buffer P>
    requires runs_on<Exec, P>
  void average(P&& params) {
    detail::require_not_empty(std::ranges::size(params), "trainer::average: parameters");
    require_same_size_on_all_ranks(comm_, std::ranges::size(params), "trainer::average: parameters");
    finish_sync(params);
    comm_.all_reduce(view(params), reduce_op::avg);
  }

  /// Applies an in-flight overlapped sync to `params` now rather than at its due step (after the
  /// last step of a run, before an evaluation). Collective; nothing to do without one.
  template <parameter_buffer P>
    requires runs_on<Exec, P>
  void finish_sync(P&& params) {
    using T = std::remove_cv_t<buffer_element_t<P&>>;
    auto& slot = workspace_slot<T>();
    if (!slot || !slot->pending) return;
    detail::require_same_size(std::ranges::size(params), std::ranges::size(slot->snapshot), "trainer::finish_sync: parameters");
    finish_delayed<T>(params, *slot);
  }

  /// Moves an in-flight overlapped sync forward (test() on its all-reduce) and says whether it
  /// has settled: its mean arrived, or it failed (true without one). step() calls it after every
  /// local step; call it more often (e.g. during the backward pass) where the communicator
  /// progresses only inside its calls, as MPI does. An error of the all-reduce is raised by the
  /// step at which the sync comes due, on every rank at the same step.
  bool progress() {
    bool arrived = true;
    std::apply([&](auto&... slot) { ((arrived = poll(slot) && arrived), ...); }, workspaces_);
    return arrived;
  }

  /// True while an overlapped sync is started and its correction not yet applied.
  bool sync_in_flight() const noexcept {
    return std::apply([](const auto&... slot) { return ((slot && slot->pending) || ...); }, workspaces_);
  }

  trainer_stats stats() const {
    trainer_stats s;
    static_cast<sync_report&>(s) = last_;
    s.steps = steps_;
    s.syncs = syncs_;
    s.bytes = comm_.counts().bytes;
    s.sync_bytes = sync_bytes_;
    s.collectives = comm_.counts().collectives();
    s.wire_bytes = comm_.counts().wire_bytes;
    s.overlapped_syncs = overlapped_syncs_;
    return s;
  }

  std::int64_t steps() const noexcept { return steps_; }
  std::int64_t syncs() const noexcept { return syncs_; }
  const trainer_options& options() const noexcept { return options_; }
  Optimizer& optimizer() noexcept { return optimizer_; }
  const Consensus& rule() const noexcept { return rule_; }
  counting_communicator<Comm>& comm() noexcept { return comm_; }
  const Exec& exec() const noexcept { return ex_; }

  /// True when the step with this 0-based index ends with a sync.
  bool syncs_after(std::int64_t step) const noexcept {
    if constexpr (Consensus::averages_gradients) return false;
    const bool warm = step < options_.warmup_steps;
    const std::int64_t every = warm && options_.warmup_tau > 0 ? options_.warmup_tau : options_.tau;
    return (step + 1) % every == 0;
  }

  /// The learning rate for a 0-based step: the schedule's, or without one the optimizer's own
  /// (so optimizer().set_lr() between steps takes effect).
  double lr_at(std::int64_t step) const {
    if constexpr (std::is_same_v<Schedule, fixed_lr>) {
      (void)step;
      return optimizer_.lr();
    } else {
      return schedule_(step);
    }
  }

  /// Per-element-type workspace: optimizer state, the rule's state and the scratch buffer, and
  /// for an overlapped sync the snapshot and the sync in flight.
  template <class T>
  using compressed_mean_type = std::conditional_t<std::same_as<typename Exec::memory_space, host_space>, compressed_mean<T>, std::monostate>;

  template <class T>
  struct workspace {
    using buffer_type = buffer_t<Exec, T>;
    /// A sync started and not yet applied: the snapshots' all-reduce into scratch, and the
    /// context of the sync step the correction is computed with.
    struct in_flight_sync {
      std::optional<typename detail::sync_handle<counting_communicator<Comm>, typename Exec::memory_space, T>::type>
          reduction;                ///< until the mean is known to be in scratch
      /// A compressed sync's exchanges instead, until the mean is written into scratch.
      std::optional<typename detail::compressed_flight<counting_communicator<Comm>, T>::type> compressed;
      std::int64_t gather_at = 0;   ///< the step that starts a compressed sync's all-gather
      std::int64_t due = 0;         ///< applied by the step that makes steps() == due
      double lr_ratio = 1.0;        ///< the sync step's lr(step) / lr(0) ...
      double loss = std::numeric_limits<double>::quiet_NaN();  ///< ... mean loss ...
      bool warmup = false;          ///< ... and warm-up flag
      bool arrived = false;         ///< test() saw the mean arrive during the local steps
      std::exception_ptr error{};   ///< test() saw the all-reduce fail: raised at the due step
      std::uint64_t bytes = 0;      ///< bytes sent at the sync step
      std::int64_t membership = 0;  ///< the communicator's membership_of() at the sync step
    };
    decltype(std::declval<const Optimizer&>().template init<T>(std::declval<const Exec&>(), std::size_t{1})) optimizer_state;
    typename Consensus::template state<buffer_type> rule_state{};
    buffer_type scratch;
    buffer_type snapshot{};  ///< s_i: N elements when overlap_steps > 0, none otherwise
    /// A compressed sync's reference and residuals (sync_precision bf16 or fp16), else empty.
    std::optional<compressed_mean_type<T>> compressed{};
    /// Declared after every buffer its collectives write (scratch, snapshot, the compressed
    /// state's words), so that it is destroyed first: its handles wait for them.
    std::optional<in_flight_sync> pending{};
  };

 private:
  friend struct detail::trainer_access;

  template <class T>
  std::optional<workspace<T>>& workspace_slot() noexcept {
    return std::get<std::optional<workspace<T>>>(workspaces_);
  }

  template <class T>
  using ctx_type = sync_context<Exec, counting_communicator<Comm>, T>;

  template <class P, class G, class B>
  void step_impl(P& params, const G& grads, double loss, B* buffers) {
    using T = std::remove_cv_t<buffer_element_t<P&>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const G&>>>,
                  "parameters and gradients must have the same element type");
    const std::size_t n = std::ranges::size(params);
    std::string problem;
    if (n == 0)
      problem = "trainer::step: parameters is empty";
    else if (std::ranges::size(grads) != n)
      problem = "trainer::step: gradients has " + std::to_string(std::ranges::size(grads)) + " elements, expected " +
                std::to_string(n);
    // Before the first step's collectives a local problem is agreed on, so no rank waits for one
    // that raised; later a bad argument raises on its rank before any communication.
    if (!workspace_slot<T>())
      agree_or_throw(comm_, !problem.empty(), problem);
    else if (!problem.empty())
      detail::throw_invalid(problem);
    workspace<T>& ws = prepare_workspace<T>(params);
    detail::require_same_size(std::ranges::size(ws.scratch), n, "trainer::step: parameters (size changed since the first step)");

    const double lr = lr_at(steps_);
    if constexpr (!std::is_same_v<Schedule, fixed_lr>) require_rate(lr, steps_);
    optimizer_.set_lr(lr);
    ctx_type<T> ctx = context<T>(params, grads, ws, lr);
    if (!std::isnan(loss)) {
      loss_sum_ += loss;
      ++loss_count_;
    }

    if constexpr (Consensus::averages_gradients) {
      const auto before = comm_.counts().bytes;
      if (buffers) average_buffers(*buffers);
      rule_.average_gradients(ctx);
      optimizer_.step(ex_, params, typename ctx_type<T>::const_view_type(ctx.scratch), ws.optimizer_state);
      sync_bytes_ = comm_.counts().bytes - before;
      ++steps_;
      return;
    } else {
      optimizer_.step(ex_, params, grads, ws.optimizer_state);
      const bool due = syncs_after(steps_);
      ++steps_;
      // An overlapped sync is applied at its due step, before a sync due at the same step takes
      // its snapshot (d = tau), or earlier when the next sync comes due first (warm-up syncs).
      if (ws.pending && (steps_ >= ws.pending->due || due)) {
        finish_delayed<T>(params, ws);
      } else {
        if (ws.pending && steps_ == ws.pending->gather_at) start_gather<T>(ws);
        (void)poll(workspace_slot<T>());
      }
      if (!due) return;
      const auto before = comm_.counts().bytes;
      ctx.loss = loss_count_ ? loss_sum_ / static_cast<double>(loss_count_) : std::numeric_limits<double>::quiet_NaN();
      // The buffers are checked on every rank before the parameters change.
      if (buffers) require_same_size_on_all_ranks(comm_, std::ranges::size(*buffers), "trainer::step: buffers");
      if (options_.overlap_steps > 0) {
        start_delayed<T>(ctx, ws);
        average_with_sync(buffers, ws);
        ws.pending->bytes = comm_.counts().bytes - before;
        (void)poll(workspace_slot<T>());  // MPI: the first test() starts the reduction moving
      } else {
        last_ = rule_sync(ctx, ws, [&] { compressed_average(ctx, ws); });
        average_with_sync(buffers, ws);
        sync_bytes_ = comm_.counts().bytes - before;
        ++syncs_;
      }
      loss_sum_ = 0.0;
      loss_count_ = 0;
    }
  }

  // The rule's sync, and before it the trainer's part: `mean` puts what the rule averages with
  // into scratch when the trainer computes it (a compressed mean, an overlapped sync's arrival).
  // A rule that takes that part as a third argument runs it inside its own sync (elastic_rule:
  // inside the committed operation, so that a failure there is undone and redone as the rest is).
  template <class T, class Mean>
  sync_report rule_sync(ctx_type<T>& ctx, workspace<T>& ws, const Mean& mean) {
    if constexpr (requires { rule_.sync(ctx, ws.rule_state, mean); }) {
      return rule_.sync(ctx, ws.rule_state, mean);
    } else {
      mean();
      return rule_.sync(ctx, ws.rule_state);
    }
  }

  // A compressed sync's mean into scratch, marked so that the rule's average_into_scratch keeps it.
  // Over members other than those the state was built for (an elastic group changed), the state
  // starts again: residuals zero, the reference the exact mean, which is this sync's mean.
  template <class T>
  void compressed_average(ctx_type<T>& ctx, workspace<T>& ws) {
    if constexpr (compression_possible) {
      if (!ws.compressed) return;
      const std::span<const T> x(ctx.params.data(), ctx.params.size());
      if (ws.compressed->built_for(comm_)) {
        (*ws.compressed)(comm_, x, ctx.scratch);
      } else {
        comm_.all_reduce(x, ctx.scratch, reduce_op::avg);  // the exact mean, in full precision
        restart_stale_compression(ws);
      }
      ctx.mean_in_scratch = true;
    } else {
      (void)ctx;
      (void)ws;
    }
  }

  // A compressed state built over other members than the current ones starts again from this
  // sync's exact mean, in scratch (a failure before leaves it stale, so the redo starts it too).
  template <class T>
  void restart_stale_compression(workspace<T>& ws) {
    if constexpr (compression_possible) {
      if (ws.compressed && !ws.compressed->built_for(comm_))
        ws.compressed->restart(comm_, std::span<const T>(ws.scratch.data(), ws.scratch.size()));
    } else {
      (void)ws;
    }
  }

  // What every sync averages besides the rule's own work: the buffers, the optimizer state.
  template <class B, class W>
  void average_with_sync(B* buffers, W& ws) {
    if (buffers) comm_.all_reduce(*buffers, reduce_op::avg);
    if (options_.average_optimizer_state)
      ws.optimizer_state.for_each_buffer([&](const char*, auto& b) { comm_.all_reduce(view(b), reduce_op::avg); });
  }

  // An overlapped sync's start: s_i <- x_i, then the all-reduce of the snapshots into scratch.
  template <class T>
  void start_delayed(const ctx_type<T>& ctx, workspace<T>& ws) {
    if constexpr (overlap_possible) {
      using cview = typename ctx_type<T>::const_view_type;
      dppf::copy(ex_, cview(ctx.params), view(ws.snapshot));
      ws.pending.emplace();
      ws.pending->membership = membership_of(comm_);
      if constexpr (overlap_compression_possible) {  // (over other members: the plain all-reduce, then a restart)
        if (ws.compressed && ws.compressed->built_for(comm_))
          ws.pending->compressed.emplace(ws.compressed->start(comm_, cview(view(ws.snapshot))));
      }
      if (!ws.pending->compressed) ws.pending->reduction.emplace(comm_.start_all_reduce(cview(view(ws.snapshot)), view(ws.scratch), reduce_op::avg));
      ws.pending->due = steps_ + options_.overlap_steps;
      ws.pending->gather_at = ws.pending->compressed ? steps_ + (options_.overlap_steps + 1) / 2 : -1;
      ws.pending->lr_ratio = ctx.lr_ratio;
      ws.pending->loss = ctx.loss;
      ws.pending->warmup = ctx.warmup;
    } else {
      (void)ctx;
      (void)ws;
    }
  }

  // A compressed overlapped sync's second part, at its step on every rank: the owners' reduction
  // and the all-gather. An error is kept for the due step, as poll() keeps one.
  template <class T>
  void start_gather(workspace<T>& ws) {
    if constexpr (overlap_compression_possible) {
      auto& p = *ws.pending;
      if (!p.compressed || p.error) return;
      const auto before = comm_.counts().bytes;
      try {
        ws.compressed->gather(comm_, *p.compressed);
      } catch (...) {
        p.error = std::current_exception();
        p.compressed.reset();
      }
      p.bytes += comm_.counts().bytes - before;
    } else {
      (void)ws;
    }
  }

  // An in-flight sync's mean into scratch, waiting for it (the due step, or a checkpoint, which
  // then records it). Throws its error, if any.
  template <class T>
  void complete_in_flight(workspace<T>& ws, typename workspace<T>::in_flight_sync& p) {
    if (p.error) std::rethrow_exception(p.error);
    if (p.reduction) {
      p.reduction->wait();
      p.reduction.reset();
    }
    if constexpr (overlap_compression_possible) {
      if (p.compressed) {
        using cview = typename ctx_type<T>::const_view_type;
        const auto before = comm_.counts().bytes;
        (void)ws.compressed->finish(comm_, *p.compressed, cview(view(ws.snapshot)), view(ws.scratch));
        p.compressed.reset();
        p.bytes += comm_.counts().bytes - before;
      }
    } else {
      (void)ws;
    }
  }

  // Waits for an in-flight sync's mean (a checkpoint records it); the correction still comes at
  // its due step. An error drops the sync and propagates.
  template <class T>
  void wait_in_flight() {
    auto& slot = workspace_slot<T>();
    if (!slot || !slot->pending) return;
    try {
      complete_in_flight<T>(*slot, *slot->pending);
    } catch (...) {
      slot->pending.reset();
      throw;
    }
  }

  // test() on an in-flight sync's all-reduce; true when there is none or it has settled. An
  // error is kept for the due step: ranks may see it at different local steps, and raising it
  // there, on every rank at the same step, keeps their collectives in the same order.
  // A compressed sync has arrived once its all-gather's test() turned true (its mean is written
  // at the due step).
  template <class Slot>
  static bool poll(Slot& slot) {
    if (!slot || !slot->pending) return true;
    auto& p = *slot->pending;
    if (p.reduction) {
      try {
        p.arrived = p.reduction->test();
      } catch (...) {
        p.error = std::current_exception();
        p.reduction.reset();
      }
      if (p.arrived) p.reduction.reset();
    }
    if constexpr (overlap_compression_possible) {
      if (p.compressed && !p.arrived) {
        try {
          p.arrived = p.compressed->test() && p.compressed->gathering();
        } catch (...) {
          p.error = std::current_exception();
          p.compressed.reset();
        }
      }
      return !p.reduction && (!p.compressed || p.arrived);
    } else {
      return !p.reduction;
    }
  }

  // An overlapped sync's end: wait for the mean if needed, then the rule's sync on the snapshot
  // with the live parameters in ctx.live (sync_context::live). The sync is dropped (on every
  // rank alike) if the wait or the rule raises. One started over other members than the current
  // ones (an elastic group changed since, or its mean failed and it is redone over the next
  // generation) has no mean to wait for: the snapshots' mean is taken now, blocking, over the
  // current members.
  template <class T, class P>
  void finish_delayed(P& params, workspace<T>& ws) {
    typename workspace<T>::in_flight_sync p = std::move(*ws.pending);
    ws.pending.reset();
    using cview = typename ctx_type<T>::const_view_type;
    ctx_type<T> ctx{ex_, comm_, view(ws.snapshot), view(ws.scratch), cview{}};
    ctx.loss = p.loss;
    ctx.lr_ratio = p.lr_ratio;
    ctx.warmup = p.warmup;
    ctx.on_non_finite = options_.on_non_finite;
    ctx.live = view(params);
    const auto started = p.bytes;  // at the sync step (and the compressed all-gather's start)
    const auto before = comm_.counts().bytes;
    last_ = rule_sync(ctx, ws, [&] {
      if (p.membership == membership_of(comm_)) {
        if (p.error) std::rethrow_exception(p.error);
        if (p.reduction) p.arrived = p.reduction->test();
        if (p.arrived) ++overlapped_syncs_;
        complete_in_flight<T>(ws, p);
        restart_stale_compression(ws);
      } else {
        // Its collectives were the old members'. Dropping their handles waits for them (bounded
        // by the timeout), since they write scratch.
        p.reduction.reset();
        p.compressed.reset();
        p.error = nullptr;
        compressed_average(ctx, ws);
        if (!ctx.mean_in_scratch) comm_.all_reduce(cview(view(ws.snapshot)), view(ws.scratch), reduce_op::avg);
      }
    });
    sync_bytes_ = started + (comm_.counts().bytes - before);
    ++syncs_;
  }

  template <class B>
  void average_buffers(B& buffers) {
    require_same_size_on_all_ranks(comm_, std::ranges::size(buffers), "trainer::step: buffers");
    comm_.all_reduce(buffers, reduce_op::avg);
  }

  static constexpr bool overlap_possible =
      !Consensus::averages_gradients && overlappable_v<Consensus> && async_communicator<Comm>;
  static constexpr bool overlap_compression_possible =
      overlap_possible && std::same_as<typename Exec::memory_space, host_space> && async_exchange_communicator<Comm>;

  // overlap_steps > 0 needs a rule with a delayed form and a communicator that can start an
  // all-reduce; refused when the trainer is built, naming what is missing.
  void check_overlap() const {
    const auto d = std::to_string(options_.overlap_steps);
    if (options_.overlap_steps == 0) return;
    if constexpr (Consensus::averages_gradients)
      detail::throw_invalid("trainer: overlap_steps = " + d +
                            ": this rule (data_parallel) averages gradients before every step; there is no periodic "
                            "sync to overlap (use overlap_steps = 0)");
    else if constexpr (!overlappable_v<Consensus>)
      detail::throw_invalid("trainer: overlap_steps = " + d +
                            ": this consensus rule has no delayed form (pull_push, local_sgd, elastic and diloco have "
                            "one; leader and grawa choose their target from values gathered at the sync step; a rule "
                            "declares `overlappable` when its sync reads the others only through average_into_scratch "
                            "and writes the parameters only through update_params)");
    else if constexpr (!async_communicator<Comm>)
      detail::throw_invalid("trainer: overlap_steps = " + d +
                            " needs an asynchronous communicator (dppf::async_communicator, with start_all_reduce); "
                            "this communicator has only blocking collectives (use overlap_steps = 0)");
  }

  static constexpr bool compression_possible = !Consensus::averages_gradients && overlappable_v<Consensus> &&
                                               exchange_communicator<Comm> &&
                                               std::same_as<typename Exec::memory_space, host_space>;

  // A compressed sync needs what compressed_mean needs and a rule that reads the others only
  // through the mean; refused when the trainer is built, naming what is missing. Not inlined: the
  // messages' string concatenations, inlined into a caller, set off GCC 12's false -Wrestrict.
  [[gnu::noinline]] void check_compression() const {
    if (options_.sync_precision == sync_precision::full) return;
    if (options_.sync_precision != sync_precision::bf16 && options_.sync_precision != sync_precision::fp16)
      detail::require_option(false, "trainer", "sync_precision", static_cast<int>(options_.sync_precision), "must be full, bf16 or fp16");
    const std::string p = std::string("trainer: sync_precision = ") + to_string(options_.sync_precision);
    if constexpr (Consensus::averages_gradients)
      detail::throw_invalid(p + ": this rule (data_parallel) averages gradients, not parameters; a compressed sync sends "
                                "differences of the parameters from their last mean (use sync_precision = full)");
    else if constexpr (!overlappable_v<Consensus>)
      detail::throw_invalid(p + ": this consensus rule reads the other workers beyond their mean (pull_push, local_sgd, "
                                "elastic and diloco can compress; leader and grawa cannot)");
    else if constexpr (!exchange_communicator<Comm>)
      detail::throw_invalid(p + " needs a communicator with all_to_all and all_gather of 16-bit words "
                                "(dppf::exchange_communicator: thread_group, mpi, gloo, single); this one has none");
    else if constexpr (!std::same_as<typename Exec::memory_space, host_space>)
      detail::throw_invalid(p + " needs host memory (the exchange collectives are host collectives)");
    if constexpr (!async_exchange_communicator<Comm>)
      if (options_.overlap_steps > 0)
        detail::throw_invalid(p + " with overlap_steps = " + std::to_string(options_.overlap_steps) +
                              " needs a communicator that can start its exchanges (dppf::async_exchange_communicator, "
                              "with start_all_to_all and start_all_gather: thread_group, mpi, gloo, single); this one "
                              "cannot (use one of them)");
  }

  // The options and the schedule are validated once, here, before the schedule's first call.
  double validated_initial_lr() const {
    options_.validate();
    check_overlap();
    check_compression();
    if constexpr (std::is_same_v<Schedule, fixed_lr>) {
      return optimizer_.lr();
    } else {
      validate_schedule(schedule_);
      const double lr = schedule_(0);
      require_rate(lr, 0);
      return lr;
    }
  }

  // A schedule is a user callable: each rate it returns is checked (cheaply) before it is used.
  static void require_rate(double lr, std::int64_t step) {
    if (!(lr >= 0.0 && std::isfinite(lr)))
      detail::require_option(false, "trainer", ("the schedule's rate at step " + std::to_string(step)).c_str(), lr,
                             "must be >= 0 and finite");
  }

  template <class T, class P, class G>
  ctx_type<T> context(P& params, const G& grads, workspace<T>& ws, double lr) {
    ctx_type<T> ctx{ex_, comm_, view(params), view(ws.scratch), view(grads)};
    ctx.lr_ratio = base_lr_ > 0.0 ? lr / base_lr_ : 1.0;
    ctx.warmup = steps_ < options_.warmup_steps;
    ctx.on_non_finite = options_.on_non_finite;
    return ctx;
  }

  // The first step with element type T allocates the workspace, checks that every rank has the
  // same number of parameters (collectively, so no rank is left waiting) and lets the rule
  // initialize its state (e.g. the EASGD center, DiLoCo's global model).
  template <class T, class P>
  workspace<T>& prepare_workspace(P& params) {
    auto& slot = workspace_slot<T>();
    if (!slot) slot.emplace(make_workspace<T>(params));
    return *slot;
  }

  // The workspace the first step would allocate, not yet installed (collective).
  template <class T, class P>
  workspace<T> make_workspace(P& params) {
    const std::size_t n = std::ranges::size(params);
    require_same_size_on_all_ranks(comm_, n, "trainer: parameters");
    workspace<T> ws{optimizer_.template init<T>(ex_, n), {}, ex_.template allocate<T>(n)};
    if (options_.overlap_steps > 0) ws.snapshot = ex_.template allocate<T>(n);
    if constexpr (compression_possible)
      if (options_.sync_precision != sync_precision::full)
        ws.compressed.emplace(comm_, std::span<const T>(std::ranges::data(params), n),
                              compressed_mean_options{options_.sync_precision, options_.sync_error_feedback});
    const std::span<const T> no_grads{};
    ctx_type<T> ctx{ex_, comm_, view(params), view(ws.scratch), typename ctx_type<T>::const_view_type(no_grads.data(), 0)};
    rule_.init(ctx, ws.rule_state);
    return ws;
  }

  Optimizer optimizer_;
  Consensus rule_;
  counting_communicator<Comm> comm_;
  Exec ex_;
  trainer_options options_;
  Schedule schedule_;
  double base_lr_;
  std::tuple<std::optional<workspace<float>>, std::optional<workspace<double>>> workspaces_;
  sync_report last_{};
  std::int64_t steps_ = 0;
  std::int64_t syncs_ = 0;
  std::uint64_t sync_bytes_ = 0;
  std::int64_t overlapped_syncs_ = 0;
  double loss_sum_ = 0.0;
  std::int64_t loss_count_ = 0;
};

template <class Optimizer, class Consensus, class Comm, class Exec>
trainer(Optimizer, Consensus, Comm, Exec, trainer_options) -> trainer<Optimizer, Consensus, Comm, Exec, fixed_lr>;
template <class Optimizer, class Consensus, class Comm, class Exec>
trainer(Optimizer, Consensus, Comm, Exec) -> trainer<Optimizer, Consensus, Comm, Exec, fixed_lr>;

namespace detail {

/// The one door to a trainer's internals, for checkpointing (checkpoint/trainer_checkpoint.hpp)
/// and tests: its per-element-type workspace and its counters. Not for training code: what is
/// set here bypasses the checks of step().
struct trainer_access {
  struct counters {
    std::int64_t steps = 0;
    std::int64_t syncs = 0;
    double loss_sum = 0.0;        ///< losses passed to step() since the last sync ...
    std::int64_t loss_count = 0;  ///< ... and how many
  };

  /// The workspace for T, or nullptr before the first step with T.
  template <class T, class Trainer>
  static auto* workspace(Trainer& tr) noexcept {
    auto& slot = tr.template workspace_slot<T>();
    return slot ? &*slot : nullptr;
  }

  /// The workspace the first step would allocate for `params`, built but not installed.
  /// Collective, as the first step: sizes agreed across ranks, then the rule's init.
  template <class T, class Trainer, class P>
  static auto make_workspace(Trainer& tr, P& params) {
    return tr.template make_workspace<T>(params);
  }

  /// Installs a workspace for T, or removes it (std::nullopt: the next step allocates it again).
  template <class T, class Trainer>
  static void set_workspace(Trainer& tr, std::optional<typename Trainer::template workspace<T>> ws) {
    tr.template workspace_slot<T>() = std::move(ws);
  }

  /// Waits for the all-reduce of an in-flight overlapped sync of T, whose mean is then in the
  /// workspace's scratch buffer and its snapshot in `snapshot` (what a checkpoint records); the
  /// correction is still applied at its due step, so the run's values do not change.
  template <class T, class Trainer>
  static void wait_in_flight(Trainer& tr) {
    tr.template wait_in_flight<T>();
  }

  template <class Trainer>
  static counters get_counters(const Trainer& tr) noexcept {
    return {tr.steps_, tr.syncs_, tr.loss_sum_, tr.loss_count_};
  }

  template <class Trainer>
  static void set_counters(Trainer& tr, const counters& c) noexcept {
    tr.steps_ = c.steps;
    tr.syncs_ = c.syncs;
    tr.loss_sum_ = c.loss_sum;
    tr.loss_count_ = c.loss_count;
  }
};

}  // namespace detail

}  // namespace dppf
