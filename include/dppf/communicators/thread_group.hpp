#pragma once
// An in-process group of M workers, one per std::thread. Reductions add the ranks' values in
// rank order, in double, so results are deterministic and identical on every rank. A worker
// that fails aborts the group: every other worker's pending or next collective raises
// dppf::communication_error instead of waiting forever; a timeout bounds every wait.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../async_communicator.hpp"
#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
#include "../exchange_communicator.hpp"
#include "detail/agreement.hpp"

namespace dppf {

struct thread_group_options {
  /// Longest wait at any collective before every rank raises communication_error; a year or
  /// more (e.g. milliseconds::max()) waits forever.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

namespace detail {

// What each rank posts for one collective besides its arguments: where its data is.
struct thread_slot {
  const void* in = nullptr;
  void* out = nullptr;
  double scalar = 0.0;
};

// One started collective (an all-reduce or an exchange): every rank posts into it at its start;
// the last to post judges the arguments and, if they agree, does every rank's part of the work
// (reduces or copies into every rank's output) outside the lock.
struct thread_async_op {
  enum class phase { posting, reducing, done, rejected };
  thread_async_op(std::size_t m, const char* w) : args(m), slots(m), who(w) {}
  std::vector<collective_args> args;
  std::vector<thread_slot> slots;
  const char* who;  // "thread_group::start_all_reduce", ...
  int posted = 0;
  phase state = phase::posting;
  agreement verdict;
};

// out_r = sum (or average) over r of in_r on [begin, end), for every rank r's slot: the
// reduction both the blocking and the asynchronous all-reduce run, so both give the same bits.
// Ranks are added in rank order, in double, in blocks small enough for the accumulators to stay
// in L1 while every input streams by. Each block is read from every input before it is written
// to any output, so in-place buffers are safe.
template <class T>
void reduce_slots(const std::vector<thread_slot>& slots, std::size_t begin, std::size_t end, bool average) {
  const std::size_t m = slots.size();
  const double inv = 1.0 / static_cast<double>(m);
  constexpr std::size_t block = 2048;
  double acc[block];
  for (std::size_t b0 = begin; b0 < end; b0 += block) {
    const std::size_t len = std::min(block, end - b0);
    for (std::size_t i = 0; i < len; ++i) acc[i] = 0.0;
    for (std::size_t r = 0; r < m; ++r) {
      const T* x = static_cast<const T*>(slots[r].in) + b0;
      for (std::size_t i = 0; i < len; ++i) acc[i] += static_cast<double>(x[i]);
    }
    if (average)
      for (std::size_t i = 0; i < len; ++i) acc[i] *= inv;
    for (std::size_t r = 0; r < m; ++r) {
      T* y = static_cast<T*>(slots[r].out) + b0;
      for (std::size_t i = 0; i < len; ++i) y[i] = static_cast<T>(acc[i]);
    }
  }
}

// Rank r's output of an exchange from every rank's input, in blocks of `block` words: for an
// all-to-all, block j is block r of rank j's input; for an all-gather, rank j's whole input.
inline void exchange_into(const std::vector<thread_slot>& slots, std::size_t r, std::size_t block, bool all_to_all) {
  for (std::size_t j = 0; j < slots.size(); ++j)
    std::copy_n(static_cast<const std::uint16_t*>(slots[j].in) + (all_to_all ? r * block : 0), block,
                static_cast<std::uint16_t*>(slots[r].out) + j * block);
}

struct thread_group_state {
  thread_group_state(int m, thread_group_options o)
      : size(m), options(o), slots(static_cast<std::size_t>(m > 0 ? m : 0)), args(slots.size()), async_started(slots.size()) {
    detail::require(m >= 1, "thread_group: the group size must be at least 1");
    detail::require_option(o.timeout.count() > 0, "thread_group", "timeout (ms)", o.timeout.count(),
                           "must be > 0 (a year or more waits forever)");
  }

  int size;
  thread_group_options options;
  std::vector<thread_slot> slots;
  std::vector<collective_args> args;  // each rank's arguments to the collective in progress

  std::mutex mutex;
  std::condition_variable arrived;
  int waiting = 0;
  std::size_t generation = 0;
  bool aborted = false;
  std::string abort_reason;
  agreement verdict;  // on the posted args, by the last rank to arrive at an opening barrier
  std::vector<std::uint64_t> async_started;  // asynchronous all-reduces each rank started
  std::map<std::uint64_t, std::shared_ptr<thread_async_op>> async_open;  // not yet posted by all

