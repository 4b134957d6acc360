#pragma once
// dppf::nccl_communicator: a communicator of device buffers over NCCL, on one CUDA stream.
//
// * Made from a unique id, this rank and the group size (nccl::unique_id() on one rank, shipped
//   to the others by any means), or from MPI with dppf/communicators/nccl_mpi.cuh.
// * The communicator is non-blocking (ncclConfig_t::blocking = 0): no NCCL call can hang the
//   caller. Every ncclResult_t is checked; every collective then waits for its completion by
//   polling ncclCommGetAsyncError and the stream, up to options.timeout. An error or a timeout
//   aborts the communicator (ncclCommAbort) and raises dppf::communication_error; the other
//   ranks then fail in NCCL or reach their own timeout and raise too, never hang.
// * Buffer all-reduces support sum and avg (ncclAvg), in place or out of place; scalars
//   (double) also min and max. Before each buffer collective the ranks agree on its arguments
//   (collective, sizes, reduce_op, root, and whether a rank rejected its own): one all-reduce
//   (max) of the few integers of communicators/detail/agreement.hpp, so a mismatch raises on
//   every rank instead of hanging NCCL or corrupting a buffer; options.check_sizes = false
//   skips it. The check cannot ride with the data: NCCL needs the counts and the root on the
//   host before it can start.
// * Stream order: every collective runs after the work queued on the communicator's stream
//   (the one it was made with); buffers produced on another stream must have that stream
//   synchronized first (an executor on the same stream, e.g. dppf::cuda_executor{stream}, needs
//   nothing). Buffers used here and allocated in stream order (dppf::device_array) must have
//   been allocated on this stream, or synchronized.
// * Every NCCL call of the communicator is queued on one side stream of its own, after an event
//   recorded on the communicator's stream: so the collectives of one communicator run in the
//   order they were issued, one at a time (NCCL does not promise that two collectives of one
//   communicator on two streams progress together), while kernels queued on the communicator's
//   stream afterwards run beside them. As PyTorch's ProcessGroupNCCL keeps one NCCL stream per
//   communicator, for the same reason.
// * start_all_reduce (the async_communicator concept) queues the all-reduce there and returns a
//   handle at once; the handle's test() asks the side stream's event, wait() polls it and NCCL's
//   asynchronous error up to options.timeout (then aborts the communicator and raises
//   timeout_error). The start agrees on the arguments first, like every buffer collective: a
//   blocking exchange of a few integers queued behind what the communicator has in flight, so a
//   start waits for the previous started all-reduce (check_sizes = false starts without waiting).
//   Handles share the communicator's NCCL state, so one outliving a destroyed or aborted
//   communicator raises instead of touching freed state.

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../cuda_check.cuh"
#include "../error.hpp"
#include "../device_array.cuh"
#include "detail/agreement.hpp"

namespace dppf {

struct nccl_options {
  /// Longest wait for any NCCL operation (including initialization) before aborting.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  /// Agree on the arguments of each buffer collective across ranks first (sizes, element type,
  /// reduce_op, root; one all-reduce of a few integers). Off: a mismatch is undefined in NCCL
  /// (a hang until the timeout, or a corrupt buffer).
  bool check_sizes = true;
};

namespace detail {

// NCCL's element type for T: only the types dppf reduces (parameter buffers, scalars, the
// argument agreement's integers); anything else is a compile-time error, never a wrong type.
template <class T>
constexpr ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>)
    return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return ncclFloat64;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return ncclInt64;
  else
    static_assert(sizeof(T) == 0, "dppf::nccl_communicator: no NCCL type for this element type");
}

// NCCL's reduction for op (avg is NCCL's own ncclAvg, not a sum scaled afterwards). One rank
// cannot tell sum from avg, so a host test checks this table.
constexpr ncclRedOp_t nccl_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum: return ncclSum;
    case reduce_op::avg: return ncclAvg;
    case reduce_op::min: return ncclMin;
    case reduce_op::max: return ncclMax;
  }
  throw_invalid("nccl: invalid reduce_op " + std::to_string(static_cast<int>(op)));
}

// What a communicator and the handles of its started collectives share: the NCCL communicator
// (null once aborted or destroyed), the side stream every NCCL call is queued on, and how to fail.
struct nccl_core {
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  ncclComm_t comm = nullptr;
  cudaStream_t side = nullptr;  // owned; made on the device current when the communicator is

