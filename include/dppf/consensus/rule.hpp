#pragma once
// The consensus concept: the rule a group of workers applies every tau local steps.
//
// A rule is a small copyable type with
//   template <class Buffer> struct state;               per-worker state (centers, outer momentum),
//                                                        with for_each_buffer(f(name, buffer))
//   template <class Ctx> void init(Ctx&, state&);        once, before the first step
//   template <class Ctx> sync_report sync(Ctx&, state&); the synchronization itself
//   static constexpr bool averages_gradients;            true only for synchronous data parallel,
//   template <class Ctx> void average_gradients(Ctx&);   which then averages before every step
// and runs on any executor and communicator through a sync_context. The shared machinery lives
// here: the distance pass (one fused read of x and the rule's target, accumulated in double,
// which also detects non-finite values), the gather of every worker's distance, and the
// non-finite policy, applied identically on every rank.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../algorithms.hpp"
#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../executor.hpp"

namespace dppf {

/// What a sync does when a worker's parameters (or the mean) hold a NaN or an infinity.
enum class non_finite_policy {
  raise,  ///< every rank throws dppf::non_finite_error (the default); nothing is changed
  skip,   ///< every rank leaves its parameters as they are; the report says skipped
  reset,  ///< every worker is set to the mean of the workers that are finite
};

/// The report of one synchronization, as seen by one worker.
struct sync_report {
  double distance = 0.0;       ///< r_i: this worker's distance to the rule's target before the update
  double mean_distance = 0.0;  ///< mean_j r_j; for DPPF the relaxed mean valley width
  double min_distance = 0.0;
  double max_distance = 0.0;
  bool pushed = false;   ///< the DPPF push ran on this worker
  bool skipped = false;  ///< non-finite values: the sync was skipped
  bool reset = false;    ///< non-finite values: workers were reset to the finite mean
  double alpha = 0.0;    ///< effective pull strength used (after schedules)
  double lambda = 0.0;   ///< effective push strength used (after schedules)
};

/// Everything a consensus rule may use during one sync. Views are of the executor's memory space.
template <class Exec, class Comm, class T>
struct sync_context {
  using value_type = T;
  using view_type = span_for<typename Exec::memory_space, T>;
  using const_view_type = span_for<typename Exec::memory_space, const T>;