  void abort(const std::string& why) {
    {
      std::lock_guard lock(mutex);
      if (!aborted) abort_reason = why;
      aborted = true;
    }
    arrived.notify_all();
  }

  [[noreturn]] void raise_aborted() const {
    throw communication_error("dppf::thread_group: group aborted (" + abort_reason + ")");
  }

  // All ranks meet here. Raises on abort and on timeout (and then aborts the group).
  // A closing barrier (interruptible = false) is one every rank is known to reach: all of them
  // passed the barrier that opened the collective and only copy data before it. It waits for the
  // others whatever happens, so no rank frees a buffer another rank is still writing; a pending
  // abort is raised by the next collective.
  // An opening barrier (judge = true) also returns the verdict on every rank's posted args: the
  // last rank to arrive, which knows all have posted, computes it once; each rank reads it before
  // leaving, and nobody can overwrite it before all have (that takes every rank at a barrier).
  agreement barrier(bool interruptible = true, bool judge = false) {
    std::unique_lock lock(mutex);
    if (interruptible && aborted) raise_aborted();
    const std::size_t gen = generation;
    if (++waiting == size) {
      waiting = 0;
      ++generation;
      if (judge) verdict = agree(args);
      arrived.notify_all();
      return verdict;
    }
    const auto released = [&] { return generation != gen || (interruptible && aborted); };
    bool done = true;
    if (!interruptible || options.timeout >= unbounded) {
      arrived.wait(lock, released);
    } else {
      done = arrived.wait_for(lock, options.timeout, released);
    }
    if (generation != gen) return verdict;
    if (!done && !aborted) {
      aborted = true;
      abort_reason = "timed out after " + std::to_string(options.timeout.count()) + " ms in a collective";
      arrived.notify_all();
    }
    raise_aborted();
  }

  // Timeouts this long mean "wait forever" (now() + timeout would overflow the clock).
  static constexpr std::chrono::milliseconds unbounded = std::chrono::hours(24 * 365);
};

}  // namespace detail

class thread_communicator;
namespace detail {
struct thread_group_access;
}

/// An in-process group of M workers; `member(r)` is worker r's communicator.
class thread_group {
 public:

  explicit thread_group(int size, thread_group_options options = {}) : state_(std::make_shared<detail::thread_group_state>(size, options)) {}

  int size() const noexcept { return state_->size; }

  /// The communicator of worker `rank`, to be used from that worker's thread only.
  thread_communicator member(int rank) const;

  /// Marks the group failed: every rank's current and later collectives raise.
  void abort(const std::string& why) const { state_->abort(why); }

  /// Runs f(member(r)) on M threads and joins them. If any worker throws, the group is aborted
  /// (so the others raise instead of waiting) and the first exception is rethrown here.
  template <class F>
  void run(F&& f) const;

 private:
  std::shared_ptr<detail::thread_group_state> state_;
};

/// The handle of a thread_communicator's started collective (see async_communicator.hpp): an
/// all-reduce, an all-to-all or an all-gather. The last rank to start it does every rank's work
/// (reduces, or copies into every rank's output), so the others' test()
/// turns true without their taking part. wait() is bounded by the group's timeout: on expiry
/// this rank raises timeout_error and aborts the group (the others raise communication_error).
/// The destructor waits (bounded the same way), so no buffer is written after the handle is gone.
class thread_all_reduce_handle {
 public:
  thread_all_reduce_handle(thread_all_reduce_handle&& o) noexcept = default;
  thread_all_reduce_handle& operator=(thread_all_reduce_handle&& o) noexcept {
    if (this != &o) {
      wait_noexcept();
      state_ = std::move(o.state_);
      op_ = std::move(o.op_);
      rank_ = o.rank_;
      problem_ = std::move(o.problem_);
    }
    return *this;
  }
  ~thread_all_reduce_handle() { wait_noexcept(); }

  /// True when the result is in the output; raises the collective's error once it is known.
  bool test() {
    if (!op_) return true;
    std::unique_lock lock(state_->mutex);
    if (!settled()) return false;
    finish(lock);
    return true;
  }

