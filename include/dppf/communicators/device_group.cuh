#pragma once
// dppf::device_group: M virtual workers on one GPU in one process, for single-GPU research.
// Each worker runs on its own host thread (group.run(f) calls f(member(r)) on M threads, like
// dppf::thread_group) and owns its device buffers; a buffer all-reduce is one kernel on the group's
// stream that adds every rank's element in rank order, in double, and writes the rounded result
// into every rank's output: deterministic and identical on every rank. Scalars are reduced on
// the host exactly as dppf::thread_group does. Rendezvous, argument agreement, abort on failure
// and the timeout are dppf::thread_group's own. Every worker thread of run() makes the stream's
// device current.
//
// Stream order: the collective's kernel and copies run on the group's stream, after whatever
// each rank queued there before the call. A rank that produces its buffers on another stream
// must synchronize that stream first (a dppf::cuda_executor executor on the group's stream needs nothing).

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../cuda_check.cuh"
#include "../executors/detail/cuda_kernels.cuh"
#include "../error.hpp"
#include "detail/agreement.hpp"
#include "thread_group.hpp"

namespace dppf {

namespace detail {

inline constexpr int device_group_max_ranks = 128;

template <class T>
struct device_group_table {
  const T* in[device_group_max_ranks];
  T* out[device_group_max_ranks];
};

// out_r[i] = (sum over r of in_r[i]) * scale for every rank r; all inputs are read before any
// output of the same element is written, so in-place calls are safe.
template <class T>
__global__ void __launch_bounds__(cuda_block)
    device_group_reduce_kernel(device_group_table<T> t, int m, std::size_t n, double scale) {
  const std::size_t stride = std::size_t(blockDim.x) * gridDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    double acc = 0.0;
    for (int r = 0; r < m; ++r) acc += static_cast<double>(t.in[r][i]);
    const T y = static_cast<T>(acc * scale);
    for (int r = 0; r < m; ++r) t.out[r][i] = y;
  }
}

// The CUDA calls behind a group's choice of device, replaceable by stand-ins (tests without a GPU).
struct cuda_device_calls {
  cudaError_t (*get_device)(int*) = cudaGetDevice;
  cudaError_t (*stream_device)(cudaStream_t, int*) = cudaStreamGetDevice;
  cudaError_t (*set_device)(int) = cudaSetDevice;
};

// The device a stream belongs to. The legacy and per-thread default streams (nullptr,
// cudaStreamLegacy, cudaStreamPerThread) are handles of the calling thread's current device.
inline int stream_device(cudaStream_t s, const cuda_device_calls& calls) {
  int d = 0;
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread)
    cuda_check(calls.get_device(&d), "device_group: cudaGetDevice");
  else
    cuda_check(calls.stream_device(s, &d), "device_group: cudaStreamGetDevice");
  return d;
}

struct device_group_state {
  device_group_state(int m, cudaStream_t s, thread_group_options o, cuda_device_calls c)
      : host(m, o), stream(s), calls(c), device(stream_device(s, c)) {
    require(m <= device_group_max_ranks, "device_group: at most 128 ranks");
  }
  thread_group host;  // rendezvous, argument agreement, scalars, abort and timeout
  cudaStream_t stream;
  cuda_device_calls calls;
  int device;  // the stream's: every worker thread makes it current
};

}  // namespace detail

class device_communicator;

class device_group {
 public:
  /// M workers whose collectives run on `stream` (not owned), on the stream's device (for the
  /// default stream, the device current when the group is made). `calls` replaces the CUDA
  /// device calls, for tests only.
  explicit device_group(int size, cudaStream_t stream = nullptr, thread_group_options options = {},
                        detail::cuda_device_calls calls = {})
      : state_(std::make_shared<detail::device_group_state>(size, stream, options, calls)) {}

  int size() const noexcept { return state_->host.size(); }
  cudaStream_t stream() const noexcept { return state_->stream; }
  /// The device of the group's stream; run() makes it current on every worker thread.
  int device() const noexcept { return state_->device; }

  /// The communicator of worker `rank`, to be used from that worker's thread only (a thread of
  /// your own must first make device() current: cudaSetDevice).
  device_communicator member(int rank) const;

  void abort(const std::string& why) const { state_->host.abort(why); }

