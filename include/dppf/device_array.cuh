#pragma once
// dppf::device_array<T>: an owning, zero-filled allocation of n elements in device memory,
// allocated and freed in stream order (cudaMallocAsync / cudaFreeAsync) on the stream it was made
// for. It models parameter_buffer in device_space, so executors and communicators accept it and
// view() turns it into a device_span. Move-only.
//
// Stream order (CUDA's rule for stream-ordered allocations): the buffer may be used on its own
// stream right away, on any other stream only after its stream was synchronized (to_device does
// that); and it is freed on its own stream, so work on another stream that still reads it must be
// waited for before it goes out of scope.

#include <cuda_runtime.h>

#include <cstddef>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "cuda_check.cuh"
#include "memory_space.hpp"

namespace dppf {

/// Elements of any trivially copyable type; as a parameter buffer (the executors, communicators
/// and optimizers), float or double only.
template <class T>
  requires std::is_trivially_copyable_v<T>
class device_array {
 public:
  using value_type = T;
  using element_type = T;
  using memory_space = device_space;
  using iterator = T*;
  using const_iterator = const T*;

  device_array() = default;
  /// n zero elements on `stream` (ready for work queued later on that stream).
  explicit device_array(std::size_t n, cudaStream_t stream = nullptr) : n_(n), stream_(stream) {
    if (n == 0) return;
    void* p = nullptr;
    cuda_check(cudaMallocAsync(&p, n * sizeof(T), stream), "device_array: cudaMallocAsync");
    ptr_ = static_cast<T*>(p);
    const cudaError_t e = cudaMemsetAsync(ptr_, 0, n * sizeof(T), stream);
    if (e != cudaSuccess) {
      detail::cuda_discard(cudaFreeAsync(ptr_, stream));
      ptr_ = nullptr;
      cuda_check(e, "device_array: cudaMemsetAsync");  // reports e, and clears it as the last error
    }
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  device_array(device_array&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), n_(std::exchange(o.n_, 0)), stream_(o.stream_) {}
  device_array& operator=(device_array&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      n_ = std::exchange(o.n_, 0);
      stream_ = o.stream_;
    }
    return *this;
  }
  ~device_array() { release(); }

  T* data() noexcept { return ptr_; }
  const T* data() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  T* begin() noexcept { return ptr_; }
  T* end() noexcept { return ptr_ + n_; }
  const T* begin() const noexcept { return ptr_; }
  const T* end() const noexcept { return ptr_ + n_; }
  cudaStream_t stream() const noexcept { return stream_; }

 private:
  void release() noexcept {
    if (ptr_) detail::cuda_discard(cudaFreeAsync(ptr_, stream_));  // errors here have no one to go to
    ptr_ = nullptr;
    n_ = 0;
  }

  T* ptr_ = nullptr;
  std::size_t n_ = 0;
  cudaStream_t stream_ = nullptr;
};

/// Copies a host buffer into a new device_array on `stream` (waits for the copy: the source may go).
template <host_buffer B>
auto to_device(const B& host, cudaStream_t stream = nullptr) {
  using T = std::remove_cv_t<buffer_element_t<const B&>>;
  const std::size_t n = std::ranges::size(host);
  device_array<T> d(n, stream);
  if (n != 0) {
    cuda_check(cudaMemcpyAsync(d.data(), std::ranges::data(host), n * sizeof(T), cudaMemcpyHostToDevice, stream),
                       "to_device: cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(stream), "to_device: cudaStreamSynchronize");
  }
  return d;
}

/// A device buffer's elements in a std::vector, copied after the work queued on `stream`.
template <device_buffer B>
auto to_host(const B& src, cudaStream_t stream = nullptr) {
  using T = std::remove_cv_t<buffer_element_t<const B&>>;
  const std::size_t n = std::ranges::size(src);
  std::vector<T> out(n);
  if (n != 0) {
    cuda_check(cudaMemcpyAsync(out.data(), std::ranges::data(src), n * sizeof(T), cudaMemcpyDeviceToHost, stream),
                       "to_host: cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(stream), "to_host: cudaStreamSynchronize");
  }
  return out;
}

}  // namespace dppf
