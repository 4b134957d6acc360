#pragma once
// dppf::cuda_executor: an executor of hand-written kernels on one CUDA stream. Every operation is one
// kernel launch (a fused transform, or a reduction and its fixed-order second pass) running the
// same DPPF_HOST_DEVICE functors as dppf::host_executor; see detail/cuda_kernels.cuh for the loops.
// Work is queued asynchronously on the stream; reductions return a host double and therefore
// wait for their own result. synchronize() waits for everything queued.

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "../buffer.hpp"
#include "../cuda_check.cuh"
#include "detail/cuda_kernels.cuh"
#include "detail/host_loops.hpp"
#include "../device_array.cuh"
#include "../memory_space.hpp"

namespace dppf {

class cuda_executor {
 public:
  using memory_space = device_space;
  template <parameter_value T>
  using buffer = device_array<T>;

  /// Work goes to `stream` (the legacy default stream when none is given). The stream is not
  /// owned: it must outlive the executor and its buffers.
  explicit cuda_executor(cudaStream_t stream = nullptr) noexcept : stream_(stream) {}

  cudaStream_t stream() const noexcept { return stream_; }

  /// A zero-filled device buffer of n elements, allocated in stream order.
  template <parameter_value T>
  device_array<T> allocate(std::size_t n) const {
    return device_array<T>(n, stream_);
  }

  /// Calls f(i, b0[i], ..., bk[i]) for every index i, in one launch. Pass read-only buffers as
  /// const (std::as_const, device_span<const T>): the vectorized path stores every non-const
  /// buffer back, which costs its bytes again and is wrong if it aliases another buffer.
  template <class F, device_buffer... B>
  void transform_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<true>("cuda_executor::transform", b...);
    if (n == 0) return;
    constexpr int V = detail::cuda_vector_lanes<buffer_element_t<B>...>;
    const bool vectorized = detail::cuda_aligned(V, std::ranges::data(b)...);
    const std::size_t blocks = detail::cuda_blocks(vectorized ? n / V + 1 : n, detail::cuda_max_blocks);
    constexpr auto mask = detail::cuda_const_mask<buffer_element_t<B>...>();
    detail::cuda_transform_kernel<V, mask><<<unsigned(blocks), detail::cuda_block, 0, stream_>>>(
        f, n, vectorized, detail::cuda_pointers(std::ranges::data(b)...));
    cuda_check_launch("cuda_executor::transform: kernel launch");
  }

  /// Calls f(b0[i], ..., bk[i]) for every index i, in one launch.
  template <class F, device_buffer... B>
  void transform(F f, B&&... b) const {
    transform_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// The sum over i of f(i, b0[i], ...) in double: one reduction launch, one launch adding the
  /// per-block partials in a fixed order, one copy of the result; waits for it.
  template <class F, device_buffer... B>
  double transform_reduce_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<false>("cuda_executor::transform_reduce", b...);
    if (n == 0) return 0.0;
    constexpr int V = detail::cuda_vector_lanes<buffer_element_t<B>...>;
    const bool vectorized = detail::cuda_aligned(V, std::ranges::data(b)...);
    const std::size_t blocks = detail::cuda_blocks(n, detail::cuda_reduce_blocks);  // depends on n only
    device_array<double> partial(blocks + 1, stream_);
    constexpr auto mask = detail::cuda_const_mask<buffer_element_t<B>...>();
    detail::cuda_reduce_kernel<V, mask><<<unsigned(blocks), detail::cuda_block, 0, stream_>>>(
        f, n, vectorized, detail::cuda_pointers(std::ranges::data(b)...), partial.data());
    cuda_check_launch("cuda_executor::transform_reduce: kernel launch");
    detail::cuda_reduce_partials<<<1, detail::cuda_block, 0, stream_>>>(partial.data(), blocks,
                                                                          partial.data() + blocks);
    cuda_check_launch("cuda_executor::transform_reduce: second pass launch");
    double result = 0.0;
    cuda_check(cudaMemcpyAsync(&result, partial.data() + blocks, sizeof(double), cudaMemcpyDeviceToHost, stream_),
                       "cuda_executor::transform_reduce: cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(stream_), "cuda_executor::transform_reduce: cudaStreamSynchronize");
    return result;
  }

  template <class F, device_buffer... B>
  double transform_reduce(F f, B&&... b) const {
    return transform_reduce_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// Multi-tensor apply: for every tensor t, calls f(i, l0[t][i], ..., lk[t][i]) for every i,
  /// where each list holds one buffer per tensor (tensors may differ in size; the lists' t-th
  /// buffers must agree). One launch per group of up to detail::cuda_table_capacity tensors,
  /// so a model's tensors are updated in one or a few launches without packing them.
  template <class F, class... T>
  void transform_lists(F f, std::span<const device_span<T>>... lists) const {
    const std::size_t count = detail::common_size("cuda_executor::transform_lists (tensor counts)", lists...);
    // Every tensor is checked before the first launch: a bad one changes nothing.
    for (std::size_t t = 0; t < count; ++t)
      (void)detail::common_size<true>(("cuda_executor::transform_lists (tensor " + std::to_string(t) + ")").c_str(), lists[t]...);
    constexpr std::size_t cap = detail::cuda_table_capacity<T...>;
    constexpr auto mask = detail::cuda_const_mask<T...>();
    using table_type = detail::cuda_tensor_table<cap, std::remove_const_t<T>...>;
    static_assert(sizeof(F) + sizeof(table_type) <= 4096, "multi-tensor apply: kernel parameters beyond 4 KiB");
    for (std::size_t first = 0; first < count; first += cap) {
      table_type table{};
      std::size_t total = 0;
      int used = 0;
      for (std::size_t t = first; t < count && t < first + cap; ++t, ++used) {
        table.p[used] = detail::cuda_pointers(lists[t].data()...);
        table.start[used] = total;
        total += [](const auto& head, const auto&...) { return head.size(); }(lists[t]...);  // checked above
      }
      table.start[used] = total;
      table.count = used;
      if (total == 0) continue;
      const std::size_t blocks = detail::cuda_blocks(total, detail::cuda_max_blocks);
      detail::cuda_multi_tensor_kernel<mask><<<unsigned(blocks), detail::cuda_block, 0, stream_>>>(f, table);
      cuda_check_launch("cuda_executor::transform_lists: kernel launch");
    }
  }

  /// Multi-tensor apply without the index: f(l0[t][i], ..., lk[t][i]).
  template <class F, class... T>
  void transform_lists_each(F f, std::span<const device_span<T>>... lists) const {
    transform_lists(detail::drop_index<F>{f}, lists...);
  }

  void synchronize() const { cuda_check(cudaStreamSynchronize(stream_), "cuda_executor::synchronize"); }

 private:
  cudaStream_t stream_;
};

}  // namespace dppf