  nccl_core(int r, int m, std::chrono::milliseconds t) : rank(r), size(m), timeout(t) {
    cuda_check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "nccl: cudaStreamCreateWithFlags (side stream)");
  }
  nccl_core(const nccl_core&) = delete;
  nccl_core& operator=(const nccl_core&) = delete;
  ~nccl_core() { cuda_discard(cudaStreamDestroy(side)); }

  void require_alive(const char* what) const {
    if (!comm) throw communication_error(std::string("dppf::nccl_communicator: ") + what + ": the communicator was aborted");
  }

  // Aborts the communicator (every handle and later call then raises) and raises E.
  template <class E = communication_error>
  [[noreturn]] void fail(const std::string& why) {
    if (comm) (void)ncclCommAbort(comm);
    comm = nullptr;
    throw E("dppf::nccl_communicator: " + why + " on rank " + std::to_string(rank) + " of " + std::to_string(size) +
            " (communicator aborted)");
  }

  // ncclInProgress is a queued non-blocking call: wait() finds out how it ends.
  void check(ncclResult_t r, const char* what) {
    require_alive(what);
    if (r != ncclSuccess && r != ncclInProgress) {
      const char* last = ncclGetLastError(comm);
      fail(std::string(what) + " failed: " + ncclGetErrorString(r) + (last && *last ? std::string(" (") + last + ")" : ""));
    }
  }

  // True once NCCL has no call in progress on comm; raises (and aborts) on its asynchronous error.
  bool settled(const char* what) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm, &async);
    if (r != ncclSuccess) fail(std::string("ncclCommGetAsyncError failed during ") + what + ": " + ncclGetErrorString(r));
    if (async != ncclSuccess && async != ncclInProgress) fail(std::string(what) + " failed asynchronously: " + ncclGetErrorString(async));
    return async == ncclSuccess;
  }

  // True once `done` says its work ran (cudaEventQuery, or cudaStreamQuery for a stream).
  bool ran(cudaError_t done, const char* what) {
    if (done == cudaSuccess) return true;
    if (done != cudaErrorNotReady) {
      (void)cudaGetLastError();  // reported here, not again by a later launch check
      fail(std::string(what) + ": CUDA error " + cudaGetErrorName(done) + " on the side stream");
    }
    return false;
  }

  // Polls until ready() (with NCCL settled) or the timeout, which raises timeout_error.
  template <class Ready>
  void poll(const char* what, Ready ready) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      require_alive(what);
      if (settled(what) && ready()) return;
      if (std::chrono::steady_clock::now() > deadline)
        fail<timeout_error>(std::string(what) + " timed out after " + std::to_string(timeout.count()) + " ms");
      std::this_thread::yield();
    }
  }
};

}  // namespace detail

/// The handle of nccl_communicator::start_all_reduce (see async_communicator.hpp and the file
/// comment). The destructor waits (bounded by the timeout; errors swallowed).
class nccl_all_reduce_handle {
 public:
  nccl_all_reduce_handle(nccl_all_reduce_handle&& o) noexcept
      : core_(std::move(o.core_)), done_(std::exchange(o.done_, nullptr)) {}
  nccl_all_reduce_handle& operator=(nccl_all_reduce_handle&& o) noexcept {
    if (this != &o) {
      wait_noexcept();
      core_ = std::move(o.core_);
      done_ = std::exchange(o.done_, nullptr);
    }
    return *this;
  }
  ~nccl_all_reduce_handle() { wait_noexcept(); }

  /// True when the result is in the output; raises the collective's error once it is known.
  bool test() {
    if (!done_) return true;
    if (core_->ran(cudaEventQuery(done_), "start_all_reduce")) {
      release();
      return true;
    }
    core_->require_alive("start_all_reduce");
    (void)core_->settled("start_all_reduce");
    return false;
  }

  /// Returns when the result is in the output, or raises (timeout_error past the timeout).
  void wait() {
    if (!done_) return;
    try {
      // Finished work counts even if the communicator was aborted since (ran() comes first).
      const auto deadline = std::chrono::steady_clock::now() + core_->timeout;
      while (!core_->ran(cudaEventQuery(done_), "start_all_reduce")) {
        core_->require_alive("start_all_reduce");
        (void)core_->settled("start_all_reduce");
        if (std::chrono::steady_clock::now() > deadline)
          core_->fail<timeout_error>("start_all_reduce timed out after " + std::to_string(core_->timeout.count()) + " ms");
        std::this_thread::yield();
      }
    } catch (...) {
      release();
      throw;
    }
    release();
  }

