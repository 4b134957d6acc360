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
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
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

struct thread_group_state {
  thread_group_state(int m, thread_group_options o)
      : size(m), options(o), slots(static_cast<std::size_t>(m > 0 ? m : 0)), args(slots.size()) {
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

/// One worker's view of a `thread_group`; models `communicator`. Every collective first agrees
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
    std::vector<const T*> ins(m);
    std::vector<T*> outs(m);
    for (std::size_t r = 0; r < m; ++r) {
      ins[r] = static_cast<const T*>(state_->slots[r].in);
      outs[r] = static_cast<T*>(state_->slots[r].out);
    }
    const std::size_t begin = n_in * static_cast<std::size_t>(rank_) / m;
    const std::size_t end = n_in * (static_cast<std::size_t>(rank_) + 1) / m;
    const double inv = 1.0 / static_cast<double>(m);
    const bool average = op == reduce_op::avg;
    // Blocks small enough for the double accumulators to stay in L1 while every input streams by.
    constexpr std::size_t block = 2048;
    double acc[block];
    for (std::size_t b0 = begin; b0 < end; b0 += block) {
      const std::size_t len = std::min(block, end - b0);
      for (std::size_t i = 0; i < len; ++i) acc[i] = 0.0;
      for (std::size_t r = 0; r < m; ++r) {
        const T* x = ins[r] + b0;
        for (std::size_t i = 0; i < len; ++i) acc[i] += static_cast<double>(x[i]);
      }
      if (average)
        for (std::size_t i = 0; i < len; ++i) acc[i] *= inv;
      for (std::size_t r = 0; r < m; ++r) {
        T* y = outs[r] + b0;
        for (std::size_t i = 0; i < len; ++i) y[i] = static_cast<T>(acc[i]);
      }
    }
    state_->barrier(false);  // every output complete; inputs no longer read
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
