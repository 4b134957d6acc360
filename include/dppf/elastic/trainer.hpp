#pragma once
// dppf::elastic_trainer: a dppf::trainer whose workers may come and go (an elastic_group).
//
// * Every sync runs through elastic_group::run_committed: the parameters are saved, the rule's
//   sync runs, and it is committed on every survivor or undone on every one and run again over
//   the next generation's members; the mean of a sync is over the current members.
// * A worker that was let in (a new process, or one excluded and back) gets, from the members
//   that hold state: the mean of their parameters, and from the seed member (the first that is
//   not new) the trainer's counters and, with newcomer_state::from_peer, the optimizer state and
//   counters (newcomer_state::fresh: the newcomer's own freshly initialised optimizer state).
// * Every rule runs elastic. Those that sync every tau steps (local_sgd, pull_push, elastic,
//   leader, grawa, diloco): their collectives are over the current members and their state is
//   replicated, so it is saved and undone with the parameters and a newcomer gets the seed's.
//   data_parallel: every step's gradient average is a committed operation (a redo over the next
//   generation rewrites the average, so there is nothing to undo); the members' parameters stay
//   equal, so a newcomer gets the seed's, bit for bit. Refused when the trainer is built:
//   average_optimizer_state, and data_parallel with gradients_averaged (its average would run
//   outside the committed operation).
// * An overlapped sync (overlap_steps = d, 1 <= d < tau, and d < warmup_tau): its all-reduce is
//   started at the sync step, as dppf::trainer does; its end at the due step (the wait and the
//   rule's correction of the live parameters) is the committed operation. A failure, seen by
//   test() during the local steps or at the wait, discards it on every survivor alike (their live
//   parameters and rule state put back) and it is redone over the next generation with a
//   blocking all-reduce of the survivors' snapshots. Newcomers are let in at its end and get
//   their state before the next sync starts (hence d < tau). Compressed too: a sync started over
//   members its compressed state was not built for is the plain all-reduce, and its arrival
//   starts the state again (as the first blocking sync over new members does).
// * A compressed sync (sync_precision bf16 or fp16): its exchanges run inside the committed
//   operation. Its chunks and reference belong to one generation, so the first sync over new
//   members (after a loss, a newcomer, or a discarded sync, on every member alike) is the exact
//   mean in full precision: the reference becomes that mean and every residual, the newcomer's
//   included, starts at zero. An elastic checkpoint holds no compressed state and no sync in
//   flight (rank 0's residuals and snapshot are not the others'); a resumed group starts a
//   compressed state from the loaded mean.
// * Host buffers only (Gloo).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "../algorithms.hpp"
#include "../consensus/rule.hpp"
#include "../error.hpp"
#include "../trainer.hpp"
#include "communicator.hpp"
#include "group.hpp"

namespace dppf {

namespace detail {
struct nothing {
  void operator()() const noexcept {}
};
template <class S>
concept has_counters = requires(S& s) { s.for_each_counter([](const char*, std::int64_t&) {}); };
}  // namespace detail

/// Rule wrapped so that each sync (data_parallel: each gradient average) is committed everywhere
/// or undone everywhere (see the top). Its collectives go to the current generation (means and
/// all-gathers over the current members, LSGD's leader among them); its state is replicated
/// (EASGD's center, DiLoCo's global model, outer momentum and count), so it is saved and put back
/// with the parameters, and sent from the seed to a newcomer.
template <class Rule>
class elastic_rule {
 public:
  static constexpr bool averages_gradients = Rule::averages_gradients;
  /// The rule reads the others only through the mean (an overlapped or compressed sync can run under it).
  static constexpr bool overlappable = overlappable_v<Rule>;

  /// The rule's own state (what checkpoints see), and a copy of it and of the parameters taken
  /// before each sync, to undo a discarded one (never checkpointed).
  template <class Buffer>
  struct state {
    typename Rule::template state<Buffer> inner{};
    typename Rule::template state<Buffer> saved_inner{};
    Buffer saved{};
    template <class F>
    void for_each_buffer(F&& f) {
      inner.for_each_buffer(f);
    }
    template <class F>
      requires detail::has_counters<typename Rule::template state<Buffer>>
    void for_each_counter(F&& f) {
      inner.for_each_counter(f);
    }
  };

  explicit elastic_rule(Rule inner = {}) : inner_(std::move(inner)) {}
  const Rule& inner() const noexcept { return inner_; }

  template <class Ctx, class S>
  void init(Ctx& ctx, S& s) const {
    if constexpr (!averages_gradients) s.saved = ctx.ex.template allocate<typename Ctx::value_type>(std::ranges::size(ctx.params));
    inner_.init(ctx, s.inner);
  }