  /// Runs f(member(r)) on M threads, each with the group's device current (cudaSetDevice: a new
  /// thread starts on device 0, so without it a group on device k > 0 would launch its kernels
  /// on the wrong GPU); a worker that throws aborts the group and its exception is rethrown
  /// here (dppf::thread_group::run does the work).
  template <class F>
  void run(F&& f) const;

 private:
  std::shared_ptr<detail::device_group_state> state_;
};

/// One virtual worker's communicator; models `communicator` for device buffers. Arguments are
/// agreed on at the thread_group rendezvous every collective needs anyway (see thread_group).
class device_communicator {
 public:
  using memory_space = device_space;

  int rank() const noexcept { return host_.rank(); }
  int size() const noexcept { return host_.size(); }

  template <device_buffer In, device_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  template <device_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    T* p = std::ranges::data(inout);
    reduce<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  double all_reduce(double v, reduce_op op) { return host_.all_reduce(v, op); }
  std::vector<double> all_gather(double v) { return host_.all_gather(v); }

  template <device_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    const std::string problem = detail::root_problem("device_group::broadcast", root, size());
    const std::size_t n = std::ranges::size(b);
    access::post(host_, {.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root},
                 {.out = std::ranges::data(b)}, "device_group::broadcast", problem);
    if (rank() == root && n != 0) {
      on_root("device_group::broadcast: cudaMemcpyAsync", [&] {
        for (int r = 0; r < size(); ++r)
          if (r != root)
            cuda_check(cudaMemcpyAsync(access::slot(host_, r).out, std::ranges::data(b), n * sizeof(T), cudaMemcpyDeviceToDevice,
                                       state_->stream),
                       "device_group::broadcast: cudaMemcpyAsync");
        cuda_check(cudaStreamSynchronize(state_->stream), "device_group::broadcast: cudaStreamSynchronize");
      });
    }
    access::meet(host_);  // the root's copies are complete before anyone goes on
  }

  void barrier() { host_.barrier(); }

 private:
  friend class device_group;
  using access = detail::thread_group_access;
  device_communicator(std::shared_ptr<detail::device_group_state> s, thread_communicator host)
      : state_(std::move(s)), host_(std::move(host)) {}

  // The root's stream work (queue, then wait for it) must finish before the closing barrier; a
  // failure aborts the group, so the other ranks raise at that barrier instead of waiting.
  template <class Work>
  void on_root(const char* what, Work&& work) {
    try {
      work();
    } catch (const std::exception& e) {
      state_->host.abort(e.what());
      throw;
    } catch (...) {
      state_->host.abort(what);
      throw;
    }
  }

  template <class T>
  void reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    const std::string problem = detail::buffer_all_reduce_problem("device_group::all_reduce", n_in, n_out, op);
    access::post(host_, {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op},
                 {.in = in, .out = out}, "device_group::all_reduce", problem);
    if (rank() == 0 && n_in != 0) {
      detail::device_group_table<T> t{};
      for (int r = 0; r < size(); ++r) {
        t.in[r] = static_cast<const T*>(access::slot(host_, r).in);
        t.out[r] = static_cast<T*>(access::slot(host_, r).out);
      }
      const double scale = op == reduce_op::avg ? 1.0 / size() : 1.0;
      const std::size_t blocks = detail::cuda_blocks(n_in, detail::cuda_max_blocks);
      on_root("device_group::all_reduce", [&] {
        detail::device_group_reduce_kernel<T><<<unsigned(blocks), detail::cuda_block, 0, state_->stream>>>(t, size(), n_in, scale);
        cuda_check_launch("device_group::all_reduce: kernel launch");
        cuda_check(cudaStreamSynchronize(state_->stream), "device_group::all_reduce: cudaStreamSynchronize");
      });
    }
    access::meet(host_);  // every output written before any rank goes on
  }

  std::shared_ptr<detail::device_group_state> state_;
  thread_communicator host_;
};

inline device_communicator device_group::member(int rank) const { return {state_, state_->host.member(rank)}; }

template <class F>
void device_group::run(F&& f) const {
  state_->host.run([&](thread_communicator m) {
    const int d = state_->device;
    cuda_check(state_->calls.set_device(d), ("device_group::run: cudaSetDevice(" + std::to_string(d) + ") on worker " +
                                             std::to_string(m.rank()) + "'s thread").c_str());
    f(device_communicator(state_, m));
  });
}

/// The 0.1 spelling.
using device_member [[deprecated("dppf 0.2 renamed it dppf::device_communicator; see CHANGELOG.md")]] = device_communicator;

}  // namespace dppf
