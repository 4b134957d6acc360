#pragma once
// dppf::mpi_communicator: the communicator of a group of MPI processes (host buffers), and mpi_environment,
// an RAII MPI_Init_thread / MPI_Finalize. Needs MPI (link dppf::mpi_communicator), not CUDA.
//
// * The constructor duplicates the given MPI_Comm (MPI_Comm_dup, collective over it) and sets
//   MPI_ERRORS_RETURN on the duplicate only, so the caller's communicator, its error handler and
//   its message matching are left alone. Copies of a dppf::mpi_communicator share the duplicate; the last one
//   frees it (skipped when MPI is already finalized).
// * Every MPI return code is checked; a failure raises dppf::communication_error naming the
//   operation, the MPI call, this rank and MPI_Error_string's text.
// * Before every buffer collective, one all-reduce of a few integers (options.check_arguments,
//   the encoding of communicators/detail/agreement.hpp) makes all ranks agree that the
//   collective, sizes, element types, reduce_op and root match and that no rank rejected its
//   arguments, so bad input raises on every rank instead of leaving some waiting forever.
// * Buffers of more than INT_MAX elements are split into several MPI calls.
// * A dppf::mpi_communicator and its copies are used by one thread at a time, and every rank calls the
//   collectives in the same order (as for any MPI communicator).
// * A watchdog (mpi_options::timeout, DPPF_MPI_TIMEOUT_MS) bounds how long a rank stays blocked
//   in one MPI call: past it, the rank prints what stalled to stderr and aborts the job, since a
//   blocking MPI collective cannot time out or be cancelled (detail/watchdog.hpp does the timing).

#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../async_communicator.hpp"
#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
#include "../exchange_communicator.hpp"
#include "detail/agreement.hpp"
#include "detail/watchdog.hpp"