  /// data_parallel: the average into ctx.scratch, committed; a redo rewrites it.
  template <class Ctx>
    requires averages_gradients
  void average_gradients(Ctx& ctx) const {
    ctx.comm.inner().group().run_committed([&] { inner_.average_gradients(ctx); }, [] {});
  }

  /// `before`: the trainer's own part of the sync (a compressed sync's mean into scratch), run
  /// inside the committed operation, so that its exchanges are undone and redone with the rest.
  /// An overlapped sync's end (ctx.live set): what it writes, and so saves and undoes, is the live
  /// parameters, not the snapshot.
  template <class Ctx, class S, class Before = detail::nothing>
  sync_report sync(Ctx& ctx, S& s, const Before& before = {}) const {
    using T = typename Ctx::value_type;
    const typename Ctx::view_type written = ctx.live.empty() ? ctx.params : ctx.live;
    copy(ctx.ex, std::span<const T>(written.data(), written.size()), s.saved);
    s.saved_inner = s.inner;  // buffers keep their capacity: no allocation after the first sync
    sync_report report{};
    ctx.comm.inner().group().run_committed(
        [&] {
          before();
          report = inner_.sync(ctx, s.inner);
        },
        [&] {
          copy(ctx.ex, s.saved, written);
          s.inner = s.saved_inner;
        });
    return report;
  }

 private:
  Rule inner_;
};

/// Where a newcomer's optimizer state comes from.
enum class newcomer_state {
  from_peer,  ///< the seed member's optimizer state and counters (broadcast)
  fresh,      ///< its own freshly initialised optimizer state
};

struct elastic_trainer_options {
  newcomer_state state = newcomer_state::from_peer;
  /// What every member must have alike besides what the trainer checks itself (its sync schedule,
  /// rule, optimizer, element type and parameter count), as "key=value" lines: e.g. the program's
  /// options. A newcomer whose settings differ from the seed's raises invalid_argument naming the
  /// first difference, before it takes part in any sync (a collective of another shape would crash
  /// Gloo's transport); the members regroup without it.
  std::string agreement{};
};

/// The trainer's report plus the membership.
struct elastic_stats : trainer_stats {
  std::int64_t generation = 0;  ///< the current generation's number
  int members = 0;              ///< workers in it
  std::int64_t worker_id = 0;   ///< this process's id in the group
  std::int64_t regroups = 0;    ///< regroups this process took part in
};

template <class Optimizer, class Rule, executor Exec>
class elastic_trainer {
  static_assert(std::is_same_v<typename Exec::memory_space, host_space>, "dppf::elastic_trainer: Gloo needs host buffers");

 public:
  using trainer_type = trainer<Optimizer, elastic_rule<Rule>, elastic_communicator, Exec>;

  elastic_trainer(std::shared_ptr<elastic_group> group, Optimizer optimizer, Rule rule, Exec ex, trainer_options options = {},
                  elastic_trainer_options elastic = {})
      : group_(std::move(group)),
        tr_(std::move(optimizer), elastic_rule<Rule>(checked(std::move(rule))), elastic_communicator(group_), std::move(ex),
            checked(options)),
        elastic_(checked(elastic)) {}

  /// Joins the group (collective with the other founders, or let in at a sync of a running group:
  /// then `params` is overwritten with the group's mean and the state arrives; see the top).
  template <host_buffer P>
  void start(P&& params) {
    detail::require_not_empty(std::ranges::size(params), "elastic_trainer::start: parameters");
    group_->join();
    for (int attempt = 0;; ++attempt) {
      try {
        if (group_->has_state()) {
          // The founders: one with other settings raises, naming the difference; the others
          // regroup without it, as around a newcomer that differs.
          require_same_text(tr_.comm(), settings(), 0, "elastic_trainer: the founders' settings differ");
          tr_.prepare(params);
        } else {
          transfer(params);
        }
        return;
      } catch (const communication_error& e) {
        if (attempt + 1 >= group_->options().max_regroups) throw;
        recover_or_rejoin(e.what());
      }
    }
  }

  /// One local step and, when due, the sync (see dppf::trainer::step). A worker found excluded at
  /// the sync rejoins as new (its parameters become the group's mean) and returns.
  template <host_buffer P, host_buffer G>
  void step(P&& params, const G& grads, double loss = std::numeric_limits<double>::quiet_NaN()) {
    try {
      tr_.step(params, grads, loss);
    } catch (const communication_error& e) {
      if (!group_->excluded()) throw;
      rejoin(params);
      return;
    }
    send_pending(params);
  }