 private:
  friend class nccl_communicator;
  nccl_all_reduce_handle(std::shared_ptr<detail::nccl_core> core, cudaEvent_t done) : core_(std::move(core)), done_(done) {}

  void release() noexcept { detail::cuda_discard(cudaEventDestroy(std::exchange(done_, nullptr))); }
  void wait_noexcept() noexcept {
    try {
      wait();
    } catch (...) {
    }
  }

  std::shared_ptr<detail::nccl_core> core_;
  cudaEvent_t done_ = nullptr;  // recorded on the side stream after the all-reduce; null once waited
};

class nccl_communicator {
 public:
  using memory_space = device_space;

  /// A fresh unique id (call on one rank, give it to all).
  static ncclUniqueId unique_id() {
    ncclUniqueId id;
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      throw communication_error(std::string("dppf::nccl_communicator: ncclGetUniqueId failed: ") + ncclGetErrorString(r));
    return id;
  }

  /// Joins the group `id` as `rank` of `size`; collectives run after the work queued on `stream`
  /// (not owned), on a side stream of the communicator's own (see the file comment).
  nccl_communicator(ncclUniqueId id, int rank, int size, cudaStream_t stream = nullptr, nccl_options options = {})
      : stream_(stream), options_(options) {
    detail::require_option(size >= 1, "nccl", "size", size, "must be >= 1");
    detail::require_option(rank >= 0 && rank < size, "nccl", "rank", rank, "must be in [0, size)");
    detail::require_option(options.timeout.count() > 0, "nccl", "timeout", options.timeout.count(), "must be > 0 ms");
    // The scratch and the side stream first: if they cannot be had, no communicator is left
    // behind unfinalized.
    core_ = std::make_shared<detail::nccl_core>(rank, size, options.timeout);
    scratch_ = device_array<double>(static_cast<std::size_t>(size) + 1, stream_);
    words_ = device_array<std::int64_t>((static_cast<std::size_t>(size) + 1) * detail::agreement_words, stream_);
    pinned_ = pinned_words(size);
    cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "nccl: cudaEventCreateWithFlags");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&core_->comm, size, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (core_->comm) (void)ncclCommAbort(core_->comm);
      core_->comm = nullptr;
      detail::cuda_discard(cudaEventDestroy(ready_));
      throw communication_error(std::string("dppf::nccl_communicator: ncclCommInitRankConfig failed on rank ") + std::to_string(rank) +
                                ": " + ncclGetErrorString(r));
    }
    try {
      core_->poll("ncclCommInitRankConfig", [] { return true; });
    } catch (...) {
      detail::cuda_discard(cudaEventDestroy(ready_));
      throw;
    }
  }

  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;
  nccl_communicator(nccl_communicator&& o) noexcept
      : stream_(o.stream_), options_(o.options_), core_(std::move(o.core_)), ready_(std::exchange(o.ready_, nullptr)),
        scratch_(std::move(o.scratch_)), words_(std::move(o.words_)), pinned_(std::move(o.pinned_)) {}
  nccl_communicator& operator=(nccl_communicator&&) = delete;

  /// Finalizes (waiting at most the timeout for what is in flight) and destroys the
  /// communicator; aborts it if that fails. Handles still held raise from then on.
  ~nccl_communicator() {
    if (!core_) return;  // moved from
    if (core_->comm) {
      const ncclResult_t r = ncclCommFinalize(core_->comm);
      if (r == ncclSuccess || r == ncclInProgress) {
        try {
          core_->poll("ncclCommFinalize", [] { return true; });  // aborts and nulls comm on failure
        } catch (...) {
        }
      } else {
        (void)ncclCommAbort(core_->comm);
        core_->comm = nullptr;
      }
      if (core_->comm) (void)ncclCommDestroy(std::exchange(core_->comm, nullptr));
    }
    detail::cuda_discard(cudaStreamSynchronize(core_->side));  // the scratch is freed on stream_ next
    detail::cuda_discard(cudaEventDestroy(ready_));
  }

  int rank() const noexcept { return core_->rank; }
  int size() const noexcept { return core_->size; }
  cudaStream_t stream() const noexcept { return stream_; }
  /// The side stream the NCCL calls are queued on (owned by the communicator).
  cudaStream_t side_stream() const noexcept { return core_->side; }
  ncclComm_t native_handle() const noexcept { return core_->comm; }

  /// out = sum (or average) over ranks of in.
  template <device_buffer In, device_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce_buffer<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
    wait("ncclAllReduce");
  }

  template <device_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    reduce_buffer<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
    wait("ncclAllReduce");
  }

  /// Starts out = sum (or average) over ranks of in and returns at once (after the argument
  /// agreement); see async_communicator.hpp for what the handle promises.
  template <device_buffer In, device_buffer Out>
  nccl_all_reduce_handle start_all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    static_assert(!std::is_const_v<buffer_element_t<Out>>, "dppf::nccl_communicator::start_all_reduce: the output buffer is read-only");
    return start_reduce<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <device_buffer B>
  nccl_all_reduce_handle start_all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    return start_reduce<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  /// A scalar reduced over ranks (sum, avg, min or max), through the device.
  double all_reduce(double v, reduce_op op) {
    upload_scalar(v);
    check(ncclAllReduce(scratch_.data(), scratch_.data(), 1, ncclDouble, detail::nccl_op(op), core_->comm, side()),
          "ncclAllReduce (scalar)");
    return download(1).front();
  }

  /// Every rank's v, in rank order.
  std::vector<double> all_gather(double v) {
    upload_scalar(v);
    check(ncclAllGather(scratch_.data(), scratch_.data() + 1, 1, ncclDouble, core_->comm, side()), "ncclAllGather");
    std::vector<double> all = download(static_cast<std::size_t>(size()) + 1);
    all.erase(all.begin());
    return all;
  }

  template <device_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    const std::string problem = detail::root_problem("nccl::broadcast", root, size());
    const std::size_t n = std::ranges::size(b);
    agree("nccl::broadcast", {.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root}, problem);
    T* p = std::ranges::data(b);
    check(ncclBroadcast(p, p, n, detail::nccl_type<T>(), root, core_->comm, side()), "ncclBroadcast");
    wait("ncclBroadcast");
  }

  void barrier() { (void)all_reduce(0.0, reduce_op::sum); }

 private:
  cudaStream_t side() const noexcept { return core_->side; }

  // The side stream waits for the work queued on stream_ so far: what a collective's inputs
  // come from. Every public operation calls it before it queues anything on the side stream.
  void enter(const char* what) {
    require_alive(what);
    cuda_check(cudaEventRecord(ready_, stream_), "nccl: cudaEventRecord (the stream's work so far)");
    cuda_check(cudaStreamWaitEvent(side(), ready_, 0), "nccl: cudaStreamWaitEvent (the side stream on the stream)");
  }

  // Agrees on the arguments, then queues the all-reduce on the side stream.
  template <class T>
  void reduce_buffer(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op, const char* who = "nccl::all_reduce") {
    const std::string problem = detail::buffer_all_reduce_problem(who, n_in, n_out, op);
    agree(who, {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op}, problem);
    check(ncclAllReduce(in, out, n_in, detail::nccl_type<T>(), detail::nccl_op(op), core_->comm, side()), "ncclAllReduce");
  }

  template <class T>
  nccl_all_reduce_handle start_reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const char* who = "nccl::start_all_reduce";
    cudaEvent_t done = nullptr;
    cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "nccl: cudaEventCreateWithFlags");
    nccl_all_reduce_handle h(core_, done);  // owns the event from here on, whatever happens
    reduce_buffer<T>(in, out, n_in, n_out, op, who);
    cuda_check(cudaEventRecord(done, side()), "nccl: cudaEventRecord (start_all_reduce)");
    return h;
  }

  // One all-reduce (max) of this rank's encoded arguments; every rank raises together unless
  // all agree (an all-gather of the encodings then names who differs). Without the check, a
  // rank's own bad argument raises on that rank alone.
  // Calls enter() first, so the collective queued after it follows stream_'s work.
  void agree(const char* who, detail::collective_args args, const std::string& problem) {
    enter(who);
    if (!options_.check_sizes) {
      if (!problem.empty()) detail::throw_invalid(problem);
      return;
    }
    args.rejected = !problem.empty();
    const detail::agreement_vector mine = detail::encode(args, rank());
    constexpr std::size_t words = detail::agreement_words;
    auto* staged = reinterpret_cast<std::int64_t*>(pinned_.get());
    std::copy(mine.begin(), mine.end(), staged);
    cuda_check(cudaMemcpyAsync(words_.data(), staged, sizeof mine, cudaMemcpyHostToDevice, side()), "nccl: cudaMemcpyAsync (arguments)");
    check(ncclAllReduce(words_.data(), words_.data(), words, ncclInt64, ncclMax, core_->comm, side()), "ncclAllReduce (arguments)");
    cuda_check(cudaMemcpyAsync(staged, words_.data(), sizeof mine, cudaMemcpyDeviceToHost, side()), "nccl: cudaMemcpyAsync (arguments)");
    wait("ncclAllReduce (arguments)");
    detail::agreement_vector max{};
    std::copy(staged, staged + words, max.begin());
    detail::raise_unless_agreed(who, rank(), problem, detail::verdict(max), [&] {
      std::copy(mine.begin(), mine.end(), staged);
      cuda_check(cudaMemcpyAsync(words_.data(), staged, sizeof mine, cudaMemcpyHostToDevice, side()),
                 "nccl: cudaMemcpyAsync (arguments)");
      check(ncclAllGather(words_.data(), words_.data() + words, words, ncclInt64, core_->comm, side()), "ncclAllGather (arguments)");
      const std::size_t m = static_cast<std::size_t>(size());
      cuda_check(cudaMemcpyAsync(staged, words_.data() + words, m * sizeof mine, cudaMemcpyDeviceToHost, side()),
                 "nccl: cudaMemcpyAsync (arguments)");
      wait("ncclAllGather (arguments)");
      std::vector<detail::collective_args> args_of(m);
      for (std::size_t r = 0; r < m; ++r) {
        detail::agreement_vector w{};
        std::copy(staged + r * words, staged + (r + 1) * words, w.begin());
        args_of[r] = detail::decode(w);
      }
      return args_of;
    });
  }

  void require_alive(const char* what) const { core_->require_alive(what); }
  void check(ncclResult_t r, const char* what) { core_->check(r, what); }

  // Polls NCCL's asynchronous error and the side stream until what was queued there ran, up to
  // the timeout (then aborts and raises timeout_error).
  void wait(const char* what) {
    core_->poll(what, [&] { return core_->ran(cudaStreamQuery(side()), what); });
  }

  void upload_scalar(double v) {
    enter("scalar collective");
    auto* staged = reinterpret_cast<double*>(pinned_.get());
    *staged = v;
    cuda_check(cudaMemcpyAsync(scratch_.data(), staged, sizeof(double), cudaMemcpyHostToDevice, side()), "nccl: cudaMemcpyAsync (scalar)");
  }

  std::vector<double> download(std::size_t n) {
    const auto* staged = reinterpret_cast<const double*>(pinned_.get());
    cuda_check(cudaMemcpyAsync(pinned_.get(), scratch_.data(), n * sizeof(double), cudaMemcpyDeviceToHost, side()),
               "nccl: cudaMemcpyAsync (scalar result)");
    wait("scalar collective");
    return std::vector<double>(staged, staged + n);
  }

  // Page-locked host memory for the few words sent and received through the device (scalars,
  // the argument agreement): copies from pageable memory synchronize with the side stream, which
  // could wait past the timeout behind a stalled collective; these never block the host.
  struct pinned_free {
    void operator()(std::byte* p) const noexcept { detail::cuda_discard(cudaFreeHost(p)); }
  };
  static std::unique_ptr<std::byte[], pinned_free> pinned_words(int size) {
    const std::size_t m = static_cast<std::size_t>(size) + 1;
    const std::size_t bytes = std::max(m * sizeof(double), m * detail::agreement_words * sizeof(std::int64_t));
    void* p = nullptr;
    cuda_check(cudaMallocHost(&p, bytes), "nccl: cudaMallocHost (staging words)");
    return std::unique_ptr<std::byte[], pinned_free>(static_cast<std::byte*>(p));
  }

  cudaStream_t stream_;
  nccl_options options_;
  std::shared_ptr<detail::nccl_core> core_;
  cudaEvent_t ready_ = nullptr;          // recorded on stream_ by enter(): the side stream waits for it
  device_array<double> scratch_;         // [scalar in/out, all-gather results (size)]
  device_array<std::int64_t> words_;     // argument agreement: [this rank's, every rank's (size)]
  std::unique_ptr<std::byte[], pinned_free> pinned_;  // staging for scratch_ and words_
};

/// The 0.1 spelling.
using nccl [[deprecated("dppf 0.2 renamed it dppf::nccl_communicator; see CHANGELOG.md")]] = nccl_communicator;

}  // namespace dppf