  /// Returns when the result is in the output, or raises (see the class comment).
  void wait() {
    if (!op_) return;
    std::unique_lock lock(state_->mutex);
    const auto ready = [&] { return settled() || state_->aborted; };
    bool in_time = true;
    if (state_->options.timeout >= detail::thread_group_state::unbounded)
      state_->arrived.wait(lock, ready);
    else
      in_time = state_->arrived.wait_for(lock, state_->options.timeout, ready);
    // A reduction under way writes this rank's output: let it end whatever else happened.
    state_->arrived.wait(lock, [&] { return op_->state != detail::thread_async_op::phase::reducing; });
    if (!in_time && !settled()) {
      const int posted = op_->posted;
      const std::string why = "rank " + std::to_string(rank_) + " timed out after " + std::to_string(state_->options.timeout.count()) +
                              " ms waiting for " + op_->who + " (" + std::to_string(posted) + " of " +
                              std::to_string(state_->size) + " ranks had started it)";
      if (!state_->aborted) state_->abort_reason = why;
      state_->aborted = true;
      op_.reset();
      state_->arrived.notify_all();
      throw timeout_error("dppf::thread_group: " + why);
    }
    finish(lock);
  }

 private:
  friend class thread_communicator;
  thread_all_reduce_handle(std::shared_ptr<detail::thread_group_state> s, std::shared_ptr<detail::thread_async_op> op, int rank,
                           std::string problem)
      : state_(std::move(s)), op_(std::move(op)), rank_(rank), problem_(std::move(problem)) {}

  // Under the lock: done, rejected, or aborted with no reduction under way (none can start
  // after an abort, so this rank's buffers are free).
  bool settled() const {
    using phase = detail::thread_async_op::phase;
    return op_->state == phase::done || op_->state == phase::rejected || (state_->aborted && op_->state == phase::posting);
  }

  // Under the lock, once settled(): returns on success, raises otherwise; the handle is empty after.
  void finish(std::unique_lock<std::mutex>&) {
    const std::shared_ptr<detail::thread_async_op> op = std::move(op_);
    if (op->state == detail::thread_async_op::phase::done) return;
    if (op->state == detail::thread_async_op::phase::rejected)
      detail::raise_unless_agreed(op->who, rank_, problem_, op->verdict, [&] { return op->args; });
    state_->raise_aborted();
  }

  void wait_noexcept() noexcept {
    try {
      wait();
    } catch (...) {
    }
  }

  std::shared_ptr<detail::thread_group_state> state_;
  std::shared_ptr<detail::thread_async_op> op_;  // empty once waited
  int rank_ = 0;
  std::string problem_;  // this rank's own complaint about its arguments
};

/// One worker's view of a `thread_group`; models `communicator`, `async_communicator` and `exchange_communicator`. Every collective first agrees
/// on its arguments (which collective, sizes, reduce_op, root) at the rendezvous it needs
/// anyway, so a mismatch or a rank's bad argument raises on every rank, at no extra cost.
class thread_communicator {
 public:
  using memory_space = host_space;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return state_->size; }

  /// out = sum (or average) over ranks of in.
  template <host_buffer In, host_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce_buffers<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <host_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    reduce_buffers<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  double all_reduce(double v, reduce_op op) {
    std::string problem;
    if (op != reduce_op::sum && op != reduce_op::avg && op != reduce_op::min && op != reduce_op::max)
      problem = "thread_group::all_reduce: invalid reduce_op " + std::to_string(static_cast<int>(op)) + " for a scalar";
    post({.kind = detail::collective::scalar_all_reduce, .op = op}, {.scalar = v}, "thread_group::all_reduce", problem);
    double acc = state_->slots[0].scalar;
    for (int r = 1; r < size(); ++r) {
      const double x = state_->slots[static_cast<std::size_t>(r)].scalar;
      switch (op) {
        case reduce_op::sum:
        case reduce_op::avg: acc += x; break;
        case reduce_op::min: acc = x < acc ? x : acc; break;
        case reduce_op::max: acc = x > acc ? x : acc; break;
      }
    }
    if (op == reduce_op::avg) acc /= size();
    state_->barrier(false);  // nobody posts again before everyone has read
    return acc;
  }

  std::vector<double> all_gather(double v) {
    post({.kind = detail::collective::all_gather}, {.scalar = v}, "thread_group::all_gather", {});
    std::vector<double> all(static_cast<std::size_t>(size()));
    for (std::size_t r = 0; r < all.size(); ++r) all[r] = state_->slots[r].scalar;
    state_->barrier(false);
    return all;
  }

  template <host_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    const std::string problem = detail::root_problem("thread_group::broadcast", root, size());
    const std::size_t n = std::ranges::size(b);
    post({.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root},
         {.out = std::ranges::data(b)}, "thread_group::broadcast", problem);
    if (rank_ != root) std::copy_n(static_cast<const T*>(state_->slots[static_cast<std::size_t>(root)].out), n, std::ranges::data(b));
    state_->barrier(false);  // root's buffer must not change before everyone has copied it
  }