  /// x_bar over the current members, committed on every survivor (collective).
  template <host_buffer P>
  void average(P&& params) {
    using T = std::remove_cv_t<buffer_element_t<P&>>;
    detail::require_not_empty(std::ranges::size(params), "elastic_trainer::average: parameters");
    tr_.finish_sync(params);  // a sync in flight first (committed, as at its due step) ...
    send_pending(params);     // ... and whoever it let in gets its state, to average with us
    std::vector<T> mean(std::ranges::size(params));
    const std::span<const T> x(std::ranges::data(params), std::ranges::size(params));
    group_->run_committed([&] { tr_.comm().all_reduce(x, std::span<T>(mean), reduce_op::avg); }, [] {}, false);
    std::copy(mean.begin(), mean.end(), std::ranges::data(params));
  }

  elastic_stats stats() const {
    elastic_stats s;
    static_cast<trainer_stats&>(s) = tr_.stats();
    s.generation = group_->generation().number;
    s.members = group_->size();
    s.worker_id = group_->id();
    s.regroups = group_->regroups();
    return s;
  }

  std::int64_t steps() const noexcept { return tr_.steps(); }
  std::int64_t syncs() const noexcept { return tr_.syncs(); }
  elastic_group& group() noexcept { return *group_; }
  trainer_type& inner() noexcept { return tr_; }

 private:
  static trainer_options checked(const trainer_options& o) {
    detail::require_option(!o.average_optimizer_state, "elastic_trainer", "average_optimizer_state", o.average_optimizer_state,
                           "is not elastic-safe yet and must be false");
    // A newcomer is let in at a sync's commit, its end, and gets its state before the next sync
    // starts: with d = tau (or d >= warmup_tau) the next one starts at that same step
    const bool room = o.overlap_steps < o.tau && (o.warmup_steps == 0 || o.warmup_tau == 0 || o.overlap_steps < o.warmup_tau);
    detail::require_option(o.overlap_steps == 0 || room, "elastic_trainer", "overlap_steps", o.overlap_steps,
                           "must be below tau (and warmup_tau): a newcomer is let in between a sync's end and the next sync's start");
    return o;
  }
  static elastic_trainer_options checked(elastic_trainer_options e) {
    // data_parallel never syncs parameters: a newcomer's own optimizer state would step its copy
    // apart from the members' for the rest of the run
    if constexpr (Rule::averages_gradients)
      detail::require_option(e.state == newcomer_state::from_peer, "elastic_trainer", "newcomer_state", "fresh",
                             "must be from_peer with data_parallel (the members' parameters must stay equal)");
    return e;
  }
  static Rule checked(Rule rule) {
    if constexpr (requires { rule.gradients_averaged; })
      detail::require_option(!rule.gradients_averaged, "elastic_trainer", "data_parallel::gradients_averaged", rule.gradients_averaged,
                             "must be false: gradients averaged by the caller are outside the committed operation");
    return rule;
  }

  template <class P>
  void rejoin(P& params) {
    for (int attempt = 0;; ++attempt) {
      group_->rejoin();  // raises when not let in within admit_timeout
      try {
        transfer(params);
        return;
      } catch (const communication_error&) {
        if (attempt + 1 >= group_->options().max_regroups) throw;  // else: register again
      }
    }
  }

  void recover_or_rejoin(const std::string& why) {
    if (group_->excluded() || !group_->has_state()) {
      group_->rejoin();
      return;
    }
    group_->recover(why);
  }

  // Members send state to the newcomers of a generation just formed; a failure regroups them
  // (a newcomer left without state is not in the next generation).
  template <class P>
  void send_pending(P& params) {
    for (int attempt = 0; group_->transfer_pending(); ++attempt) {
      try {
        transfer(params);
      } catch (const std::exception& e) {
        if (attempt + 1 >= group_->options().max_regroups) throw;
        group_->recover(std::string("sending state to a newcomer: ") + e.what());
      }
    }
  }