  const Exec& ex;
  Comm& comm;
  view_type params;        ///< this worker's parameters x_i, updated in place
  view_type scratch;       ///< N elements of workspace (holds x_bar or the rule's target)
  const_view_type grads;   ///< the gradient of the last local step
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean loss since the last sync
  double lr_ratio = 1.0;   ///< lr(step) / lr(0), for strengths that follow the learning rate
  bool warmup = false;     ///< inside the warm-up: the push is off
  non_finite_policy on_non_finite = non_finite_policy::raise;
  /// Empty, except in a delayed (overlapped) sync: then `params` is the snapshot s_i taken when
  /// the sync started, `scratch` already holds the snapshots' mean, and `live` is x_i as the local
  /// steps since the snapshot left it. The rule measures and updates as usual (on the snapshot)
  /// and update_params writes x_i <- F(s_i) + (x_i - s_i) into `live`.
  view_type live{};
  /// True when `scratch` already holds the mean of the parameters when the sync starts (a
  /// compressed sync computed it: trainer_options::sync_precision); average_into_scratch keeps it.
  bool mean_in_scratch = false;
};

/// A rule whose sync sees the other workers only through average_into_scratch (the mean of the
/// parameters) and changes the parameters only through update_params can run delayed, overlapped
/// with the next local steps (trainer_options::overlap_steps). It says so with
/// `static constexpr bool overlappable = true;`.
template <class P>
inline constexpr bool overlappable_v = requires { requires static_cast<bool>(P::overlappable); };

/// The state of a rule that keeps none.
struct no_consensus_state {
  template <class F>
  void for_each_buffer(F&&) {}
};

namespace detail {
// Rule P's state, init and sync for parameters of type T, as the trainer calls them.
template <class P, class Exec, class Comm, class T>
concept consensus_for_type =
    requires { typename P::template state<buffer_t<Exec, T>>; } &&
    requires(const P& p, sync_context<Exec, Comm, T>& ctx, typename P::template state<buffer_t<Exec, T>>& s) {
      p.init(ctx, s);
      { p.sync(ctx, s) } -> std::same_as<sync_report>;
      s.for_each_buffer(probe_visitor{});
    };

// A rule that averages gradients runs the average before every local step.
template <class P, class Exec, class Comm, class T>
concept averages_gradients_for = requires(const P& p, sync_context<Exec, Comm, T>& ctx) { p.average_gradients(ctx); };
}  // namespace detail

/// A consensus rule P run by executor Exec over communicator Comm (the trainer passes its
/// counting_communicator<C>), for float and double parameters: see the file comment.
template <class P, class Exec, class Comm>
concept consensus =
    std::copy_constructible<P> && executor<Exec> && communicator<Comm> &&
    requires { { P::averages_gradients } -> std::convertible_to<bool>; } &&
    detail::consensus_for_type<P, Exec, Comm, float> && detail::consensus_for_type<P, Exec, Comm, double> &&
    (!P::averages_gradients || (detail::averages_gradients_for<P, Exec, Comm, float> &&
                                detail::averages_gradients_for<P, Exec, Comm, double>));

/// What the distance pass of a sync found (measure_distances fills it, move_toward passes it to
/// the coefficient): r_i of this worker, every worker's r_j, and their mean, min and max over the
/// finite ones; finite is false when some worker (or the target) held a NaN or an infinity.
struct distances {
  double mine = 0.0;        ///< r_i = ||x_i - target||
  std::vector<double> all;  ///< r_j of every rank, in rank order
  double mean = 0.0, min = 0.0, max = 0.0;
  bool finite = true;
};

namespace detail {

// (x - t)^2 in double: the distance pass. A NaN or an infinity in x or t makes the sum non-finite.
struct squared_distance_fn {
  template <class T>
  DPPF_HOST_DEVICE double operator()(const T& x, const T& t) const {
    const double d = static_cast<double>(x) - static_cast<double>(t);
    return d * d;
  }
};

// x <- t + c (x - t): the update of every mean-based rule (c = 0 copies t exactly).
template <class T>
struct toward_fn {
  T c;
  DPPF_HOST_DEVICE void operator()(T& x, const T& t) const { x = t + c * (x - t); }
};

// y = s, f(y, rest...), x <- y + (x - s): a rule's own update F computed on the snapshot s, plus
// the progress the live parameters x made since it (a delayed sync; see sync_context::live).
template <class F>
struct carry_progress_fn {
  F f;
  template <class T, class... R>
  DPPF_HOST_DEVICE void operator()(T& x, const T& s, R&&... rest) const {
    T y = s;
    f(y, rest...);
    x = y + (x - s);
  }
};

// scratch <- x on finite workers, 0 on the others: the input of the finite-workers mean.
template <class T>
struct masked_copy_fn {
  bool keep;
  DPPF_HOST_DEVICE void operator()(const T& x, T& out) const { out = keep ? x : T(0); }
};

// 0 for a finite x, NaN otherwise (0 * inf is NaN): the sum says whether a buffer is finite.
struct non_finite_probe_fn {
  template <class T>
  DPPF_HOST_DEVICE double operator()(const T& x) const { return static_cast<double>(x) * 0.0; }
};

// Failure path only: one NaN worker makes the mean, and so every distance, non-finite. Each
// rank checks its own parameters and the flags are gathered, so the culprits are known.
template <class Ctx>
std::vector<double> gather_own_finiteness(Ctx& ctx) {
  const double probe = ctx.ex.transform_reduce(non_finite_probe_fn{}, typename Ctx::const_view_type(ctx.params));
  return ctx.comm.all_gather(std::isfinite(probe) ? 1.0 : 0.0);
}

// In a delayed sync the flags are the snapshots' and the live parameters are reset (to the mean
// of the live parameters of the workers whose snapshot was finite).
template <class Ctx>
void reset_to_finite_mean(Ctx& ctx, const std::vector<double>& finite) {
  using T = typename Ctx::value_type;
  std::size_t healthy = 0;
  for (double f : finite) healthy += f != 0.0 ? 1 : 0;
  if (healthy == 0) throw non_finite_error("dppf: sync: every worker has non-finite parameters; nothing to reset to");
  const bool mine = finite[static_cast<std::size_t>(ctx.comm.rank())] != 0.0;
  const typename Ctx::view_type x = ctx.live.empty() ? ctx.params : ctx.live;
  ctx.ex.transform(masked_copy_fn<T>{mine}, typename Ctx::const_view_type(x), ctx.scratch);
  ctx.comm.all_reduce(ctx.scratch, reduce_op::sum);
  ctx.ex.transform(scale_fn<T>{1.0 / static_cast<double>(healthy)}, typename Ctx::const_view_type(ctx.scratch), x);
}

// The non-finite policy, applied identically on every rank once every rank's flag is known
// (finite[j] == 0 for a culprit): throws (raise), or fills the report (skip, reset) and returns
// false, meaning the rule must not update. `what` opens the message ("grawa: non-finite gradient").
template <class Ctx>
bool apply_non_finite_policy(Ctx& ctx, const std::vector<double>& finite, sync_report& report, const char* what) {
  std::string ranks;
  for (std::size_t j = 0; j < finite.size(); ++j)
    if (finite[j] == 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(j);
  if (ranks.empty()) ranks = "none (the rule's target is non-finite)";
  switch (ctx.on_non_finite) {
    case non_finite_policy::raise:
      throw non_finite_error(std::string("dppf: ") + what + " on rank(s) " + ranks + "; this is rank " +
                             std::to_string(ctx.comm.rank()));
    case non_finite_policy::skip:
      report.skipped = true;
      return false;
    case non_finite_policy::reset:
      reset_to_finite_mean(ctx, finite);
      report.reset = true;
      return false;
  }
  return false;
}

}  // namespace detail

/// The mean of every worker's parameters into ctx.scratch (one out-of-place all-reduce). In a
/// delayed sync the snapshots' mean is already there (the trainer's asynchronous all-reduce), in
/// a compressed sync the compressed mean (ctx.mean_in_scratch).
template <class Ctx>
void average_into_scratch(Ctx& ctx) {
  if (!ctx.live.empty() || ctx.mean_in_scratch) return;
  ctx.comm.all_reduce(typename Ctx::const_view_type(ctx.params), ctx.scratch, reduce_op::avg);
}

/// The elementwise update of a sync: f(x_i[k], b[k]...) for every element, x_i = ctx.params. In a
/// delayed sync f runs on the snapshot and the live parameters keep their progress since it:
/// x_i <- F(s_i) + (x_i - s_i), one pass (detail::carry_progress_fn).
template <class Ctx, class F, class... B>
void update_params(Ctx& ctx, F f, B&&... b) {
  if (ctx.live.empty())
    ctx.ex.transform(f, ctx.params, std::forward<B>(b)...);
  else
    ctx.ex.transform(detail::carry_progress_fn<F>{f}, ctx.live, typename Ctx::const_view_type(ctx.params),
                     std::forward<B>(b)...);
}

/// The distance pass of a sync: r_i = ||x_i - target|| (one fused read, accumulated in double),
/// then one all-gather so every rank knows every r_j. Applies the non-finite policy; returns
/// false when the rule must not update (skipped or reset), with the report filled in.
template <class Ctx, class Target>
bool measure_distances(Ctx& ctx, const Target& target, sync_report& report, distances& out) {
  const double r2 = ctx.ex.transform_reduce(detail::squared_distance_fn{}, typename Ctx::const_view_type(ctx.params),
                                            typename Ctx::const_view_type(target));
  out.mine = std::isfinite(r2) ? std::sqrt(r2) : std::numeric_limits<double>::quiet_NaN();
  out.all = ctx.comm.all_gather(out.mine);
  std::vector<std::size_t> bad;
  double sum = 0.0, lo = std::numeric_limits<double>::infinity(), hi = 0.0;
  for (std::size_t j = 0; j < out.all.size(); ++j) {
    const double r = out.all[j];
    if (!std::isfinite(r)) {
      bad.push_back(j);
      continue;
    }
    sum += r;
    lo = std::min(lo, r);
    hi = std::max(hi, r);
  }
  const std::size_t good = out.all.size() - bad.size();
  out.finite = bad.empty();
  out.mean = good ? sum / static_cast<double>(good) : std::numeric_limits<double>::quiet_NaN();
  out.min = good ? lo : out.mean;
  out.max = good ? hi : out.mean;
  report.distance = out.mine;
  report.mean_distance = out.mean;
  report.min_distance = out.min;
  report.max_distance = out.max;
  if (out.finite) return true;

  return detail::apply_non_finite_policy(ctx, detail::gather_own_finiteness(ctx), report, "sync: non-finite parameters");
}

/// The end of every rule that moves each worker toward a target t: the distance pass (with the
/// non-finite policy), then x <- t + c (x - t), where c = coefficient(distances, report).
template <class Ctx, class Coefficient>
sync_report move_toward(Ctx& ctx, typename Ctx::view_type target, sync_report report, Coefficient&& coefficient) {
  using T = typename Ctx::value_type;
  distances d;
  if (!measure_distances(ctx, target, report, d)) return report;
  const double c = coefficient(d, report);
  update_params(ctx, detail::toward_fn<T>{static_cast<T>(c)}, typename Ctx::const_view_type(target));
  return report;
}

/// A coefficient that does not depend on the distances.
struct fixed_coefficient {
  double c;
  double operator()(const distances&, const sync_report&) const noexcept { return c; }
};

}  // namespace dppf
