#pragma once
// dppf::thrust<Policy>: an executor that runs the same functors as dppf::host_executor through any Thrust
// execution policy. With a host system (thrust::omp::par, thrust::cpp::par, thrust::host) it
// works on host memory and compiles with g++ given Thrust's include path; with the CUDA system
// (thrust::cuda::par_nosync.on(stream), compiled by nvcc) it works on device memory.
//
// Reductions: on a host system every fixed-size chunk is summed exactly as dppf::host_executor sums it
// and the chunk sums are added in order, so results are bitwise identical to dppf::host_executor for any
// thread count. On the CUDA system Thrust's reduction accumulates in double (deterministic for a
// given device and size, not bitwise equal to the host order).

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include "../buffer.hpp"
#include "../config.hpp"
#include "detail/host_loops.hpp"
#include "../memory_space.hpp"

#if defined(__CUDACC__)
#include <thrust/system/cuda/execution_policy.h>

#include "../device_array.cuh"
#include "../cuda_check.cuh"
#endif

namespace dppf {

namespace detail {

// The memory space of a Thrust policy: device for the CUDA system, host for every other one.
// Only nvcc can see the CUDA system, so g++ builds know host systems only.
inline host_space thrust_space_of(...);
#if defined(__CUDACC__)
template <class D>
device_space thrust_space_of(const ::thrust::cuda_cub::execution_policy<D>&);
#endif

template <class Policy>
using thrust_space_t = decltype(thrust_space_of(std::declval<const Policy&>()));

// f(i, p0[i], ..., pk[i]) for the index Thrust hands over: the element loop body.
template <class F, class... T>
struct thrust_apply {
  mutable F f;
  ::thrust::tuple<T*...> p;
  DPPF_HOST_DEVICE void operator()(std::size_t i) const { call(i, std::index_sequence_for<T...>{}); }
  template <std::size_t... K>
  DPPF_HOST_DEVICE void call(std::size_t i, std::index_sequence<K...>) const {
    f(i, ::thrust::get<K>(p)[i]...);
  }
};

// The double value of f(i, p0[i], ...): the reduction's transform on a device system.
template <class F, class... T>
struct thrust_value {
  mutable F f;
  ::thrust::tuple<T*...> p;
  DPPF_HOST_DEVICE double operator()(std::size_t i) const { return call(i, std::index_sequence_for<T...>{}); }
  template <std::size_t... K>
  DPPF_HOST_DEVICE double call(std::size_t i, std::index_sequence<K...>) const {
    return static_cast<double>(f(i, ::thrust::get<K>(p)[i]...));
  }
};

// Writes the sum of chunk c (dppf::host_executor's order) into sums[c]: the reduction on a host system.
template <class F, class... T>
struct thrust_chunk_sum {
  F f;
  std::size_t n;
  double* sums;
  ::thrust::tuple<T*...> p;
  void operator()(std::size_t c) const { call(c, std::index_sequence_for<T...>{}); }
  template <std::size_t... K>
  void call(std::size_t c, std::index_sequence<K...>) const {
    const std::size_t begin = c * reduce_chunk;
    const std::size_t end = begin + reduce_chunk < n ? begin + reduce_chunk : n;
    F local = f;
    sums[c] = chunk_sum(begin, end, local, ::thrust::get<K>(p)...);
  }
};

}  // namespace detail

/// Runs elementwise work and reductions through a Thrust execution policy.
template <class Policy>
class thrust_executor {
 public:
  using policy_type = Policy;
  using memory_space = detail::thrust_space_t<Policy>;
  static constexpr bool on_device = std::is_same_v<memory_space, device_space>;

  explicit thrust_executor(Policy policy = Policy{}) : policy_(policy) {}

  const Policy& policy() const noexcept { return policy_; }

  /// A zero-filled buffer of n elements in the policy's memory space: std::vector on a host
  /// system, dppf::device_array (allocated and cleared on the policy's stream) on CUDA.
  template <parameter_value T>
  auto allocate(std::size_t n) const {
    if constexpr (on_device) {
#if defined(__CUDACC__)
      return device_array<T>(n, stream());
#endif
    } else {
      return std::vector<T>(n);
    }
  }

  /// Calls f(i, b0[i], ..., bk[i]) for every index i; f updates elements through references.
  template <class F, parameter_buffer... B>
    requires(std::same_as<memory_space_t<B>, memory_space> && ...)
  void transform_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<true>("thrust_executor::transform", b...);
    if (n == 0) return;
    using apply = detail::thrust_apply<F, buffer_element_t<B>...>;
    ::thrust::for_each_n(policy_, ::thrust::counting_iterator<std::size_t>(0), n,
                         apply{f, ::thrust::make_tuple(std::ranges::data(b)...)});
  }

  /// Calls f(b0[i], ..., bk[i]) for every index i.
  template <class F, parameter_buffer... B>
    requires(std::same_as<memory_space_t<B>, memory_space> && ...)
  void transform(F f, B&&... b) const {
    transform_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// The sum over i of f(i, b0[i], ...), accumulated in double.
  template <class F, parameter_buffer... B>
    requires(std::same_as<memory_space_t<B>, memory_space> && ...)
  double transform_reduce_indexed(F f, B&&... b) const {
    const std::size_t n = detail::common_size<false>("thrust_executor::transform_reduce", b...);
    if (n == 0) return 0.0;
    if constexpr (on_device) {
      using value = detail::thrust_value<F, buffer_element_t<B>...>;
      return ::thrust::transform_reduce(policy_, ::thrust::counting_iterator<std::size_t>(0),
                                        ::thrust::counting_iterator<std::size_t>(n),
                                        value{f, ::thrust::make_tuple(std::ranges::data(b)...)}, 0.0,
                                        ::thrust::plus<double>());
    } else {
      const std::size_t chunks = detail::chunk_count(n);
      std::vector<double> sums(chunks);
      using chunk = detail::thrust_chunk_sum<F, buffer_element_t<B>...>;
      ::thrust::for_each_n(policy_, ::thrust::counting_iterator<std::size_t>(0), chunks,
                           chunk{f, n, sums.data(), ::thrust::make_tuple(std::ranges::data(b)...)});
      double total = 0.0;
      for (const double s : sums) total += s;  // in chunk order, as dppf::host_executor adds them
      return total;
    }
  }

  /// The sum over i of f(b0[i], ...), accumulated in double.
  template <class F, parameter_buffer... B>
    requires(std::same_as<memory_space_t<B>, memory_space> && ...)
  double transform_reduce(F f, B&&... b) const {
    return transform_reduce_indexed(detail::drop_index<F>{f}, static_cast<B&&>(b)...);
  }

  /// Waits for the work queued on the policy's stream (nothing to wait for on a host system).
  void synchronize() const {
    if constexpr (on_device) {
#if defined(__CUDACC__)
      cuda_check(cudaStreamSynchronize(stream()), "thrust_executor::synchronize");
#endif
    }
  }

#if defined(__CUDACC__)
  /// The CUDA stream of a device policy.
  cudaStream_t stream() const
    requires on_device
  {
    Policy p = policy_;
    return ::thrust::cuda_cub::stream(p);
  }
#endif

 private:
  Policy policy_;
};

template <class Policy>
thrust_executor(Policy) -> thrust_executor<Policy>;

}  // namespace dppf