  // Collective over the current generation: newcomers receive the mean of the holders'
  // parameters, the seed's counters and (from_peer) its optimizer state.
  template <class P>
  void transfer(P& params) {
    using T = std::remove_cv_t<buffer_element_t<P&>>;
    auto& comm = tr_.comm();
    const bool fresh = !group_->has_state();
    const std::size_t n = std::ranges::size(params);
    const int seed = group_->seed_rank();
    const char* differ = "elastic_trainer: a newcomer's settings differ from the group's";
    // (the parameter count here, before make_workspace's own collective check could meet a mismatch)
    require_same_text(comm, settings() + "element_bytes=" + std::to_string(sizeof(T)) + "\nparameters=" + std::to_string(n) + "\n",
                      seed, differ);
    // The workspace the first step would build, collectively (the rule's init may all-reduce);
    // only a newcomer keeps it, and its rule state is then overwritten by the seed's.
    auto built = detail::trainer_access::make_workspace<T>(tr_, params);
    // An explicit optional: nvcc 13 fails to deduce through the conversion.
    if (fresh) detail::trainer_access::set_workspace<T>(tr_, std::optional<decltype(built)>(std::move(built)));
    auto* ws = detail::trainer_access::workspace<T>(tr_);
    if (!ws) throw communication_error("dppf::elastic_trainer: a member has no training state to send (no step yet)");
    // A compressed sync starts again at the next sync on every participant alike: the newcomer's
    // state was built from its parameters before they became the mean (the members' is stale).
    if (ws->compressed) ws->compressed->invalidate();
    // What the broadcasts below send must have one shape everywhere (e.g. sgd's momentum buffer
    // exists only with momentum != 0): a mismatch would crash Gloo's transport.
    require_same_text(comm, layout(*ws), seed, differ);

    // data_parallel: the members' parameters are equal, the seed's are their mean to the last bit
    std::vector<T> mean(n, T(0));
    if (!fresh) std::copy_n(std::ranges::data(params), n, mean.data());
    if constexpr (Rule::averages_gradients)
      comm.broadcast(std::span<T>(mean), seed);
    else
      comm.all_reduce(std::span<T>(mean), reduce_op::sum);
    const bool peer = elastic_.state == newcomer_state::from_peer;
    if (peer) ws->optimizer_state.for_each_buffer([&](const char*, auto& b) { comm.broadcast(view(b), seed); });
    ws->rule_state.for_each_buffer([&](const char*, auto& b) { comm.broadcast(view(b), seed); });  // replicated

    auto c = detail::trainer_access::get_counters(tr_);
    std::vector<double> counters{static_cast<double>(c.steps), static_cast<double>(c.syncs)};
    if (peer) ws->optimizer_state.for_each_counter([&](const char*, std::int64_t& v) { counters.push_back(static_cast<double>(v)); });
    if constexpr (detail::has_counters<decltype(ws->rule_state)>)
      ws->rule_state.for_each_counter([&](const char*, std::int64_t& v) { counters.push_back(static_cast<double>(v)); });
    comm.broadcast(std::span<double>(counters), seed);

    if (fresh) {
      const double inv = Rule::averages_gradients ? 1.0 : 1.0 / static_cast<double>(group_->holders());
      T* x = std::ranges::data(params);
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(mean[i] * inv);
      detail::trainer_access::set_counters(
          tr_, {static_cast<std::int64_t>(counters[0]), static_cast<std::int64_t>(counters[1]), 0.0, 0});
      std::size_t k = 2;
      if (peer) ws->optimizer_state.for_each_counter([&](const char*, std::int64_t& v) { v = static_cast<std::int64_t>(counters[k++]); });
      if constexpr (detail::has_counters<decltype(ws->rule_state)>)
        ws->rule_state.for_each_counter([&](const char*, std::int64_t& v) { v = static_cast<std::int64_t>(counters[k++]); });
    }
    group_->transfer_done();
  }

  // What every member must share (see elastic_trainer_options::agreement), as key=value lines.
  std::string settings() const {
    const trainer_options& o = tr_.options();
    return "tau=" + std::to_string(o.tau) + "\nwarmup_steps=" + std::to_string(o.warmup_steps) +
           "\nwarmup_tau=" + std::to_string(o.warmup_tau) + "\nrule=" + typeid(Rule).name() +
           "\noptimizer=" + typeid(Optimizer).name() +
           "\nnewcomer_state=" + (elastic_.state == newcomer_state::from_peer ? "from_peer" : "fresh") + "\n" + elastic_.agreement;
  }
  // The names and sizes of the state a transfer sends.
  template <class W>
  static std::string layout(W& ws) {
    std::string s;
    const auto buffer = [&](const char* part) {
      return [&s, part](const char* name, const auto& b) { s += std::string(part) + "." + name + "=" + std::to_string(std::ranges::size(b)) + "\n"; };
    };
    const auto counter = [&](const char* part) {
      return [&s, part](const char* name, std::int64_t&) { s += std::string(part) + "." + name + "=counter\n"; };
    };
    ws.optimizer_state.for_each_buffer(buffer("optimizer"));
    ws.optimizer_state.for_each_counter(counter("optimizer"));
    ws.rule_state.for_each_buffer(buffer("rule"));
    if constexpr (detail::has_counters<decltype(ws.rule_state)>) ws.rule_state.for_each_counter(counter("rule"));
    return s;
  }

  std::shared_ptr<elastic_group> group_;
  trainer_type tr_;
  elastic_trainer_options elastic_;
};

}  // namespace dppf
