#pragma once
// Checkpoints of dppf state in the safetensors format (safetensors.hpp): optimizer and consensus
// states, named buffers, counters, random-engine state, and a whole trainer.
//
// Names in a file: "<prefix>.<buffer>" for every buffer a state visits with for_each_buffer and
// "<prefix>.<counter>" (I64 scalar) for every counter it visits with for_each_counter (`step` of
// sgd/adamw, `outer_steps` of diloco; a state without for_each_counter has none). A trainer
// checkpoint holds
//   params, optimizer.*, consensus.*, trainer.steps, trainer.syncs, trainer.loss_sum,
//   trainer.loss_count, and metadata dppf.rank, dppf.world_size, dppf.element_type,
//   dppf.workspace ("1" once the first step has allocated the optimizer and consensus state);
// with an overlapped sync in flight (trainer_options::overlap_steps) the save first waits for its
// all-reduce and records it: overlap.snapshot, overlap.mean, overlap.due, overlap.warmup,
// overlap.lr_ratio, overlap.loss. A resumed trainer applies that correction at the same step,
// from the same bits, as the run that never stopped. With a compressed sync
// (trainer_options::sync_precision bf16 or fp16): compressed.values (its reference and
// residuals) and metadata dppf.sync_precision, so the compressed syncs resume bit for bit too; a
// compressed trainer given a checkpoint saved without compression starts its compression afresh
// from the loaded parameters (reference = their mean, one all-reduce; residuals zero), and an
// uncompressed trainer or one of the other 16-bit format refuses a compressed checkpoint.
//
// Loading is all-or-nothing: every tensor is checked against the live state (presence, dtype,
// element count, no unexpected tensors under the prefix) before anything is written, so a failed
// load leaves the live state as it was. Restoring a trainer is collective: a workspace it needs
// is built off to the side, every rank checks everything, and only once every rank has agreed
// that all checks passed does any rank write; otherwise every rank raises checkpoint_error with
// its parameters, workspace (present or not, every buffer and counter) and counters unchanged.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <ranges>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../trainer.hpp"
#include "safetensors.hpp"

namespace dppf {

namespace detail {

// Visits the counters a state lists with for_each_counter, as f(name, std::int64_t&); a state
// without for_each_counter has none (no member is picked up by its name).
template <class State, class F>
void for_each_counter(State& s, F&& f) {
  if constexpr (requires { s.for_each_counter(f); }) s.for_each_counter(f);
}

template <class B>
concept checkpointable_buffer = std::ranges::contiguous_range<B> && std::ranges::sized_range<B> &&
                                tensor_element<std::ranges::range_value_t<B>> &&
                                std::same_as<memory_space_t<B>, host_space>;

inline std::string join(const std::string& prefix, const char* name) { return prefix + "." + name; }

// The checks of a load, then the copies: a load either changes everything or nothing.
class restore_plan {
 public:
  explicit restore_plan(const safetensors& in) : in_(in) {}

  const safetensors& file() const noexcept { return in_; }

  template <checkpointable_buffer B>
  void buffer(const std::string& name, B& live) {
    using T = std::ranges::range_value_t<B>;
    in_.check<T>(name, std::ranges::size(live));
    expected_.push_back(name);
    copies_.push_back([this, name, &live] { in_.read(name, std::span<T>(std::ranges::data(live), std::ranges::size(live))); });
  }

  void counter(const std::string& name, std::int64_t& live) {
    in_.check<std::int64_t>(name, 1);
    expected_.push_back(name);
    copies_.push_back([this, name, &live] { live = in_.scalar<std::int64_t>(name); });
  }

  void real(const std::string& name, double& live) {
    in_.check<double>(name, 1);
    expected_.push_back(name);
    copies_.push_back([this, name, &live] { live = in_.scalar<double>(name); });
  }

  /// Every tensor whose name starts with "<prefix>." must be one this plan restores (a tensor
  /// the live state has no place for means the file came from a differently configured run).
  void no_others(const std::string& prefix) const {
    const std::string p = prefix + ".";
    for (const auto& [name, info] : in_.tensors()) {
      if (name.compare(0, p.size(), p) != 0) continue;
      if (std::find(expected_.begin(), expected_.end(), name) == expected_.end())
        throw checkpoint_error("dppf: checkpoint " + in_.source() + ": tensor '" + name +
                               "' has no counterpart in the live state (was it saved with different options?)");
    }
  }

