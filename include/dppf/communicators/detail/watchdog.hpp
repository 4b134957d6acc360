#pragma once
// detail::collective_watchdog: bounds how long one rank may stay blocked inside a single
// collective call of an engine that cannot time out by itself (MPI). The calling thread marks
// the start and the end of each blocking call (arm / disarm: a few relaxed stores and one
// release store, no lock, no system call beyond reading the monotonic clock); one watchdog
// thread wakes every poll interval and, once an armed call has run past the timeout, calls the
// expiry action once with what stalled. A watchdog that itself did not run for a while (its
// process stopped and continued) counts the timeout again from when it runs again. What the action does (report and abort the job) is the
// engine's business; tests pass one that records instead.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace dppf::detail {

/// What the watchdog saw when it expired.
struct stalled_call {
  const char* operation = "";  // the communicator's operation, e.g. "all_reduce"
  const char* call = "";       // the engine's call, e.g. "MPI_Allreduce"
  std::size_t bytes = 0;       // payload of this rank in that call
  std::uint64_t sequence = 0;  // number of blocking calls armed on this watchdog so far, this one included
  std::chrono::nanoseconds elapsed{0};
  std::chrono::milliseconds timeout{0};
};

class collective_watchdog {
 public:
  using action = std::function<void(const stalled_call&)>;

  /// timeout > 0. The thread starts here and is joined by the destructor.
  collective_watchdog(std::chrono::milliseconds timeout, action on_expiry)
      : timeout_(timeout), poll_(poll_interval(timeout)), on_expiry_(std::move(on_expiry)), thread_([this] { run(); }) {}

  collective_watchdog(const collective_watchdog&) = delete;
  collective_watchdog& operator=(const collective_watchdog&) = delete;

  ~collective_watchdog() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }

  /// The calling thread enters a blocking call. One call at a time (the communicator is used by
  /// one thread at a time); `operation` and `call` must be string literals.
  void arm(const char* operation, const char* call, std::size_t bytes) noexcept {
    operation_.store(operation, std::memory_order_relaxed);
    call_.store(call, std::memory_order_relaxed);
    bytes_.store(bytes, std::memory_order_relaxed);
    sequence_.store(sequence_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    since_.store(now_ns(), std::memory_order_release);
  }
  void disarm() noexcept { since_.store(0, std::memory_order_release); }

  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  /// Whether the action has been called (it is called at most once).
  bool fired() const noexcept { return fired_.load(std::memory_order_acquire); }

  /// Polls often enough to notice an expiry within a tenth of the timeout (at most 0.5 s late).
  static std::chrono::milliseconds poll_interval(std::chrono::milliseconds timeout) noexcept {
    return std::clamp(timeout / 10, std::chrono::milliseconds(1), std::chrono::milliseconds(500));
  }

 private:
  // 0 means "no call in flight"; the monotonic clock never reads 0 after boot.
  static std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  void run() {
    using std::chrono::nanoseconds;
    const std::int64_t late = std::chrono::duration_cast<nanoseconds>(poll_ + std::chrono::seconds(1)).count();
    std::int64_t last = now_ns(), resumed = 0;
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, poll_, [this] { return stop_; })) {
      const std::int64_t now = now_ns();
      // Woken over a second late: this process was stopped (SIGSTOP, then SIGCONT) or starved,
      // so how long it waited says nothing about its peers. It judges from now on, and does not
      // blame them for its own pause.
      if (now - last > late) resumed = now;
      last = now;
      const std::int64_t since = since_.load(std::memory_order_acquire);
      if (since == 0) continue;
      const std::int64_t elapsed = now - since;
      if (std::chrono::duration_cast<std::chrono::milliseconds>(nanoseconds(now - std::max(since, resumed))) < timeout_) continue;
      stalled_call s{.operation = operation_.load(std::memory_order_relaxed),
                     .call = call_.load(std::memory_order_relaxed),
                     .bytes = bytes_.load(std::memory_order_relaxed),
                     .sequence = sequence_.load(std::memory_order_relaxed),
                     .elapsed = std::chrono::nanoseconds(elapsed),
                     .timeout = timeout_};
      // The call may have ended (and another begun) while the fields were read: then the
      // snapshot is not one call's, and that call did not stall anyway.
      if (since_.load(std::memory_order_acquire) != since) continue;
      fired_.store(true, std::memory_order_release);
      lock.unlock();
      on_expiry_(s);
      return;
    }
  }

  const std::chrono::milliseconds timeout_, poll_;
  const action on_expiry_;
  std::atomic<std::int64_t> since_{0};
  std::atomic<const char*> operation_{""}, call_{""};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<bool> fired_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after every other member is ready
};

/// Arms `w` (if any) for the lifetime of the scope.
class watchdog_scope {
 public:
  watchdog_scope(collective_watchdog* w, const char* operation, const char* call, std::size_t bytes) noexcept : w_(w) {
    if (w_) w_->arm(operation, call, bytes);
  }
  watchdog_scope(const watchdog_scope&) = delete;
  watchdog_scope& operator=(const watchdog_scope&) = delete;
  ~watchdog_scope() {
    if (w_) w_->disarm();
  }

 private:
  collective_watchdog* w_;
};

}  // namespace dppf::detail