namespace dppf {

struct mpi_options {
  /// Agree on the arguments of every buffer collective first (one all-reduce of 11 integers),
  /// so that a collective, size, element type, reduce_op or root that differs across ranks, or arguments one rank
  /// rejected, raise on every rank. Off saves that collective; a mismatch is then undefined
  /// behaviour in MPI (it may hang, truncate or fail), and a rank that rejects its own
  /// arguments raises alone while the others wait in the collective.
  bool check_arguments = true;
  /// Most elements passed to one MPI call (MPI counts are int); larger buffers are split.
  std::size_t max_elements_per_call = static_cast<std::size_t>(INT_MAX);
  /// The watchdog: a rank blocked in one MPI call (a collective, the argument agreement, a
  /// handle's wait) for longer than this prints what stalled to stderr and aborts the whole job
  /// (MPI_Abort, exit code mpi_watchdog_exit_code), because a blocking MPI call cannot time out.
  /// Zero turns it off. The environment variable DPPF_MPI_TIMEOUT_MS, when set, overrides it
  /// (milliseconds, 0 = off), so a launch script can set it without a rebuild (mpirun -x
  /// DPPF_MPI_TIMEOUT_MS=... forwards it to remote hosts). 10 minutes, as PyTorch's NCCL
  /// watchdog: a healthy collective of any size finishes far sooner, and the time that counts is
  /// what a rank spends waiting inside one call, so it must exceed the longest time one rank may
  /// be busy elsewhere (evaluation, a checkpoint) while the others wait in the next collective.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

/// The exit code of a job the watchdog aborted (EX_TEMPFAIL: restart from the last checkpoint).
inline constexpr int mpi_watchdog_exit_code = 75;

namespace detail {

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error code " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(std::clamp(length, 0, MPI_MAX_ERROR_STRING))) + " (MPI error code " +
         std::to_string(code) + ")";
}

/// Turns an MPI return code into communication_error naming the operation, the call and the rank.
inline void mpi_check(int code, const char* operation, const char* call, int rank) {
  if (code == MPI_SUCCESS) return;
  throw communication_error(std::string("dppf::mpi_communicator::") + operation + ": " + call + " failed" +
                            (rank >= 0 ? " on rank " + std::to_string(rank) : std::string()) + ": " + mpi_error_text(code));
}

template <class T>
MPI_Datatype mpi_datatype() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else
    return MPI_DOUBLE;
}

/// The timeout in force: DPPF_MPI_TIMEOUT_MS when set, else the option.
inline std::chrono::milliseconds mpi_timeout(const mpi_options& options) {
  require_option(options.timeout.count() >= 0, "mpi_options", "timeout", options.timeout.count(), "must be >= 0 ms (0 = off)");
  const char* env = std::getenv("DPPF_MPI_TIMEOUT_MS");
  if (!env) return options.timeout;
  const std::string text = env;
  long long ms = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || ms < 0)
    throw_invalid("DPPF_MPI_TIMEOUT_MS='" + text + "' is not a number of milliseconds >= 0 (0 = off)");
  return std::chrono::milliseconds(ms);
}

/// How long the watchdog gives MPI_Abort before it ends the process itself.
inline constexpr std::chrono::seconds mpi_abort_grace{5};

/// The watchdog's expiry action: one line on stderr saying what stalled, then the job ends.
[[noreturn]] inline void mpi_watchdog_abort(const stalled_call& s, int rank, int size, const std::string& host) noexcept {
  const auto seconds = [](auto d) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", std::chrono::duration<double>(d).count());
    return std::string(text);
  };
  const std::string line = "dppf::mpi_communicator watchdog: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           " (host " + host + ", pid " + std::to_string(::getpid()) + ") has been blocked in " + s.operation +
                           " (" + s.call + ", " + std::to_string(s.bytes) + " bytes, call #" + std::to_string(s.sequence) +
                           " of this communicator) for " + seconds(s.elapsed) + " s, past the timeout of " + seconds(s.timeout) +
                           " s (mpi_options::timeout, DPPF_MPI_TIMEOUT_MS): another rank is hung, dead or cut off (MPI does not "
                           "say which; a rank that prints no such line is a suspect). Aborting the job.\n";
  [[maybe_unused]] const auto written = ::write(2, line.data(), line.size());  // one write: lines of ranks stay whole
  // The other ranks blocked in the same collective are due now too: one more poll interval lets
  // them print their lines before the abort kills them, so the rank that printed none stands out.
  std::this_thread::sleep_for(collective_watchdog::poll_interval(s.timeout));
  // MPI_Abort runs on this watchdog thread while the application thread is blocked in MPI. The
  // standard allows that only at MPI_THREAD_MULTIPLE (mpi_environment asks for FUNNELED). Open
  // MPI 4.1 does it at any level: MPI_Abort only asks the local daemon (PMIx, on its own thread)
  // to end the job, then exits. Another MPI, or a daemon that cannot be reached, may block it:
  // after mpi_abort_grace this thread exits the process itself, and a launcher ends a job whose
  // rank exited non-zero without MPI_Finalize (Open MPI's mpirun does).
  std::thread([] {
    std::this_thread::sleep_for(mpi_abort_grace);
    static const char late[] = "dppf::mpi_communicator watchdog: MPI_Abort did not end the process; exiting\n";
    [[maybe_unused]] const auto w = ::write(2, late, sizeof late - 1);
    std::_Exit(mpi_watchdog_exit_code);
  }).detach();
  MPI_Abort(MPI_COMM_WORLD, mpi_watchdog_exit_code);
  std::_Exit(mpi_watchdog_exit_code);
}

/// Arms the watchdog (if any) for one blocking MPI call. If the watchdog fired meanwhile, the job
/// is being aborted: should the call return after all (the stalled peer came back), this thread
/// waits for the end instead of going on with a job that is being torn down.
class mpi_watch {
 public:
  mpi_watch(collective_watchdog* w, const char* operation, const char* call, std::size_t bytes) noexcept
      : w_(w), scope_(w, operation, call, bytes) {}
  mpi_watch(const mpi_watch&) = delete;
  mpi_watch& operator=(const mpi_watch&) = delete;
  ~mpi_watch() {
    while (w_ && w_->fired()) std::this_thread::sleep_for(std::chrono::seconds(1));
  }

 private:
  collective_watchdog* w_;
  watchdog_scope scope_;
};

// Owns the duplicated communicator and the watchdog; frees the communicator unless MPI is gone already.
struct mpi_comm_handle {
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<collective_watchdog> watchdog;  // null when the timeout is 0
  mpi_comm_handle() = default;
  mpi_comm_handle(const mpi_comm_handle&) = delete;
  mpi_comm_handle& operator=(const mpi_comm_handle&) = delete;
  ~mpi_comm_handle() {
    int finalized = 1;
    if (comm != MPI_COMM_NULL && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Comm_free(&comm);
  }
};

}  // namespace detail