  void barrier() { post({.kind = detail::collective::barrier}, {}, "thread_group::barrier", {}); }

  /// Block j of out <- block rank() of rank j's in (exchange_communicator.hpp).
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    const std::string problem =
        detail::exchange_problem("thread_group::all_to_all", true, in.size(), out.size(), size(), in.data(), out.data());
    post({.kind = detail::collective::all_to_all, .n = in.size(), .element_size = sizeof(std::uint16_t)},
         {.in = in.data(), .out = out.data()}, "thread_group::all_to_all", problem);
    detail::exchange_into(state_->slots, static_cast<std::size_t>(rank_), in.size() / static_cast<std::size_t>(size()), true);
    state_->barrier(false);  // no rank's input changes before every rank has copied from it
  }

  /// Block j of out <- rank j's in (exchange_communicator.hpp).
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    const std::string problem =
        detail::exchange_problem("thread_group::all_gather", false, in.size(), out.size(), size(), in.data(), out.data());
    post({.kind = detail::collective::buffer_all_gather, .n = in.size(), .element_size = sizeof(std::uint16_t)},
         {.in = in.data(), .out = out.data()}, "thread_group::all_gather", problem);
    detail::exchange_into(state_->slots, static_cast<std::size_t>(rank_), in.size(), false);
    state_->barrier(false);
  }

  /// Starts out = sum (or average) over ranks of in and returns at once, except on the last
  /// rank to start it, which reduces every rank's buffer before returning (the same arithmetic
  /// as all_reduce, so the same bits). Raises at once only if the group is already aborted.
  template <host_buffer In, host_buffer Out>
  thread_all_reduce_handle start_all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    return start_reduce<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <host_buffer B>
  thread_all_reduce_handle start_all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    return start_reduce<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  /// Starts all_to_all / all_gather and returns at once, except on the last rank to start it,
  /// which copies every rank's blocks (the same copies as the blocking ones).
  thread_all_reduce_handle start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return start_exchange("thread_group::start_all_to_all", true, in, out);
  }
  thread_all_reduce_handle start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return start_exchange("thread_group::start_all_gather", false, in, out);
  }

 private:
  friend class thread_group;
  friend struct detail::thread_group_access;
  thread_communicator(std::shared_ptr<detail::thread_group_state> s, int rank) : state_(std::move(s)), rank_(rank) {}

  // Posts this rank's arguments and data and meets the others. Unless every rank's arguments
  // agree (one verdict, the same on every rank), every rank raises together, after one more
  // meeting so that no rank's slot is rewritten while another still reads it for the message.
  void post(detail::collective_args args, detail::thread_slot data, const char* who, const std::string& problem) {
    args.rejected = !problem.empty();
    state_->args[static_cast<std::size_t>(rank_)] = args;
    state_->slots[static_cast<std::size_t>(rank_)] = data;
    const detail::agreement verdict = state_->barrier(true, true);
    if (verdict.rejected_rank < 0 && verdict.same) return;
    try {
      detail::raise_unless_agreed(who, rank_, problem, verdict, [&] { return state_->args; });
    } catch (...) {
      barrier_noexcept();
      throw;
    }
  }

  // Rank r owns the slice [n r / M, n (r + 1) / M): it adds every rank's input there, in rank
  // order and in double, and writes the rounded result straight into every rank's output. One
  // read of the inputs and one write of the outputs, no shared scratch; slices are disjoint, so
  // in-place calls are safe (each element is read on every rank before it is written).
  template <class T>
  void reduce_buffers(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const std::string problem = detail::buffer_all_reduce_problem("thread_group::all_reduce", n_in, n_out, op);
    post({.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op}, {.in = in, .out = out},
         "thread_group::all_reduce", problem);
    const std::size_t m = static_cast<std::size_t>(size());
    const std::size_t begin = n_in * static_cast<std::size_t>(rank_) / m;
    const std::size_t end = n_in * (static_cast<std::size_t>(rank_) + 1) / m;
    detail::reduce_slots<T>(state_->slots, begin, end, op == reduce_op::avg);
    state_->barrier(false);  // every output complete; inputs no longer read
  }

  template <class T>
  thread_all_reduce_handle start_reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const char* who = "thread_group::start_all_reduce";
    return start_collective({.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op},
                            {.in = in, .out = out}, who, detail::buffer_all_reduce_problem(who, n_in, n_out, op),
                            [n_in, op](const std::vector<detail::thread_slot>& slots) {
                              detail::reduce_slots<T>(slots, 0, n_in, op == reduce_op::avg);
                            });
  }

  thread_all_reduce_handle start_exchange(const char* who, bool all_to_all, std::span<const std::uint16_t> in,
                                          std::span<std::uint16_t> out) {
    const std::size_t n = in.size();
    const auto kind = all_to_all ? detail::collective::all_to_all : detail::collective::buffer_all_gather;
    return start_collective({.kind = kind, .n = n, .element_size = sizeof(std::uint16_t)}, {.in = in.data(), .out = out.data()},
                            who, detail::exchange_problem(who, all_to_all, n, out.size(), size(), in.data(), out.data()),
                            [n, all_to_all](const std::vector<detail::thread_slot>& slots) {
                              const std::size_t block = all_to_all ? n / slots.size() : n;
                              for (std::size_t r = 0; r < slots.size(); ++r) detail::exchange_into(slots, r, block, all_to_all);
                            });
  }

  // Posts this rank's part of the next started collective; the last rank to post judges the
  // arguments and, if they agree, runs work on every rank's slot.
  template <class Work>
  thread_all_reduce_handle start_collective(detail::collective_args args, detail::thread_slot slot, const char* who,
                                            std::string problem, Work work) {
    using phase = detail::thread_async_op::phase;
    args.rejected = !problem.empty();
    std::shared_ptr<detail::thread_async_op> o;
    bool last = false;
    {
      std::lock_guard lock(state_->mutex);
      if (state_->aborted) state_->raise_aborted();
      const std::uint64_t seq = state_->async_started[static_cast<std::size_t>(rank_)]++;
      auto& open = state_->async_open[seq];
      if (!open) open = std::make_shared<detail::thread_async_op>(static_cast<std::size_t>(size()), who);
      o = open;
      o->args[static_cast<std::size_t>(rank_)] = args;
      o->slots[static_cast<std::size_t>(rank_)] = slot;
      if (++o->posted == size()) {
        last = true;
        state_->async_open.erase(seq);
        o->verdict = detail::agree(o->args);
        o->state = o->verdict.rejected_rank < 0 && o->verdict.same ? phase::reducing : phase::rejected;
      }
    }
    if (last) {
      if (o->state == phase::reducing) {
        work(o->slots);
        std::lock_guard lock(state_->mutex);
        o->state = phase::done;
      }
      state_->arrived.notify_all();
    }
    return {state_, std::move(o), rank_, std::move(problem)};
  }

  // Keeps the barrier count aligned across ranks after every rank raised the same error.
  void barrier_noexcept() noexcept {
    try {
      state_->barrier(false);
    } catch (...) {
    }
  }

  std::shared_ptr<detail::thread_group_state> state_;
  int rank_;
};

