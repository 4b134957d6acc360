#pragma once
// The kernels behind dppf::cuda. Detail only.
//
// * Every loop is grid-stride with 64-bit indices, so buffers beyond 2^31 elements work.
// * When every buffer of a launch is aligned to V elements (16 bytes for float-only or
//   double-only launches), each thread moves V elements per buffer with one vector load and
//   store; the remainder (and every misaligned launch) runs element by element.
// * Reductions accumulate in double: each thread over its elements, then a CUB block reduction
//   into one partial per block, then one block adds the partials. Which elements a thread adds,
//   and in what order, is cuda_thread_elements: a function of n, the element types and the grid
//   (itself a function of n), never of the buffers' alignment. So the result has the same bits
//   run to run on a given device and for the same data at any offset, vector loads or not.

#include <cuda/std/tuple>
#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../../buffer.hpp"
#include "../../config.hpp"

namespace dppf::detail {

inline constexpr int cuda_block = 256;
inline constexpr std::size_t cuda_max_blocks = 65536;    // transforms: grid-stride beyond this
inline constexpr std::size_t cuda_reduce_blocks = 1024;  // reductions: a fixed grid for n large

// V elements of T (T may be const) in registers, loaded and stored as one aligned vector.
template <class T, int V>
struct cuda_lanes {
  using U = std::remove_const_t<T>;
  struct alignas(sizeof(U) * V) vec {
    U v[V];
  };
  vec r;
  __device__ void load(T* p, std::size_t j) { r = reinterpret_cast<const vec*>(p)[j]; }
  __device__ void store(T* p, std::size_t j) const {
    if constexpr (!std::is_const_v<T>) reinterpret_cast<vec*>(p)[j] = r;
  }
  __device__ T& at(int k) { return r.v[k]; }
};

// Lanes per vector: 16 bytes of the widest element type.
template <class... T>
inline constexpr int cuda_vector_lanes = int(16 / std::max({sizeof(T)...}));

template <class... T>
bool cuda_aligned(int lanes, T*... p) {
  return ((reinterpret_cast<std::uintptr_t>(p) % (std::size_t(lanes) * sizeof(T)) == 0) && ...);
}

inline std::size_t cuda_blocks(std::size_t work, std::size_t cap) {
  const std::size_t b = (work + cuda_block - 1) / cuda_block;
  return b == 0 ? 1 : (b < cap ? b : cap);
}

// Kernel template arguments carry no cv-qualified types (nvcc's generated launch stubs fail
// on some of them): pointers travel as U* with U non-const, and bit k of Mask says that buffer
// k is read-only. cuda_cv restores the constness inside the kernel.
template <class... T>
constexpr unsigned long long cuda_const_mask() {
  unsigned long long mask = 0;
  int k = 0;
  ((mask |= (std::is_const_v<T> ? 1ull << k : 0ull), ++k), ...);
  return mask;
}
template <unsigned long long Mask, std::size_t K, class U>
using cuda_cv = std::conditional_t<((Mask >> K) & 1ull) != 0, const U, U>;

// The kernel-argument form of a list of buffers: non-const pointers.
template <class... T>
::cuda::std::tuple<std::remove_const_t<T>*...> cuda_pointers(T*... p) {
  return {const_cast<std::remove_const_t<T>*>(p)...};
}

// The elements thread `tid` of a grid of `threads` threads owns, in the order it visits them:
// chunk(j) for the chunks j = tid, tid + threads, ... of V consecutive elements [jV, jV + V)
// below n / V * V, then one(i) for the tail i = n / V * V + tid, + threads, ... below n. It
// depends on n, V and the grid only: a reduction adds the same elements in the same order
// whether a chunk is one vector load or V scalar ones. (Host and device: tests replay it.)
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <int V, class Chunk, class One>
DPPF_HOST_DEVICE void cuda_thread_elements(std::size_t n, std::size_t tid, std::size_t threads, Chunk&& chunk, One&& one) {
  const std::size_t chunks = n / V;
  for (std::size_t j = tid; j < chunks; j += threads) chunk(j);
  for (std::size_t i = chunks * V + tid; i < n; i += threads) one(i);
}

// Calls op(i, p0[i], ..., pk[i]) once for every i in [0, n) this thread owns, read-only
// buffers as const. Store: write the writable elements back (transforms); reductions only read.
template <int V, bool Store, unsigned long long Mask, class Op, class... U, std::size_t... K>
__device__ void cuda_visit(Op& op, std::size_t n, bool vectorized, ::cuda::std::tuple<U*...> p,
                           std::index_sequence<K...>) {
  const std::size_t threads = std::size_t(blockDim.x) * gridDim.x;
  const std::size_t tid = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const auto one = [&](std::size_t i) { op(i, static_cast<cuda_cv<Mask, K, U>&>(::cuda::std::get<K>(p)[i])...); };
  if (vectorized) {
    cuda_thread_elements<V>(n, tid, threads, [&](std::size_t j) {
      ::cuda::std::tuple<cuda_lanes<cuda_cv<Mask, K, U>, V>...> r;
      (::cuda::std::get<K>(r).load(::cuda::std::get<K>(p), j), ...);
#pragma unroll
      for (int k = 0; k < V; ++k) op(j * V + std::size_t(k), ::cuda::std::get<K>(r).at(k)...);
      if constexpr (Store) (::cuda::std::get<K>(r).store(::cuda::std::get<K>(p), j), ...);
    }, one);
  } else if constexpr (!Store) {
    // A reduction on misaligned buffers: the vector path's elements and order, loaded one by one.
    cuda_thread_elements<V>(n, tid, threads, [&](std::size_t j) {
#pragma unroll
      for (int k = 0; k < V; ++k) one(j * V + std::size_t(k));
    }, one);
  } else {
    // A misaligned transform: its result does not depend on the order, so consecutive threads
    // take consecutive elements (coalesced).
    for (std::size_t i = tid; i < n; i += threads) one(i);
  }
}

template <int V, unsigned long long Mask, class F, class... U>
__global__ void __launch_bounds__(cuda_block)
    cuda_transform_kernel(F f, std::size_t n, bool vectorized, ::cuda::std::tuple<U*...> p) {
  cuda_visit<V, true, Mask>(f, n, vectorized, p, std::index_sequence_for<U...>{});
}

template <class F>
struct cuda_accumulate {
  F f;
  double sum;
  template <class... X>
  __device__ void operator()(std::size_t i, X&... x) {
    sum += static_cast<double>(f(i, x...));
  }
};

template <int V, unsigned long long Mask, class F, class... U>
__global__ void __launch_bounds__(cuda_block)
    cuda_reduce_kernel(F f, std::size_t n, bool vectorized, ::cuda::std::tuple<U*...> p, double* partial) {
  cuda_accumulate<F> acc{f, 0.0};
  cuda_visit<V, false, Mask>(acc, n, vectorized, p, std::index_sequence_for<U...>{});
  using block_reduce = cub::BlockReduce<double, cuda_block>;
  __shared__ typename block_reduce::TempStorage tmp;
  const double s = block_reduce(tmp).Sum(acc.sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block adds the m partials, each thread a fixed subset, then a block reduction.
// (A template so that a header-only kernel has one definition across translation units.)
template <int Block = cuda_block>
__global__ void __launch_bounds__(Block) cuda_reduce_partials(const double* partial, std::size_t m, double* out) {
  double acc = 0.0;
  for (std::size_t i = threadIdx.x; i < m; i += Block) acc += partial[i];
  using block_reduce = cub::BlockReduce<double, Block>;
  __shared__ typename block_reduce::TempStorage tmp;
  const double s = block_reduce(tmp).Sum(acc);
  if (threadIdx.x == 0) *out = s;
}

// Multi-tensor apply: up to Cap tensors (each a tuple of k same-length buffers, non-const
// pointers with a const Mask as above) in one launch's parameters. Tensor t covers the global indices [start[t], start[t + 1]); f sees the index
// inside its tensor.
template <std::size_t Cap, class... T>
struct cuda_tensor_table {
  ::cuda::std::tuple<T*...> p[Cap];
  std::size_t start[Cap + 1];
  int count;
};

// Tensors per launch: what fits in about 3.5 KiB of kernel parameters (the portable 4 KiB limit).
template <class... T>
inline constexpr std::size_t cuda_table_capacity = (3584 - 16) / (sizeof(::cuda::std::tuple<T*...>) + sizeof(std::size_t));

template <unsigned long long Mask, std::size_t Cap, class F, class... U, std::size_t... K>
__device__ void cuda_table_body(F& f, const cuda_tensor_table<Cap, U...>& table, std::index_sequence<K...>) {
  const std::size_t total = table.start[table.count];
  const std::size_t stride = std::size_t(blockDim.x) * gridDim.x;
  int t = 0;
  for (std::size_t g = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    while (g >= table.start[t + 1]) ++t;  // g only grows: scan forward
    const std::size_t i = g - table.start[t];
    f(i, static_cast<cuda_cv<Mask, K, U>&>(::cuda::std::get<K>(table.p[t])[i])...);
  }
}

template <unsigned long long Mask, std::size_t Cap, class F, class... U>
__global__ void __launch_bounds__(cuda_block) cuda_multi_tensor_kernel(F f, cuda_tensor_table<Cap, U...> table) {
  cuda_table_body<Mask>(f, table, std::index_sequence_for<U...>{});
}

}  // namespace dppf::detail