/// The handle of mpi_communicator::start_all_reduce: MPI_Iallreduce requests (one per chunk of
/// at most max_elements_per_call elements); also of start_all_to_all / start_all_gather (one
/// MPI_Ialltoall / MPI_Iallgather request, T = std::uint16_t). MPI makes progress on them inside MPI calls: test()
/// calls MPI_Testall, so calling it between local steps moves the reduction forward while they
/// run (no progress thread, so MPI_THREAD_FUNNELED suffices). For avg, the 1/M scaling runs when
/// test() or wait() first sees the requests complete. The destructor waits (MPI_Waitall). A
/// wait() (or the destructor's) blocked past mpi_options::timeout aborts the job (the watchdog);
/// test() never blocks, so the time between the start and wait() does not count.
template <class T>
class mpi_all_reduce_handle {
 public:
  mpi_all_reduce_handle(mpi_all_reduce_handle&& o) noexcept { *this = std::move(o); }
  mpi_all_reduce_handle& operator=(mpi_all_reduce_handle&& o) noexcept {
    if (this != &o) {
      wait_noexcept();
      requests_ = std::move(o.requests_);
      o.requests_.clear();
      comm_ = std::move(o.comm_);
      error_ = std::exchange(o.error_, nullptr);
      out_ = o.out_;
      n_ = o.n_;
      size_ = o.size_;
      rank_ = o.rank_;
      average_ = o.average_;
      operation_ = o.operation_;
    }
    return *this;
  }
  ~mpi_all_reduce_handle() { wait_noexcept(); }

  bool test() {
    if (!requests_.empty()) {
      int flag = 0;
      const int code = MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE);
      if (code != MPI_SUCCESS) requests_.clear();  // MPI frees failed requests
      detail::mpi_check(code, operation_, "MPI_Testall", rank_);
      if (!flag) return false;
      complete();
    }
    raise();
    return true;
  }

  /// Blocks: the watchdog counts from here (the time since start_all_reduce is the caller's).
  void wait() {
    if (!requests_.empty()) {
      int code = MPI_SUCCESS;
      {
        detail::mpi_watch watch(watchdog(), operation_, "MPI_Waitall", n_ * sizeof(T));
        code = MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
      }
      requests_.clear();
      detail::mpi_check(code, operation_, "MPI_Waitall", rank_);
      complete();
    }
    raise();
  }

 private:
  friend class mpi_communicator;
  mpi_all_reduce_handle(std::shared_ptr<detail::mpi_comm_handle> comm, T* out, std::size_t n, int size, int rank, bool average)
      : comm_(std::move(comm)), out_(out), n_(n), size_(size), rank_(rank), average_(average) {}

  detail::collective_watchdog* watchdog() const noexcept { return comm_ ? comm_->watchdog.get() : nullptr; }

  void complete() {
    requests_.clear();
    if (average_ && size_ > 1 && !error_) {
      const double inv = 1.0 / static_cast<double>(size_);
      for (std::size_t i = 0; i < n_; ++i) out_[i] = static_cast<T>(out_[i] * inv);
    }
    average_ = false;
  }
  void raise() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }
  void wait_noexcept() noexcept {
    int finalized = 1;
    if (requests_.empty() || MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
    detail::mpi_watch watch(watchdog(), operation_, "MPI_Waitall", n_ * sizeof(T));
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    requests_.clear();
  }

  std::vector<MPI_Request> requests_;
  std::shared_ptr<detail::mpi_comm_handle> comm_;  // keeps the communicator (and its watchdog) alive
  std::exception_ptr error_;  // found at the start, raised by test() / wait()
  T* out_ = nullptr;
  std::size_t n_ = 0;
  int size_ = 1, rank_ = -1;
  bool average_ = false;
  const char* operation_ = "start_all_reduce";  // or start_all_to_all, start_all_gather (words)
};

/// The communicator over an MPI intra-communicator, e.g. `dppf::mpi_communicator{MPI_COMM_WORLD}`. MPI must
/// be initialized (see mpi_environment). Construction is collective over `comm`.
///
/// Buffer all-reduce supports sum and avg; avg is MPI_SUM followed by a local scaling by 1/M
/// (MPI has no average), so the sum is accumulated in the buffer's element type in the MPI
/// library's order (unlike `threads`, which adds in double), followed by one more pass over the
/// output. MPI recommends, and Open MPI's algorithms give (the tests check it), the same result
/// bit for bit on every rank. Scalars (double) support sum, avg, min and max.
class mpi_communicator {
 public:
  using memory_space = host_space;

