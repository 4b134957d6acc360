#pragma once
// A multilayer perceptron (ReLU hidden layers, softmax cross-entropy) whose parameters live in
// one flat buffer named by a dppf::parameter_layout, as a user's own model would hand them to the
// dppf trainer. Forward and backward passes are BLAS gemm calls (cblas_sgemm for float,
// cblas_dgemm for double, used by the gradient tests as a reference).
//
// Layer l has weights W_l (out x in, row-major like torch.nn.Linear) and bias b_l; for a batch X
// (B x in, row-major): Z_l = A_{l-1} W_l^T + b_l, A_l = relu(Z_l), and the last Z is the logits.

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <dppf/layout.hpp>

namespace fmnist {

namespace detail {
// C = alpha op(A) op(B) + beta C, all row-major.
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                 const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const double* a, std::size_t lda,
                 const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}
}  // namespace detail

/// Told by a backward pass that the gradients of layout segments [first, last) are final (e.g.
/// to start their all-reduce, dppf::gradient_buckets::ready), from the last layer to the first.
using gradient_ready = std::function<void(std::size_t first, std::size_t last)>;

/// Summed loss and number of correct predictions over some examples.
struct eval_sums {
  double loss = 0.0;
  double correct = 0.0;
  double count = 0.0;
};

template <class T>
class mlp {
 public:
  /// sizes = {inputs, hidden..., classes}, e.g. {784, 512, 512, 10}.
  explicit mlp(std::vector<std::size_t> sizes) : sizes_(std::move(sizes)) {
    if (sizes_.size() < 2) throw std::invalid_argument("mlp: needs at least an input and an output size");
    for (std::size_t s : sizes_)
      if (s == 0) throw std::invalid_argument("mlp: layer sizes must be positive");
    std::vector<std::pair<std::string, std::size_t>> segs;
    for (std::size_t l = 1; l < sizes_.size(); ++l) {
      segs.emplace_back("fc" + std::to_string(l) + ".weight", sizes_[l] * sizes_[l - 1]);
      segs.emplace_back("fc" + std::to_string(l) + ".bias", sizes_[l]);
    }
    layout_ = dppf::parameter_layout::from_sizes(segs);
  }

  const dppf::parameter_layout& layout() const noexcept { return layout_; }
  std::size_t size() const noexcept { return layout_.total(); }
  std::size_t inputs() const noexcept { return sizes_.front(); }
  std::size_t classes() const noexcept { return sizes_.back(); }
  std::size_t layers() const noexcept { return sizes_.size() - 1; }
  const std::vector<std::size_t>& sizes() const noexcept { return sizes_; }

