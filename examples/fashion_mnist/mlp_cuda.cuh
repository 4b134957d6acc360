#pragma once
// fmnist::mlp_cuda: the model of fmnist::mlp<float> (same parameter layout, same math) with every
// pass on a GPU, queued on one caller-given CUDA stream: cuBLAS sgemm for the matrix products,
// small kernels for the rest. The layout, the sizes and the initialization come from an
// fmnist::mlp<float> it holds (never run), so the two cannot drift apart.
//
// Row-major matrices as in mlp.hpp (W_l is out x in like torch.nn.Linear, a batch is B x in):
//   forward   Z_l = A_{l-1} W_l^T (cuBLAS), then Z_l += b_l and ReLU on hidden layers (one kernel)
//   loss      per row, log-sum-exp in double; the rows' losses added in a fixed order in double
//   backward  dW_l = D_l^T A_{l-1} (cuBLAS), db_l = column sums of D_l (a kernel, in mlp.hpp's
//             order), D_{l-1} = (D_l W_l) masked where A_{l-1} <= 0 (cuBLAS, then a kernel)
// Arguments are checked before anything touches the GPU (std::invalid_argument naming the sizes;
// the cuBLAS handle is made at the first accepted call); cuBLAS and CUDA failures become
// fmnist::cublas_error and dppf::cuda_error naming the call. Full fp32 (no TF32), and the
// results are the same bits run to run on one device (fixed-order sums, and cuBLAS's guarantee,
// which holds while one stream is active: one handle per object, bound to its one stream).
// Several objects on one stream, driven by several host threads (dppf::device_group workers), are
// safe: each has its own handle and buffers, and the stream runs their work in queue order.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <dppf/buffer.hpp>
#include <dppf/executors/cuda.cuh>
#include <dppf/config.hpp>
#include <dppf/cuda_check.cuh>
#include <dppf/device_array.cuh>
#include <dppf/layout.hpp>

#include "mlp.hpp"

namespace fmnist {

/// A cuBLAS call failed; status() is its cublasStatus_t.
class cublas_error : public std::runtime_error {
 public:
  cublas_error(cublasStatus_t status, const std::string& what) : std::runtime_error(what), status_(status) {}
  cublasStatus_t status() const noexcept { return status_; }