  explicit mpi_communicator(MPI_Comm comm, mpi_options options = {}) : options_(options), handle_(std::make_shared<detail::mpi_comm_handle>()) {
    detail::require_option(options.max_elements_per_call >= 1 && options.max_elements_per_call <= static_cast<std::size_t>(INT_MAX),
                           "mpi_options", "max_elements_per_call", options.max_elements_per_call, "must be in [1, INT_MAX]");
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
      throw communication_error("dppf::mpi_communicator: MPI is not initialized (or already finalized); create a dppf::mpi_environment first");
    if (comm == MPI_COMM_NULL) detail::throw_invalid("mpi: the communicator is MPI_COMM_NULL");
    int inter = 0;
    detail::mpi_check(MPI_Comm_test_inter(comm, &inter), "mpi", "MPI_Comm_test_inter", -1);
    detail::mpi_check(MPI_Comm_rank(comm, &rank_), "mpi", "MPI_Comm_rank", -1);
    if (inter) detail::throw_invalid("mpi: an inter-communicator is not supported; pass an intra-communicator");
    detail::mpi_check(MPI_Comm_size(comm, &size_), "mpi", "MPI_Comm_size", rank_);
    options_.timeout = detail::mpi_timeout(options);
    if (options_.timeout.count() > 0) {
      char name[MPI_MAX_PROCESSOR_NAME] = {};
      int length = 0;
      detail::mpi_check(MPI_Get_processor_name(name, &length), "mpi", "MPI_Get_processor_name", rank_);
      handle_->watchdog = std::make_unique<detail::collective_watchdog>(
          options_.timeout, [rank = rank_, size = size_, host = std::string(name, static_cast<std::size_t>(std::max(length, 0)))](
                                const detail::stalled_call& s) { detail::mpi_watchdog_abort(s, rank, size, host); });
    }
    {
      detail::mpi_watch watch(watchdog(), "mpi_communicator", "MPI_Comm_dup", 0);
      detail::mpi_check(MPI_Comm_dup(comm, &handle_->comm), "mpi", "MPI_Comm_dup", rank_);
    }
    detail::mpi_check(MPI_Comm_set_errhandler(handle_->comm, MPI_ERRORS_RETURN), "mpi", "MPI_Comm_set_errhandler", rank_);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// The options in force (timeout as DPPF_MPI_TIMEOUT_MS set it, if set).
  const mpi_options& options() const noexcept { return options_; }
  /// The duplicated communicator this object works on (e.g. to bootstrap NCCL).
  MPI_Comm native_handle() const noexcept { return handle_->comm; }

  /// out = sum (or average) over ranks of in. `in` and `out` may be the same buffer.
  template <host_buffer In, host_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(!std::is_const_v<buffer_element_t<Out>>, "dppf::mpi_communicator::all_reduce: the output buffer is read-only");
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce_buffer<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  /// inout = sum (or average) over ranks of inout.
  template <host_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::mpi_communicator::all_reduce: the buffer is read-only");
    T* p = std::ranges::data(inout);
    reduce_buffer<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  /// Sum, average, minimum or maximum of one double over ranks. Every rank must pass the same op.
  double all_reduce(double v, reduce_op op) {
    MPI_Op mop = MPI_SUM;
    switch (op) {
      case reduce_op::sum:
      case reduce_op::avg: mop = MPI_SUM; break;
      case reduce_op::min: mop = MPI_MIN; break;
      case reduce_op::max: mop = MPI_MAX; break;
      default:
        detail::throw_invalid("mpi::all_reduce: invalid reduce_op " + std::to_string(static_cast<int>(op)) + " for a scalar");
    }
    double r = 0.0;
    detail::mpi_watch watch(watchdog(), "all_reduce", "MPI_Allreduce", sizeof v);
    detail::mpi_check(MPI_Allreduce(&v, &r, 1, MPI_DOUBLE, mop, comm()), "all_reduce", "MPI_Allreduce", rank_);
    return op == reduce_op::avg ? r / size_ : r;
  }

  /// Every rank's v, in rank order.
  std::vector<double> all_gather(double v) {
    std::vector<double> all(static_cast<std::size_t>(size_));
    detail::mpi_watch watch(watchdog(), "all_gather", "MPI_Allgather", sizeof v);
    detail::mpi_check(MPI_Allgather(&v, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, comm()), "all_gather", "MPI_Allgather", rank_);
    return all;
  }

  /// Copies root's buffer into every rank's buffer.
  template <host_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::mpi_communicator::broadcast: the buffer is read-only");
    const std::size_t n = std::ranges::size(b);
    const std::string error = detail::root_problem("mpi::broadcast", root, size_);
    agree_on_arguments("broadcast", {.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root}, error);
    T* p = std::ranges::data(b);
    for (std::size_t offset = 0; offset < n; offset += options_.max_elements_per_call) {
      const int count = static_cast<int>(std::min(options_.max_elements_per_call, n - offset));
      detail::mpi_watch watch(watchdog(), "broadcast", "MPI_Bcast", count * sizeof(T));
      detail::mpi_check(MPI_Bcast(p + offset, count, detail::mpi_datatype<T>(), root, comm()), "broadcast", "MPI_Bcast", rank_);
    }
  }