  /// torch.nn.Linear's default initialization: W and b uniform in +-1/sqrt(fan_in).
  void init(std::span<T> params, std::uint64_t seed) const {
    layout_.require_covers(params.size(), "mlp::init: parameters");
    std::mt19937_64 rng(seed);
    for (std::size_t l = 1; l < sizes_.size(); ++l) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(sizes_[l - 1]));
      std::uniform_real_distribution<double> u(-bound, bound);
      for (std::size_t k : {2 * (l - 1), 2 * (l - 1) + 1}) {
        const dppf::segment& s = layout_[k];
        for (std::size_t i = 0; i < s.size; ++i) params[s.offset + i] = static_cast<T>(u(rng));
      }
    }
  }

  /// Mean cross-entropy over the batch (x: batch x inputs, y: labels) and its gradient into grads;
  /// with input_grad (batch x inputs), also the gradient with respect to x (for a model that feeds
  /// its own features into this one, like fmnist::cnn). `ready`, when set, is told each layer's
  /// (weight, bias) segments as soon as their gradient is written, before the layers below.
  double loss_and_grad(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t batch,
                       std::span<T> grads, T* input_grad = nullptr, const gradient_ready& ready = {}) {
    layout_.require_covers(params.size(), "mlp::loss_and_grad: parameters");
    layout_.require_covers(grads.size(), "mlp::loss_and_grad: gradients");
    forward(params, x, batch);
    const std::size_t c = classes();
    T* delta = acts_.back().data();  // the logits become dLoss/dlogits in place
    double loss = 0.0;
    const T inv_batch = T(1) / static_cast<T>(batch);
    for (std::size_t i = 0; i < batch; ++i) {
      T* z = delta + i * c;
      const double lse = log_sum_exp(z, c);
      loss += lse - static_cast<double>(z[y[i]]);
      for (std::size_t j = 0; j < c; ++j) z[j] = static_cast<T>(std::exp(static_cast<double>(z[j]) - lse)) * inv_batch;
      z[y[i]] -= inv_batch;
    }
    for (std::size_t l = layers(); l >= 1; --l) {
      const std::size_t out = sizes_[l], in = sizes_[l - 1];
      const T* a_prev = l == 1 ? x : acts_[l - 2].data();
      const T* d = l == layers() ? delta : deltas_[l - 1].data();
      T* dw = grads.data() + layout_[2 * (l - 1)].offset;
      T* db = grads.data() + layout_[2 * (l - 1) + 1].offset;
      detail::gemm(true, false, out, in, batch, d, out, a_prev, in, T(0), dw, in);  // dW = D^T A_prev
      std::fill(db, db + out, T(0));
      for (std::size_t i = 0; i < batch; ++i)
        for (std::size_t j = 0; j < out; ++j) db[j] += d[i * out + j];
      if (ready) ready(2 * (l - 1), 2 * (l - 1) + 2);  // the layers below run while it is averaged
      // D_prev = (D W) * relu'(Z_prev); A_prev > 0 exactly where Z_prev > 0. The input has no ReLU.
      const T* w = params.data() + layout_[2 * (l - 1)].offset;
      if (l == 1) {
        if (input_grad) detail::gemm(false, false, batch, in, out, d, out, w, in, T(0), input_grad, in);
        break;
      }
      T* d_prev = deltas_[l - 2].data();
      detail::gemm(false, false, batch, in, out, d, out, w, in, T(0), d_prev, in);
      for (std::size_t i = 0; i < batch * in; ++i)
        if (!(a_prev[i] > T(0))) d_prev[i] = T(0);
    }
    return loss / static_cast<double>(batch);
  }

  /// Summed loss and correct predictions over n examples, in chunks.
  eval_sums evaluate(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t n,
                     std::size_t chunk = 500) {
    layout_.require_covers(params.size(), "mlp::evaluate: parameters");
    eval_sums s;
    const std::size_t c = classes();
    for (std::size_t start = 0; start < n; start += chunk) {
      const std::size_t b = std::min(chunk, n - start);
      forward(params, x + start * inputs(), b);
      const T* z0 = acts_.back().data();
      for (std::size_t i = 0; i < b; ++i) {
        const T* z = z0 + i * c;
        s.loss += log_sum_exp(z, c) - static_cast<double>(z[y[start + i]]);
        s.correct += static_cast<std::size_t>(std::max_element(z, z + c) - z) == y[start + i] ? 1.0 : 0.0;
      }
      s.count += static_cast<double>(b);
    }
    return s;
  }

  /// Mean loss over n examples (the oracle of the sharpness estimators).
  double loss(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t n) {
    const eval_sums s = evaluate(params, x, y, n);
    return s.loss / s.count;
  }

 private:
  static double log_sum_exp(const T* z, std::size_t c) {
    const double m = static_cast<double>(*std::max_element(z, z + c));
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) sum += std::exp(static_cast<double>(z[j]) - m);
    return m + std::log(sum);
  }

  void forward(std::span<const T> params, const T* x, std::size_t batch) {
    acts_.resize(layers());
    deltas_.resize(layers());
    for (std::size_t l = 1; l <= layers(); ++l) {
      const std::size_t out = sizes_[l], in = sizes_[l - 1];
      auto& a = acts_[l - 1];
      if (a.size() < batch * out) a.resize(batch * out);
      if (deltas_[l - 1].size() < batch * out) deltas_[l - 1].resize(batch * out);
      const T* w = params.data() + layout_[2 * (l - 1)].offset;
      const T* bias = params.data() + layout_[2 * (l - 1) + 1].offset;
      for (std::size_t i = 0; i < batch; ++i) std::copy(bias, bias + out, a.data() + i * out);
      const T* a_prev = l == 1 ? x : acts_[l - 2].data();
      detail::gemm(false, true, batch, out, in, a_prev, in, w, in, T(1), a.data(), out);  // Z = A W^T + b
      if (l < layers())
        for (std::size_t i = 0; i < batch * out; ++i) a[i] = std::max(a[i], T(0));
    }
  }

  std::vector<std::size_t> sizes_;
  dppf::parameter_layout layout_;
  std::vector<std::vector<T>> acts_;    // A_l (hidden) and the logits, batch x sizes_[l]
  std::vector<std::vector<T>> deltas_;  // dLoss/dZ_l for hidden layers
};

}  // namespace fmnist