namespace detail {

// For communicators built on a thread_group's rendezvous (device_group): the same argument
// agreement, the slots, and a plain meeting.
struct thread_group_access {
  static void post(thread_communicator& c, collective_args args, thread_slot data, const char* who, const std::string& problem) {
    c.post(args, data, who, problem);
  }
  static const thread_slot& slot(const thread_communicator& c, int rank) { return c.state_->slots[static_cast<std::size_t>(rank)]; }
  static void meet(thread_communicator& c) { (void)c.state_->barrier(); }
};

}  // namespace detail

inline thread_communicator thread_group::member(int rank) const {
  if (rank < 0 || rank >= size())
    detail::throw_invalid("thread_group::member: rank " + std::to_string(rank) + " is outside [0, " + std::to_string(size()) + ")");
  return {state_, rank};
}

template <class F>
void thread_group::run(F&& f) const {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size()));
  std::vector<std::thread> pool;
  pool.reserve(errors.size());
  for (int r = 0; r < size(); ++r)
    pool.emplace_back([&, r] {
      try {
        f(member(r));
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        abort("rank " + std::to_string(r) + " failed");
      }
    });
  for (auto& t : pool) t.join();
  // Prefer the root cause over the communication_errors it caused on the other ranks.
  std::exception_ptr first_other;
  for (const auto& e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const communication_error&) {
      if (!first_other) first_other = e;
    } catch (...) {
      std::rethrow_exception(e);
    }
  }
  if (first_other) std::rethrow_exception(first_other);
}

/// The 0.1 spellings.
using threads [[deprecated("dppf 0.2 renamed it dppf::thread_group; see CHANGELOG.md")]] = thread_group;
using thread_member [[deprecated("dppf 0.2 renamed it dppf::thread_communicator; see CHANGELOG.md")]] = thread_communicator;
using threads_options [[deprecated("dppf 0.2 renamed it dppf::thread_group_options; see CHANGELOG.md")]] = thread_group_options;

}  // namespace dppf