  void barrier() {
    detail::mpi_watch watch(watchdog(), "barrier", "MPI_Barrier", 0);
    detail::mpi_check(MPI_Barrier(comm()), "barrier", "MPI_Barrier", rank_);
  }

  /// Block j of out <- block rank() of rank j's in (MPI_Alltoall; exchange_communicator.hpp).
  /// Each rank's buffer must fit one MPI call (at most INT_MAX words).
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    const std::string error = exchange_error("mpi::all_to_all", true, in, out);
    agree_on_arguments("all_to_all", {.kind = detail::collective::all_to_all, .n = in.size(), .element_size = 2}, error);
    const int block = static_cast<int>(in.size() / static_cast<std::size_t>(size_));
    detail::mpi_watch watch(watchdog(), "all_to_all", "MPI_Alltoall", in.size() * 2);
    detail::mpi_check(MPI_Alltoall(in.data(), block, MPI_UINT16_T, out.data(), block, MPI_UINT16_T, comm()), "all_to_all",
                      "MPI_Alltoall", rank_);
  }

  /// Block j of out <- rank j's in (MPI_Allgather; exchange_communicator.hpp). The output must
  /// fit one MPI call (at most INT_MAX words).
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    const std::string error = exchange_error("mpi::all_gather", false, in, out);
    agree_on_arguments("all_gather", {.kind = detail::collective::buffer_all_gather, .n = in.size(), .element_size = 2}, error);
    const int count = static_cast<int>(in.size());
    detail::mpi_watch watch(watchdog(), "all_gather", "MPI_Allgather", in.size() * 2);
    detail::mpi_check(MPI_Allgather(in.data(), count, MPI_UINT16_T, out.data(), count, MPI_UINT16_T, comm()), "all_gather",
                      "MPI_Allgather", rank_);
  }

  /// Start all_to_all / all_gather with MPI_Ialltoall / MPI_Iallgather and return (the same
  /// agreement and progress as start_all_reduce).
  mpi_all_reduce_handle<std::uint16_t> start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return start_exchange("start_all_to_all", true, in, out);
  }
  mpi_all_reduce_handle<std::uint16_t> start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return start_exchange("start_all_gather", false, in, out);
  }

  /// Starts out = sum (or average) over ranks of in with MPI_Iallreduce and returns. The
  /// argument agreement (options.check_arguments) is still one small blocking all-reduce at the
  /// start, so a mismatch is known on every rank before any payload moves; it is raised, like
  /// every error of the start, by the handle's test() / wait().
  template <host_buffer In, host_buffer Out>
  mpi_all_reduce_handle<std::remove_cv_t<buffer_element_t<Out>>> start_all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(!std::is_const_v<buffer_element_t<Out>>, "dppf::mpi_communicator::start_all_reduce: the output buffer is read-only");
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    return start_reduce<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <host_buffer B>
  mpi_all_reduce_handle<std::remove_cv_t<buffer_element_t<B>>> start_all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::mpi_communicator::start_all_reduce: the buffer is read-only");
    T* p = std::ranges::data(inout);
    return start_reduce<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

 private:
  MPI_Comm comm() const noexcept { return handle_->comm; }
  detail::collective_watchdog* watchdog() const noexcept { return handle_->watchdog.get(); }

  template <class T>
  static std::string buffer_problem(const char* who, const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    std::string error = detail::buffer_all_reduce_problem(who, n_in, n_out, op);
    if (error.empty() && in != out && n_in != 0) {
      // MPI forbids aliased send and receive buffers; identical ones are run in place.
      const auto a = reinterpret_cast<std::uintptr_t>(in), b = reinterpret_cast<std::uintptr_t>(out);
      const std::uintptr_t bytes = n_in * sizeof(T);
      if (a < b + bytes && b < a + bytes) error = std::string(who) + ": the input and output buffers overlap";
    }
    return error;
  }

  std::string exchange_error(const char* who, bool all_to_all, std::span<const std::uint16_t> in, std::span<std::uint16_t> out) const {
    std::string error = detail::exchange_problem(who, all_to_all, in.size(), out.size(), size_, in.data(), out.data());
    if (error.empty() && std::max(in.size(), out.size()) > static_cast<std::size_t>(INT_MAX))
      error = std::string(who) + ": " + std::to_string(std::max(in.size(), out.size())) + " words exceed one MPI call (INT_MAX)";
    return error;
  }

  mpi_all_reduce_handle<std::uint16_t> start_exchange(const char* operation, bool all_to_all, std::span<const std::uint16_t> in,
                                                      std::span<std::uint16_t> out) {
    mpi_all_reduce_handle<std::uint16_t> h(handle_, out.data(), out.size(), size_, rank_, false);
    h.operation_ = operation;
    try {
      const std::string error = exchange_error((std::string("mpi::") + operation).c_str(), all_to_all, in, out);
      agree_on_arguments(operation,
                         {.kind = all_to_all ? detail::collective::all_to_all : detail::collective::buffer_all_gather,
                          .n = in.size(),
                          .element_size = 2},
                         error);
      MPI_Request request = MPI_REQUEST_NULL;
      const int count = static_cast<int>(all_to_all ? in.size() / static_cast<std::size_t>(size_) : in.size());
      const int code = all_to_all ? MPI_Ialltoall(in.data(), count, MPI_UINT16_T, out.data(), count, MPI_UINT16_T, comm(), &request)
                                  : MPI_Iallgather(in.data(), count, MPI_UINT16_T, out.data(), count, MPI_UINT16_T, comm(), &request);
      detail::mpi_check(code, operation, all_to_all ? "MPI_Ialltoall" : "MPI_Iallgather", rank_);
      h.requests_.push_back(request);
    } catch (...) {
      h.error_ = std::current_exception();
    }
    return h;
  }

  template <class T>
  mpi_all_reduce_handle<T> start_reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    mpi_all_reduce_handle<T> h(handle_, out, n_in, size_, rank_, op == reduce_op::avg);
    try {
      const std::string error = buffer_problem("mpi::start_all_reduce", in, out, n_in, n_out, op);
      agree_on_arguments("start_all_reduce",
                         {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op}, error);
      for (std::size_t offset = 0; offset < n_in; offset += options_.max_elements_per_call) {
        const int count = static_cast<int>(std::min(options_.max_elements_per_call, n_in - offset));
        const void* send = in == out ? MPI_IN_PLACE : static_cast<const void*>(in + offset);
        MPI_Request request = MPI_REQUEST_NULL;
        detail::mpi_check(MPI_Iallreduce(send, out + offset, count, detail::mpi_datatype<T>(), MPI_SUM, comm(), &request),
                          "start_all_reduce", "MPI_Iallreduce", rank_);
        h.requests_.push_back(request);
      }
    } catch (...) {
      h.error_ = std::current_exception();
    }
    return h;
  }

  template <class T>
  void reduce_buffer(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const std::string error = buffer_problem("mpi::all_reduce", in, out, n_in, n_out, op);
    agree_on_arguments("all_reduce", {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op}, error);
    for (std::size_t offset = 0; offset < n_in; offset += options_.max_elements_per_call) {
      const int count = static_cast<int>(std::min(options_.max_elements_per_call, n_in - offset));
      const void* send = in == out ? MPI_IN_PLACE : static_cast<const void*>(in + offset);
      detail::mpi_watch watch(watchdog(), "all_reduce", "MPI_Allreduce", count * sizeof(T));
      detail::mpi_check(MPI_Allreduce(send, out + offset, count, detail::mpi_datatype<T>(), MPI_SUM, comm()), "all_reduce",
                        "MPI_Allreduce", rank_);
    }
    if (op == reduce_op::avg && size_ > 1) {
      const double inv = 1.0 / static_cast<double>(size_);
      for (std::size_t i = 0; i < n_in; ++i) out[i] = static_cast<T>(out[i] * inv);
    }
  }

  // One all-reduce (max) of the arguments' encoding: every rank learns whether any rank
  // rejected its arguments and whether the rest agree, and then all raise together. Only on a
  // mismatch, an all-gather of the encodings names the ranks that differ.
  void agree_on_arguments(const char* operation, detail::collective_args args, const std::string& error) {
    const std::string who = std::string("mpi::") + operation;
    if (!options_.check_arguments) {
      if (!error.empty()) detail::throw_invalid(error);
      return;
    }
    args.rejected = !error.empty();
    const detail::agreement_vector mine = detail::encode(args, rank_);
    detail::agreement_vector max{};
    const int words = static_cast<int>(detail::agreement_words);
    {
      detail::mpi_watch watch(watchdog(), operation, "MPI_Allreduce (argument agreement)", sizeof mine);
      detail::mpi_check(MPI_Allreduce(mine.data(), max.data(), words, MPI_INT64_T, MPI_MAX, comm()), operation, "MPI_Allreduce", rank_);
    }
    detail::raise_unless_agreed(who.c_str(), rank_, error, detail::verdict(max), [&] {
      std::vector<detail::agreement_vector> all(static_cast<std::size_t>(size_));
      detail::mpi_watch watch(watchdog(), operation, "MPI_Allgather (argument agreement)", sizeof mine);
      detail::mpi_check(MPI_Allgather(mine.data(), words, MPI_INT64_T, all.data(), words, MPI_INT64_T, comm()), operation,
                        "MPI_Allgather", rank_);
      std::vector<detail::collective_args> args_of(all.size());
      for (std::size_t r = 0; r < all.size(); ++r) args_of[r] = detail::decode(all[r]);
      return args_of;
    });
  }

  mpi_options options_;
  std::shared_ptr<detail::mpi_comm_handle> handle_;
  int rank_ = -1;
  int size_ = 0;
};