 private:
  cublasStatus_t status_;
};

namespace detail {

inline void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw cublas_error(s, std::string("fmnist::mlp_cuda: ") + what + ": " + cublasGetStatusName(s) + " (" +
                              cublasGetStatusString(s) + ")");
}

/// A cuBLAS handle bound to one stream. Move-only.
class cublas_handle {
 public:
  explicit cublas_handle(cudaStream_t stream) {
    cublas_check(cublasCreate(&h_), "cublasCreate");
    try {
      cublas_check(cublasSetStream(h_, stream), "cublasSetStream");
      // Plain fp32 (no TF32 tensor cores): the results track mlp<float> on the CPU.
      cublas_check(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    } catch (...) {
      (void)cublasDestroy(h_);
      throw;
    }
  }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  cublas_handle(cublas_handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  cublas_handle& operator=(cublas_handle&& o) noexcept {
    if (this != &o) {
      if (h_) (void)cublasDestroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  ~cublas_handle() {
    if (h_) (void)cublasDestroy(h_);  // errors here have no one to go to
  }
  cublasHandle_t get() const noexcept { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// C (m x n) = op(A) op(B) + beta C with row-major operands, the call of mlp.hpp's detail::gemm.
// cuBLAS is column-major, where a row-major matrix reads as its transpose: it computes
// C^T = op(B)^T op(A)^T, so the operands swap places and keep their transpose flags.
inline void gemm_row_major(cublasHandle_t h, bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k,
                           const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                           std::size_t ldc, const char* what) {
  const float one = 1.0f;
  cublas_check(cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &one,
                           b, int(ldb), a, int(lda), &beta, c, int(ldc)),
               what);
}

// Z += bias (broadcast over rows), then ReLU on hidden layers as std::max(z, 0) does it.
struct add_bias_relu {
  const float* bias;
  std::size_t cols;
  bool relu;
  DPPF_HOST_DEVICE void operator()(std::size_t i, float& z) const {
    const float v = z + bias[i % cols];
    z = relu && v < 0.0f ? 0.0f : v;
  }
};

// relu'(Z_prev): A_prev > 0 exactly where Z_prev > 0.
struct relu_mask {
  DPPF_HOST_DEVICE void operator()(float& d, const float& a) const {
    if (!(a > 0.0f)) d = 0.0f;
  }
};

// Per row i of the logits z (rows x c): stats[i] = loss, stats[rows + i] = 1 if the argmax (the
// first maximum, like std::max_element) is the label, stats[2 rows + i] = 1 if the label is out
// of range. With inv_batch > 0 the row becomes dLoss/dlogits = (softmax - onehot) / batch in place.
template <class T>
__global__ void __launch_bounds__(256)
    softmax_xent_rows(T* z, const std::uint8_t* y, std::size_t rows, std::size_t c, T inv_batch, double* stats) {
  const std::size_t stride = std::size_t(blockDim.x) * gridDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows; i += stride) {
    T* zr = z + i * c;
    const std::size_t label = y[i];
    std::size_t best = 0;
    for (std::size_t j = 1; j < c; ++j)
      if (zr[best] < zr[j]) best = j;
    const double m = static_cast<double>(zr[best]);
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) sum += exp(static_cast<double>(zr[j]) - m);
    const double lse = m + log(sum);
    const bool bad = label >= c;
    stats[i] = bad ? 0.0 : lse - static_cast<double>(zr[label]);
    stats[rows + i] = !bad && best == label ? 1.0 : 0.0;
    stats[2 * rows + i] = bad ? 1.0 : 0.0;
    if (inv_batch > T(0)) {
      for (std::size_t j = 0; j < c; ++j)
        zr[j] = bad ? T(0) : static_cast<T>(exp(static_cast<double>(zr[j]) - lse)) * inv_batch;
      if (!bad) zr[label] -= inv_batch;
    }
  }
}

// acc[k] += sum over rows of stats[k rows + i], k = 0, 1, 2, by one block in a fixed order (the
// same sums run to run, whatever the device).
template <int Block>
__global__ void __launch_bounds__(Block) sum_row_stats(const double* stats, std::size_t rows, double* acc) {
  using block_reduce = cub::BlockReduce<double, Block>;
  __shared__ typename block_reduce::TempStorage tmp;
  for (int k = 0; k < 3; ++k) {
    double s = 0.0;
    for (std::size_t i = threadIdx.x; i < rows; i += Block) s += stats[std::size_t(k) * rows + i];
    const double total = block_reduce(tmp).Sum(s);
    if (threadIdx.x == 0) acc[k] += total;
    __syncthreads();  // tmp is reused by the next k
  }
}

// out[j] = sum_i d[i cols + j], added in row order like mlp.hpp's loop.
template <class T>
__global__ void __launch_bounds__(256) column_sums(const T* d, std::size_t rows, std::size_t cols, T* out) {
  const std::size_t stride = std::size_t(blockDim.x) * gridDim.x;
  for (std::size_t j = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; j < cols; j += stride) {
    T s = T(0);
    for (std::size_t i = 0; i < rows; ++i) s += d[i * cols + j];
    out[j] = s;
  }
}

inline unsigned grid_for(std::size_t work) {
  const std::size_t b = (work + 255) / 256;
  return unsigned(b == 0 ? 1 : (b < 65536 ? b : 65536));
}

}  // namespace detail

class mlp_cuda {
 public:
  /// sizes = {inputs, hidden..., classes}, as fmnist::mlp. All work goes to `stream` (not owned:
  /// it must outlive this object), which the cuBLAS handle is bound to. Nothing touches the GPU
  /// before the first loss_and_grad or evaluate (which make the handle on the current device),
  /// so the argument checks run, and are tested, on machines without one.
  explicit mlp_cuda(std::vector<std::size_t> sizes, cudaStream_t stream = nullptr)
      : shape_(int_range(std::move(sizes))), stream_(stream), ex_(stream) {
    acts_.resize(layers());
    deltas_.resize(layers() - 1);
  }

  const dppf::parameter_layout& layout() const noexcept { return shape_.layout(); }
  std::size_t size() const noexcept { return shape_.size(); }
  std::size_t inputs() const noexcept { return shape_.inputs(); }
  std::size_t classes() const noexcept { return shape_.classes(); }
  std::size_t layers() const noexcept { return shape_.layers(); }
  const std::vector<std::size_t>& sizes() const noexcept { return shape_.sizes(); }
  cudaStream_t stream() const noexcept { return stream_; }

  /// mlp<float>::init's values (torch.nn.Linear's initialization), drawn on the host and copied
  /// into params; waits for the copy.
  void init(dppf::device_span<float> params, std::uint64_t seed) const {
    layout().require_covers(params.size(), "mlp_cuda::init: parameters");
    std::vector<float> host(params.size());
    shape_.init(host, seed);
    dppf::cuda_check(
        cudaMemcpyAsync(params.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream_),
        "mlp_cuda::init: cudaMemcpyAsync");
    dppf::cuda_check(cudaStreamSynchronize(stream_), "mlp_cuda::init: cudaStreamSynchronize");
  }

  /// Mean cross-entropy over the batch (x_dev: batch x inputs floats, y_dev: batch labels, both
  /// on the device) and its gradient into grads; with input_grad_dev (batch x inputs, on the
  /// device), also the gradient with respect to x, as mlp::loss_and_grad. Returns when the
  /// gradients are complete (it waits for the stream to copy the loss back). Labels not below
  /// classes() raise std::invalid_argument after the passes (the gradients are then unspecified).
  double loss_and_grad(dppf::device_span<const float> params, const float* x_dev, const std::uint8_t* y_dev,
                       std::size_t batch, dppf::device_span<float> grads, float* input_grad_dev = nullptr) {
    check_call("mlp_cuda::loss_and_grad", params, x_dev, y_dev, batch);
    layout().require_covers(grads.size(), "mlp_cuda::loss_and_grad: gradients");
    if (!grads.data()) throw std::invalid_argument("mlp_cuda::loss_and_grad: the gradients are a null device pointer");
    ready();

    forward(params, x_dev, batch);
    const std::size_t c = classes(), L = layers();
    float* delta = acts_[L - 1].data();  // the logits become dLoss/dlogits in place
    reserve(stats_, 3 * batch);
    dppf::cuda_check(cudaMemsetAsync(acc_.data(), 0, 3 * sizeof(double), stream_),
                             "mlp_cuda::loss_and_grad: cudaMemsetAsync");
    detail::softmax_xent_rows<float><<<detail::grid_for(batch), 256, 0, stream_>>>(
        delta, y_dev, batch, c, 1.0f / static_cast<float>(batch), stats_.data());
    dppf::cuda_check_launch("mlp_cuda::loss_and_grad: softmax kernel launch");
    detail::sum_row_stats<256><<<1, 256, 0, stream_>>>(stats_.data(), batch, acc_.data());
    dppf::cuda_check_launch("mlp_cuda::loss_and_grad: loss sum kernel launch");

    const dppf::parameter_layout& lay = layout();
    for (std::size_t l = L; l >= 1; --l) {
      const std::size_t out = sizes()[l], in = sizes()[l - 1];
      const float* a_prev = l == 1 ? x_dev : acts_[l - 2].data();
      const float* d = l == L ? delta : deltas_[l - 1].data();
      float* dw = grads.data() + lay[2 * (l - 1)].offset;
      float* db = grads.data() + lay[2 * (l - 1) + 1].offset;
      detail::gemm_row_major(blas_->get(), true, false, out, in, batch, d, out, a_prev, in, 0.0f, dw, in,
                             "cublasSgemm (dW = D^T A_prev)");
      detail::column_sums<float><<<detail::grid_for(out), 256, 0, stream_>>>(d, batch, out, db);
      dppf::cuda_check_launch("mlp_cuda::loss_and_grad: bias gradient kernel launch");
      const float* w = params.data() + lay[2 * (l - 1)].offset;
      if (l == 1) {  // the input has no ReLU
        if (input_grad_dev)
          detail::gemm_row_major(blas_->get(), false, false, batch, in, out, d, out, w, in, 0.0f, input_grad_dev, in,
                                 "cublasSgemm (dX = D W)");
        break;
      }
      float* d_prev = deltas_[l - 2].data();
      detail::gemm_row_major(blas_->get(), false, false, batch, in, out, d, out, w, in, 0.0f, d_prev, in,
                             "cublasSgemm (D_prev = D W)");
      ex_.transform(detail::relu_mask{}, dppf::device_span<float>(d_prev, batch * in),
                    dppf::device_span<const float>(a_prev, batch * in));
    }
    const sums s = read_sums("mlp_cuda::loss_and_grad");
    return s.loss / static_cast<double>(batch);
  }

  /// Summed loss and correct predictions over n examples on the device, `chunk` at a time.
  eval_sums evaluate(dppf::device_span<const float> params, const float* x_dev, const std::uint8_t* y_dev,
                     std::size_t n, std::size_t chunk = 500) {
    if (chunk == 0) throw std::invalid_argument("mlp_cuda::evaluate: chunk must be positive");
    if (n == 0) {
      layout().require_covers(params.size(), "mlp_cuda::evaluate: parameters");
      return {};
    }
    check_call("mlp_cuda::evaluate", params, x_dev, y_dev, std::min(chunk, n));
    ready();
    dppf::cuda_check(cudaMemsetAsync(acc_.data(), 0, 3 * sizeof(double), stream_),
                             "mlp_cuda::evaluate: cudaMemsetAsync");
    for (std::size_t start = 0; start < n; start += chunk) {
      const std::size_t b = std::min(chunk, n - start);
      forward(params, x_dev + start * inputs(), b);
      reserve(stats_, 3 * b);
      detail::softmax_xent_rows<float><<<detail::grid_for(b), 256, 0, stream_>>>(acts_[layers() - 1].data(),
                                                                                 y_dev + start, b, classes(), 0.0f,
                                                                                 stats_.data());
      dppf::cuda_check_launch("mlp_cuda::evaluate: softmax kernel launch");
      detail::sum_row_stats<256><<<1, 256, 0, stream_>>>(stats_.data(), b, acc_.data());
      dppf::cuda_check_launch("mlp_cuda::evaluate: loss sum kernel launch");
    }
    const sums s = read_sums("mlp_cuda::evaluate");
    return {s.loss, s.correct, static_cast<double>(n)};
  }

  /// Mean loss over n examples (the oracle of the sharpness estimators).
  double loss(dppf::device_span<const float> params, const float* x_dev, const std::uint8_t* y_dev, std::size_t n) {
    const eval_sums s = evaluate(params, x_dev, y_dev, n);
    return s.loss / s.count;
  }

 private:
  struct sums {
    double loss, correct, bad;
  };

  // cuBLAS takes int sizes: checked once here (layer sizes) and per call (rows).
  static std::vector<std::size_t> int_range(std::vector<std::size_t> sizes) {
    for (std::size_t s : sizes)
      if (s > static_cast<std::size_t>(INT_MAX))
        throw std::invalid_argument("mlp_cuda: layer size " + std::to_string(s) + " exceeds cuBLAS's int range");
    return sizes;
  }

  // Everything a call can get wrong about its arguments, before anything is queued.
  void check_call(const char* who, dppf::device_span<const float> params, const float* x, const std::uint8_t* y,
                  std::size_t rows) const {
    layout().require_covers(params.size(), (std::string(who) + ": parameters").c_str());
    if (rows == 0) throw std::invalid_argument(std::string(who) + ": the batch is empty");
    if (rows > static_cast<std::size_t>(INT_MAX))
      throw std::invalid_argument(std::string(who) + ": " + std::to_string(rows) +
                                  " rows per pass exceed cuBLAS's int range");
    if (!params.data() || !x || !y)
      throw std::invalid_argument(std::string(who) + ": null device pointer (parameters, x or y)");
  }

  // The cuBLAS handle and the sums' buffer, made on first use.
  void ready() {
    if (!blas_) blas_.emplace(stream_);
    if (acc_.empty()) acc_ = dppf::device_array<double>(3, stream_);
  }

  template <class T>
  void reserve(dppf::device_array<T>& a, std::size_t n) {
    if (a.size() < n) a = dppf::device_array<T>(n, stream_);
  }

  void forward(dppf::device_span<const float> params, const float* x, std::size_t batch) {
    const dppf::parameter_layout& lay = layout();
    for (std::size_t l = 1; l <= layers(); ++l) {
      const std::size_t out = sizes()[l], in = sizes()[l - 1];
      reserve(acts_[l - 1], batch * out);
      if (l < layers()) reserve(deltas_[l - 1], batch * out);
      float* z = acts_[l - 1].data();
      const float* w = params.data() + lay[2 * (l - 1)].offset;
      const float* bias = params.data() + lay[2 * (l - 1) + 1].offset;
      const float* a_prev = l == 1 ? x : acts_[l - 2].data();
      detail::gemm_row_major(blas_->get(), false, true, batch, out, in, a_prev, in, w, in, 0.0f, z, out,
                             "cublasSgemm (Z = A W^T)");
      ex_.transform_indexed(detail::add_bias_relu{bias, out, l < layers()}, dppf::device_span<float>(z, batch * out));
    }
  }

  // The accumulated sums, copied back after everything queued; a label out of range is an error.
  sums read_sums(const char* who) {
    double h[3] = {0.0, 0.0, 0.0};
    dppf::cuda_check(cudaMemcpyAsync(h, acc_.data(), sizeof h, cudaMemcpyDeviceToHost, stream_),
                             (std::string(who) + ": cudaMemcpyAsync").c_str());
    dppf::cuda_check(cudaStreamSynchronize(stream_), (std::string(who) + ": cudaStreamSynchronize").c_str());
    if (h[2] > 0.0)
      throw std::invalid_argument(std::string(who) + ": " + std::to_string(static_cast<long long>(h[2])) +
                                  " labels are not below the " + std::to_string(classes()) +
                                  " classes (or a gathered index was past the data set)");
    return {h[0], h[1], h[2]};
  }

  mlp<float> shape_;  // layout, sizes and init only; its own buffers stay empty
  cudaStream_t stream_;
  dppf::cuda_executor ex_;
  std::optional<detail::cublas_handle> blas_;
  std::vector<dppf::device_array<float>> acts_;    // Z_l / A_l (hidden) and the logits, batch x sizes[l]
  std::vector<dppf::device_array<float>> deltas_;  // dLoss/dZ_l of the hidden layers
  dppf::device_array<double> stats_;               // per-row loss, correct, bad label
  dppf::device_array<double> acc_;                 // their sums
};

}  // namespace fmnist