  void commit() const {
    for (const auto& c : copies_) c();
  }

 private:
  const safetensors& in_;
  std::vector<std::string> expected_;
  std::vector<std::function<void()>> copies_;
};

template <class State>
void plan_state(restore_plan& plan, const std::string& prefix, State& state) {
  state.for_each_buffer([&](const char* name, auto& buf) {
    static_assert(checkpointable_buffer<std::remove_cvref_t<decltype(buf)>>,
                  "dppf checkpoints hold host buffers; copy device state to the host first");
    plan.buffer(join(prefix, name), buf);
  });
  for_each_counter(state, [&](const char* name, std::int64_t& c) { plan.counter(join(prefix, name), c); });
  plan.no_others(prefix);
}

}  // namespace detail

/// Adds a state's buffers and counters (see the header comment for names) to `out`.
template <class State>
void save_state(safetensors& out, const std::string& prefix, State& state) {
  state.for_each_buffer([&](const char* name, const auto& buf) {
    static_assert(detail::checkpointable_buffer<std::remove_cvref_t<decltype(buf)>>,
                  "dppf checkpoints hold host buffers; copy device state to the host first");
    out.add(detail::join(prefix, name), buf);
  });
  detail::for_each_counter(state, [&](const char* name, std::int64_t& c) { out.add_scalar(detail::join(prefix, name), c); });
}

/// Restores a state saved by save_state. Checks every buffer (dtype, element count) and counter
/// first and rejects tensors under `prefix` that the live state has no place for; on any
/// checkpoint_error the live state is unchanged.
template <class State>
void load_state(const safetensors& in, const std::string& prefix, State& state) {
  detail::restore_plan plan(in);
  detail::plan_state(plan, prefix, state);
  plan.commit();
}

/// A named host buffer (model parameters, BatchNorm statistics, ...).
template <detail::checkpointable_buffer B>
void save_buffer(safetensors& out, const std::string& name, const B& buf) {
  out.add(name, buf);
}

/// Restores a buffer saved by save_buffer; its dtype and size must match.
template <detail::checkpointable_buffer B>
void load_buffer(const safetensors& in, const std::string& name, B& buf) {
  using T = std::ranges::range_value_t<B>;
  in.read(name, std::span<T>(std::ranges::data(buf), std::ranges::size(buf)));
}

/// A random engine's full state (any standard engine: its text form, exact by the standard),
/// stored as metadata "rng.<name>".
template <class Engine>
void save_rng(safetensors& out, const std::string& name, const Engine& engine) {
  std::ostringstream s;
  s << engine;
  out.set_metadata("rng." + name, s.str());
}

/// Restores an engine saved by save_rng; a malformed state raises and leaves `engine` unchanged.
template <class Engine>
void load_rng(const safetensors& in, const std::string& name, Engine& engine) {
  std::istringstream s(in.metadata("rng." + name));
  Engine restored;
  s >> restored;
  const bool parsed = !s.fail();
  std::string rest;
  s >> rest;  // anything after the state means it was not this engine's state
  if (!parsed || !rest.empty())
    throw checkpoint_error("dppf: checkpoint " + in.source() + ": metadata 'rng." + name +
                           "' is not a valid state of this engine type");
  engine = restored;
}

namespace detail {

// The compressed sync's state in a workspace (none where the trainer cannot compress).
template <class W>
auto* compressed_state(W& ws) {
  if constexpr (requires { ws.compressed->for_each_buffer([](const char*, auto&) {}); })
    return ws.compressed ? &*ws.compressed : nullptr;
  else
    return static_cast<std::monostate*>(nullptr);
}

[[noreturn]] inline void throw_collective(const std::string& mine, const std::vector<double>& failed, int rank) {
  if (!mine.empty()) throw checkpoint_error(mine);
  std::string ranks;
  for (std::size_t r = 0; r < failed.size(); ++r)
    if (failed[r] != 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  throw checkpoint_error("dppf: checkpoint: rank(s) " + ranks + " could not restore their checkpoint; this is rank " +
                         std::to_string(rank) + ", whose state is unchanged");
}

// Every rank learns whether any rank failed; all raise together (no rank goes on alone into a
// collective the others never reach).
template <class Comm>
void agree(Comm& comm, const std::string& mine) {
  const std::vector<double> failed = comm.all_gather(mine.empty() ? 0.0 : 1.0);
  for (double f : failed)
    if (f != 0.0) throw_collective(mine, failed, comm.rank());
}

// What f raised, as a message (empty when it returned): a rank's failure must be agreed on
// before any rank goes on.
template <class F>
std::string failure_of(F&& f) {
  try {
    f();
    return {};
  } catch (const std::exception& e) {  // also invalid_argument from an init, bad_alloc
    return e.what();
  }
}

// Every rank must agree on whether the file has a workspace and whether the live trainer has
// one, or some ranks would build one (collectively) and others not.
template <class Comm>
void agree_on_workspaces(Comm& comm, bool in_file, bool live) {
  const std::vector<double> flags = comm.all_gather((in_file ? 1.0 : 0.0) + (live ? 2.0 : 0.0));
  const auto bit = [](double f, int b) { return (static_cast<int>(f) & b) != 0; };
  for (std::size_t r = 0; r < flags.size(); ++r) {
    if (flags[r] == flags[0]) continue;
    const std::string rest = " (files from different runs?); this is rank " + std::to_string(comm.rank());
    if (bit(flags[r], 1) != bit(flags[0], 1))
      throw checkpoint_error("dppf: checkpoint: rank 0's checkpoint was taken " +
                             std::string(bit(flags[0], 1) ? "after" : "before") + " the first step and rank " +
                             std::to_string(r) + "'s was not" + rest);
    throw checkpoint_error("dppf: checkpoint: rank 0's trainer has " + std::string(bit(flags[0], 2) ? "" : "not ") +
                           "taken a step and rank " + std::to_string(r) + "'s has " +
                           std::string(bit(flags[r], 2) ? "" : "not ") + "(steps are collective); this is rank " +
                           std::to_string(comm.rank()));
  }
}

// Whether a checkpoint holds the saving worker's own sync state: a compressed sync's reference
// and residuals and an overlapped sync in flight. An elastic one does not: they are the saving
// member's, over the saving generation's members.
enum class own_sync_state { kept, left_out };

template <class Trainer, parameter_buffer P>
safetensors save_trainer(Trainer& tr, const P& params, own_sync_state own) {
  using T = std::remove_cv_t<std::ranges::range_value_t<P>>;
  using access = detail::trainer_access;
  static_assert(detail::checkpointable_buffer<P>, "dppf checkpoints hold host buffers; copy device state to the host first");
  safetensors out;
  auto& comm = tr.comm();
  out.set_metadata("dppf.checkpoint", "trainer 1");
  out.set_metadata("dppf.rank", std::to_string(comm.rank()));
  out.set_metadata("dppf.world_size", std::to_string(comm.size()));
  out.set_metadata("dppf.element_type", std::string(to_string(dtype_of<T>)));
  out.add("params", params);
  auto* ws = access::workspace<T>(tr);
  out.set_metadata("dppf.workspace", ws ? "1" : "0");
  if (ws) {
    save_state(out, "optimizer", ws->optimizer_state);
    save_state(out, "consensus", ws->rule_state);
    if constexpr (!std::is_same_v<decltype(detail::compressed_state(*ws)), std::monostate*>)
      if (auto* c = detail::compressed_state(*ws); c && own == own_sync_state::kept) {
        out.set_metadata("dppf.sync_precision", to_string(tr.options().sync_precision));
        save_state(out, "compressed", *c);
      }
    if (own == own_sync_state::kept) access::wait_in_flight<T>(tr);
    if (ws->pending && own == own_sync_state::kept) {
      out.add("overlap.snapshot", ws->snapshot);
      out.add("overlap.mean", ws->scratch);
      out.add_scalar("overlap.due", ws->pending->due);
      out.add_scalar("overlap.warmup", std::int64_t{ws->pending->warmup ? 1 : 0});
      out.add_scalar("overlap.lr_ratio", ws->pending->lr_ratio);
      out.add_scalar("overlap.loss", ws->pending->loss);
    }
  }
  const access::counters c = access::get_counters(tr);
  out.add_scalar("trainer.steps", c.steps);
  out.add_scalar("trainer.syncs", c.syncs);
  out.add_scalar("trainer.loss_sum", c.loss_sum);
  out.add_scalar("trainer.loss_count", c.loss_count);
  return out;
}

}  // namespace detail

/// A checkpoint of one worker of a trainer: its parameters, optimizer and consensus state,
/// counters and loss accumulator. Add anything else (data-loader position, random engines,
/// BatchNorm buffers) to the returned set before saving it.
template <class Trainer, parameter_buffer P>
safetensors save_trainer(Trainer& tr, const P& params) {
  return detail::save_trainer(tr, params, detail::own_sync_state::kept);
}

/// Restores a trainer (and `params`) from this rank's checkpoint, so that training continues
/// bit for bit as if it had never stopped. Collective: every rank calls it with its own file.
/// All or nothing on every rank: rank, world size, element type and every tensor are checked
/// against the live state on every rank first (a trainer that has not stepped yet gets its
/// workspace built off to the side, collectively, as its first step would); if any rank fails,
/// every rank raises checkpoint_error and no rank's parameters, workspace or counters change.
/// A checkpoint taken before the first step leaves the trainer without a workspace (its next
/// step allocates one, as a fresh trainer's first step does).
template <class Trainer, parameter_buffer P>
void load_trainer(const safetensors& in, Trainer& tr, P&& params) {
  using T = std::remove_cv_t<std::ranges::range_value_t<P>>;
  using access = detail::trainer_access;
  using workspace_type = typename Trainer::template workspace<T>;
  static_assert(detail::checkpointable_buffer<std::remove_cvref_t<P>>,
                "dppf checkpoints hold host buffers; copy device state to the host first");
  auto& comm = tr.comm();
  const std::string where = "dppf: checkpoint " + in.source() + ": ";
  const std::size_t n = std::ranges::size(params);
  // A compressed sync's state (compressed_mean<T>, or monostate where the trainer cannot compress).
  using compressed_type = std::remove_pointer_t<decltype(detail::compressed_state(std::declval<workspace_type&>()))>;
  constexpr bool compressible =
      !std::is_same_v<compressed_type, std::monostate> && exchange_communicator<std::remove_cvref_t<decltype(comm)>>;
  // A live sync in flight writes the scratch buffer: let its all-reduce end first (every rank
  // started it, so this is not a meeting).
  access::wait_in_flight<T>(tr);
  workspace_type* const live = access::workspace<T>(tr);

  // 1. What can be checked without building anything.
  bool in_file = false;
  const bool file_compressed = in.contains("compressed.values");
  const sync_precision precision = tr.options().sync_precision;
  detail::agree(comm, detail::failure_of([&] {
    const auto expect = [&](const char* key, const std::string& want) {
      const std::string& got = in.metadata(key);
      if (got != want)
        throw checkpoint_error(where + "metadata " + key + " is '" + got + "', this run has '" + want + "'");
    };
    expect("dppf.checkpoint", "trainer 1");
    expect("dppf.rank", std::to_string(comm.rank()));
    expect("dppf.world_size", std::to_string(comm.size()));
    expect("dppf.element_type", std::string(to_string(dtype_of<T>)));
    in.check<T>("params", n);
    const std::string& w = in.metadata("dppf.workspace");
    if (w != "0" && w != "1") throw checkpoint_error(where + "metadata dppf.workspace is '" + w + "', expected 0 or 1");
    in_file = w == "1";
    if (file_compressed) {
      const std::string& saved = in.metadata("dppf.sync_precision");
      if (precision == sync_precision::full)
        throw checkpoint_error(where + "it was saved with a compressed sync (" + saved +
                               ") and this trainer has sync_precision = full");
      if (saved != to_string(precision))
        throw checkpoint_error(where + "it was saved with sync_precision = " + saved + " and this trainer has " +
                               to_string(precision));
    }
    if (in_file && !live) {
      // The optimizer state's layout depends only on the options: checked before the (collective)
      // build of a workspace, whose consensus state is checked in step 2.
      auto dry = tr.optimizer().template init<T>(tr.exec(), n);
      detail::restore_plan plan(in);
      detail::plan_state(plan, "optimizer", dry);
    }
  }));
  detail::agree_on_workspaces(comm, in_file, live != nullptr);
  // Whether the compressed state is rebuilt below (collectively) must be the same everywhere.
  const std::vector<double> compressed_files = comm.all_gather(file_compressed ? 1.0 : 0.0);
  if (std::any_of(compressed_files.begin(), compressed_files.end(), [&](double f) { return f != compressed_files[0]; }))
    throw checkpoint_error("dppf: checkpoint: some ranks' files hold a compressed sync's state and some do not (files from "
                           "different runs?); this is rank " + std::to_string(comm.rank()));

  // 2. The workspace the file's state goes into (the live one, or one built off to the side from
  // the file's parameters, finite values a rule's init can work with), then every tensor checked
  // against it. Nothing live is written yet.
  std::optional<workspace_type> built;
  detail::restore_plan plan(in);
  access::counters counters;
  std::optional<typename workspace_type::in_flight_sync> in_flight;
  std::int64_t in_flight_warmup = 0;
  std::optional<compressed_type> restarted;  // saved uncompressed into a live compressed workspace
  detail::agree(comm, detail::failure_of([&] {
    workspace_type* target = live;
    if (in_file && !live) {
      auto file_params = tr.exec().template allocate<T>(n);
      in.read("params", std::span<T>(std::ranges::data(file_params), n));
      built.emplace(access::make_workspace<T>(tr, file_params));
      target = &*built;
    }
    plan.buffer("params", params);
    if (in_file) {
      detail::plan_state(plan, "optimizer", target->optimizer_state);
      detail::plan_state(plan, "consensus", target->rule_state);
      if (in.contains("overlap.due")) {
        if (tr.options().overlap_steps == 0)
          throw checkpoint_error(where + "it was saved with an overlapped sync in flight and this trainer has "
                                 "overlap_steps = 0");
        in.check<std::int64_t>("overlap.due", 1);
        in.check<std::int64_t>("trainer.steps", 1);
        if (in.scalar<std::int64_t>("overlap.due") <= in.scalar<std::int64_t>("trainer.steps"))
          throw checkpoint_error(where + "overlap.due is not after trainer.steps");
        in_flight.emplace();
        plan.buffer("overlap.snapshot", target->snapshot);
        plan.buffer("overlap.mean", target->scratch);
        plan.counter("overlap.due", in_flight->due);
        plan.counter("overlap.warmup", in_flight_warmup);
        plan.real("overlap.lr_ratio", in_flight->lr_ratio);
        plan.real("overlap.loss", in_flight->loss);
      }
      plan.no_others("overlap");
      if constexpr (compressible)
        if (auto* c = detail::compressed_state(*target)) {
          if (file_compressed) {
            detail::plan_state(plan, "compressed", *c);
          } else if (target == live) {
            // Started afresh from the file's parameters, as a workspace built for them would be
            // (collective, like that build; every rank agreed on in_file, live and the files).
            auto file_params = tr.exec().template allocate<T>(n);
            in.read("params", std::span<T>(std::ranges::data(file_params), n));
            restarted.emplace(comm, std::span<const T>(std::ranges::data(file_params), n), c->options());
          }
        }
    } else {
      plan.no_others("optimizer");
      plan.no_others("consensus");
      plan.no_others("overlap");
    }
    plan.no_others("compressed");
    plan.counter("trainer.steps", counters.steps);
    plan.counter("trainer.syncs", counters.syncs);
    plan.real("trainer.loss_sum", counters.loss_sum);
    plan.counter("trainer.loss_count", counters.loss_count);
    plan.no_others("trainer");
  }));

  // 3. Every rank has checked everything: write (copies of checked tensors, which cannot fail).
  plan.commit();
  if (built)
    access::set_workspace<T>(tr, std::move(built));
  else if (!in_file && live)
    access::set_workspace<T>(tr, std::optional<workspace_type>());  // not nullopt: nvcc cannot deduce through it
  if (in_flight) in_flight->warmup = in_flight_warmup != 0;
  if (workspace_type* ws = access::workspace<T>(tr)) ws->pending = std::move(in_flight);
  access::set_counters(tr, counters);
  if constexpr (compressible)
    if (restarted) *detail::compressed_state(*live) = std::move(*restarted);
}

/// save_trainer, then an atomic write to `path` (one file per rank: put the rank in the name).
template <class Trainer, parameter_buffer P>
void save_trainer(const std::filesystem::path& path, Trainer& tr, const P& params) {
  save_trainer(tr, params).save(path);
}

/// Reads `path` and load_trainer. A file that cannot be read or parsed on one rank makes every
/// rank raise (collectively), like any other mismatch.
template <class Trainer, parameter_buffer P>
void load_trainer(const std::filesystem::path& path, Trainer& tr, P&& params) {
  std::string error;
  safetensors in;
  try {
    in = safetensors::load(path);
  } catch (const checkpoint_error& e) {
    error = e.what();
  }
  detail::agree(tr.comm(), error);
  load_trainer(in, tr, params);
}

}  // namespace dppf