/// Initializes MPI (MPI_Init_thread) unless it already is, and finalizes it on destruction if
/// this object initialized it. Create it first in main(), before any dppf::mpi.
class mpi_environment {
 public:
  explicit mpi_environment(int required_thread_level = MPI_THREAD_FUNNELED)
      : mpi_environment(nullptr, nullptr, required_thread_level) {}
  mpi_environment(int& argc, char**& argv, int required_thread_level = MPI_THREAD_FUNNELED)
      : mpi_environment(&argc, &argv, required_thread_level) {}

  mpi_environment(const mpi_environment&) = delete;
  mpi_environment& operator=(const mpi_environment&) = delete;

  ~mpi_environment() {
    int finalized = 1;
    if (owner_ && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
  }

  /// The thread support level MPI provides (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
  int thread_level() const noexcept { return provided_; }
  /// Whether this object initialized MPI (and so finalizes it).
  bool owner() const noexcept { return owner_; }

 private:
  mpi_environment(int* argc, char*** argv, int required) {
    detail::require_option(required >= MPI_THREAD_SINGLE && required <= MPI_THREAD_MULTIPLE, "mpi_environment",
                           "required_thread_level", required, "must be one of MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE");
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) throw communication_error("dppf::mpi_environment: MPI was finalized already and cannot be initialized again");
    if (initialized) {
      detail::mpi_check(MPI_Query_thread(&provided_), "mpi_environment", "MPI_Query_thread", -1);
    } else {
      detail::mpi_check(MPI_Init_thread(argc, argv, required, &provided_), "mpi_environment", "MPI_Init_thread", -1);
      owner_ = true;
    }
    if (provided_ < required) {
      if (owner_) MPI_Finalize();
      throw communication_error("dppf::mpi_environment: MPI provides thread level " + std::to_string(provided_) +
                                ", less than the required " + std::to_string(required));
    }
  }

  int provided_ = MPI_THREAD_SINGLE;
  bool owner_ = false;
};

/// The 0.1 spelling.
using mpi [[deprecated("dppf 0.2 renamed it dppf::mpi_communicator; see CHANGELOG.md")]] = mpi_communicator;

}  // namespace dppf
