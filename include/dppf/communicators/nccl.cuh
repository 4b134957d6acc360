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
// * Stream order: collectives run on the communicator's stream, after the work queued there;
//   buffers produced on another stream must have that stream synchronized first (an executor on
//   the same stream, e.g. dppf::cuda_executor{stream}, needs nothing). Buffers used here and allocated in
//   stream order (dppf::device_array) must have been allocated on this stream, or synchronized.

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
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

}  // namespace detail

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

  /// Joins the group `id` as `rank` of `size`; collectives run on `stream` (not owned).
  nccl_communicator(ncclUniqueId id, int rank, int size, cudaStream_t stream = nullptr, nccl_options options = {})
      : rank_(rank), size_(size), stream_(stream), options_(options) {
    detail::require_option(size >= 1, "nccl", "size", size, "must be >= 1");
    detail::require_option(rank >= 0 && rank < size, "nccl", "rank", rank, "must be in [0, size)");
    detail::require_option(options.timeout.count() > 0, "nccl", "timeout", options.timeout.count(), "must be > 0 ms");
    // The scratch first: if it cannot be had, no communicator is left behind unfinalized.
    scratch_ = device_array<double>(static_cast<std::size_t>(size) + 1, stream_);
    words_ = device_array<std::int64_t>((static_cast<std::size_t>(size) + 1) * detail::agreement_words, stream_);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, size, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (comm_) (void)ncclCommAbort(comm_);
      comm_ = nullptr;
      throw communication_error(std::string("dppf::nccl_communicator: ncclCommInitRankConfig failed on rank ") + std::to_string(rank) +
                                ": " + ncclGetErrorString(r));
    }
    wait("ncclCommInitRankConfig", false);
  }

  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;
  nccl_communicator(nccl_communicator&& o) noexcept
      : rank_(o.rank_), size_(o.size_), stream_(o.stream_), options_(o.options_),
        comm_(std::exchange(o.comm_, nullptr)), scratch_(std::move(o.scratch_)), words_(std::move(o.words_)) {}
  nccl_communicator& operator=(nccl_communicator&&) = delete;

  /// Finalizes (waiting at most the timeout) and destroys the communicator; aborts it if that fails.
  ~nccl_communicator() {
    if (!comm_) return;
    ncclResult_t r = ncclCommFinalize(comm_);
    if (r == ncclSuccess || r == ncclInProgress) {
      try {
        wait("ncclCommFinalize", false);  // aborts and nulls comm_ on failure
      } catch (...) {
      }
    } else {
      (void)ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    if (comm_) (void)ncclCommDestroy(comm_);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  cudaStream_t stream() const noexcept { return stream_; }
  ncclComm_t native_handle() const noexcept { return comm_; }

  /// out = sum (or average) over ranks of in.
  template <device_buffer In, device_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce_buffer<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <device_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    reduce_buffer<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  /// A scalar reduced over ranks (sum, avg, min or max), through the device.
  double all_reduce(double v, reduce_op op) {
    upload_scalar(v);
    check(ncclAllReduce(scratch_.data(), scratch_.data(), 1, ncclDouble, detail::nccl_op(op), comm_, stream_),
          "ncclAllReduce (scalar)");
    return download(1).front();
  }

  /// Every rank's v, in rank order.
  std::vector<double> all_gather(double v) {
    upload_scalar(v);
    check(ncclAllGather(scratch_.data(), scratch_.data() + 1, 1, ncclDouble, comm_, stream_), "ncclAllGather");
    std::vector<double> all = download(static_cast<std::size_t>(size_) + 1);
    all.erase(all.begin());
    return all;
  }

  template <device_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    const std::string problem = detail::root_problem("nccl::broadcast", root, size_);
    const std::size_t n = std::ranges::size(b);
    agree("nccl::broadcast", {.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root}, problem);
    T* p = std::ranges::data(b);
    check(ncclBroadcast(p, p, n, detail::nccl_type<T>(), root, comm_, stream_), "ncclBroadcast");
    wait("ncclBroadcast");
  }

  void barrier() { (void)all_reduce(0.0, reduce_op::sum); }

 private:
  template <class T>
  void reduce_buffer(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const std::string problem = detail::buffer_all_reduce_problem("nccl::all_reduce", n_in, n_out, op);
    agree("nccl::all_reduce", {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op},
          problem);
    check(ncclAllReduce(in, out, n_in, detail::nccl_type<T>(), detail::nccl_op(op), comm_, stream_), "ncclAllReduce");
    wait("ncclAllReduce");
  }

  // One all-reduce (max) of this rank's encoded arguments; every rank raises together unless
  // all agree (an all-gather of the encodings then names who differs). Without the check, a
  // rank's own bad argument raises on that rank alone.
  void agree(const char* who, detail::collective_args args, const std::string& problem) {
    if (!options_.check_sizes) {
      if (!problem.empty()) detail::throw_invalid(problem);
      return;
    }
    require_alive(who);
    args.rejected = !problem.empty();
    const detail::agreement_vector mine = detail::encode(args, rank_);
    constexpr std::size_t words = detail::agreement_words;
    detail::agreement_vector max{};
    cuda_check(cudaMemcpyAsync(words_.data(), mine.data(), sizeof mine, cudaMemcpyHostToDevice, stream_),
               "nccl: cudaMemcpyAsync (arguments)");
    check(ncclAllReduce(words_.data(), words_.data(), words, ncclInt64, ncclMax, comm_, stream_), "ncclAllReduce (arguments)");
    cuda_check(cudaMemcpyAsync(max.data(), words_.data(), sizeof max, cudaMemcpyDeviceToHost, stream_),
               "nccl: cudaMemcpyAsync (arguments)");
    wait("ncclAllReduce (arguments)");
    detail::raise_unless_agreed(who, rank_, problem, detail::verdict(max), [&] {
      std::vector<detail::agreement_vector> all(static_cast<std::size_t>(size_));
      cuda_check(cudaMemcpyAsync(words_.data(), mine.data(), sizeof mine, cudaMemcpyHostToDevice, stream_),
                 "nccl: cudaMemcpyAsync (arguments)");
      check(ncclAllGather(words_.data(), words_.data() + words, words, ncclInt64, comm_, stream_), "ncclAllGather (arguments)");
      cuda_check(cudaMemcpyAsync(all.data(), words_.data() + words, all.size() * sizeof mine, cudaMemcpyDeviceToHost, stream_),
                 "nccl: cudaMemcpyAsync (arguments)");
      wait("ncclAllGather (arguments)");
      std::vector<detail::collective_args> args_of(all.size());
      for (std::size_t r = 0; r < all.size(); ++r) args_of[r] = detail::decode(all[r]);
      return args_of;
    });
  }

  void require_alive(const char* what) const {
    if (!comm_) throw communication_error(std::string("dppf::nccl_communicator: ") + what + ": the communicator was aborted");
  }

  [[noreturn]] void fail(const std::string& why) {
    if (comm_) (void)ncclCommAbort(comm_);
    comm_ = nullptr;
    throw communication_error("dppf::nccl_communicator: " + why + " on rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                              " (communicator aborted)");
  }

  // ncclInProgress is a queued non-blocking call: wait() finds out how it ends.
  void check(ncclResult_t r, const char* what) {
    require_alive(what);
    if (r != ncclSuccess && r != ncclInProgress) {
      const char* last = ncclGetLastError(comm_);
      fail(std::string(what) + " failed: " + ncclGetErrorString(r) + (last && *last ? std::string(" (") + last + ")" : ""));
    }
  }

  // Polls NCCL's asynchronous error until no call is in progress on comm_ and then, for a
  // collective (on_stream), until the stream has run it; up to the timeout. Used for init and
  // finalize too, which queue nothing on the stream.
  void wait(const char* what, bool on_stream = true) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    for (;;) {
      require_alive(what);
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
      if (r != ncclSuccess) fail(std::string("ncclCommGetAsyncError failed during ") + what + ": " + ncclGetErrorString(r));
      if (async != ncclSuccess && async != ncclInProgress)
        fail(std::string(what) + " failed asynchronously: " + ncclGetErrorString(async));
      if (async == ncclSuccess) {
        if (!on_stream) return;
        const cudaError_t e = cudaStreamQuery(stream_);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) {
          (void)cudaGetLastError();  // reported here, not again by a later launch check
          fail(std::string(what) + ": CUDA error " + cudaGetErrorName(e) + " on the stream");
        }
      }
      if (std::chrono::steady_clock::now() > deadline)
        fail(std::string(what) + " timed out after " + std::to_string(options_.timeout.count()) + " ms");
      std::this_thread::yield();
    }
  }

  void upload_scalar(double v) {
    require_alive("scalar collective");
    cuda_check(cudaMemcpyAsync(scratch_.data(), &v, sizeof(double), cudaMemcpyHostToDevice, stream_),
                       "nccl: cudaMemcpyAsync (scalar)");
  }

  std::vector<double> download(std::size_t n) {
    std::vector<double> out(n);
    wait("scalar collective");
    cuda_check(cudaMemcpyAsync(out.data(), scratch_.data(), n * sizeof(double), cudaMemcpyDeviceToHost, stream_),
                       "nccl: cudaMemcpyAsync (scalar result)");
    wait("scalar collective (copy)");
    return out;
  }

  int rank_;
  int size_;
  cudaStream_t stream_;
  nccl_options options_;
  ncclComm_t comm_ = nullptr;
  device_array<double> scratch_;         // [scalar in/out, all-gather results (size)]
  device_array<std::int64_t> words_;     // argument agreement: [this rank's, every rank's (size)]
};

/// The 0.1 spelling.
using nccl [[deprecated("dppf 0.2 renamed it dppf::nccl_communicator; see CHANGELOG.md")]] = nccl_communicator;

}  // namespace dppf
