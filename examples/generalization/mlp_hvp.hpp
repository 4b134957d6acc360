#pragma once
// The exact Hessian-vector product of the fashion_mnist example's MLP (fmnist::mlp<double>: ReLU
// hidden layers, mean softmax cross-entropy), by Pearlmutter's R-operator: one forward pass, one
// forward pass of the directional derivatives, one backward pass of the gradient and of its
// directional derivative. ReLU'' = 0 almost everywhere, so this is the Hessian of the piecewise
// smooth loss where it exists. Central differences of gradients (dppf's default oracle) are not:
// a step moves many pre-activations across ReLU kinks, and each crossing adds a gradient jump
// divided by the step, which does not vanish as the step shrinks (it showed up as negative top
// eigenvalues and Hutchinson probes of +-10^4 in the first runs of the sweep).
//
// Layer l: Z_l = A_{l-1} W_l^T + b_l, A_l = relu(Z_l); along v = (V_l, c_l):
//   RZ_l = RA_{l-1} W_l^T + A_{l-1} V_l^T + c_l,   RA_l = relu'(Z_l) RZ_l,   RA_0 = 0
//   D_L = (softmax(Z_L) - onehot) / B,             RD_L = p (RZ_L - <p, RZ_L>) / B  per row
//   H v for W_l: RD_l^T A_{l-1} + D_l^T RA_{l-1};  for b_l: column sums of RD_l
//   RD_{l-1} = (RD_l W_l + D_l V_l) relu'(Z_{l-1}),  D_{l-1} = D_l W_l relu'(Z_{l-1})

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fashion_mnist/mlp.hpp"

namespace generalization {

class mlp_hvp {
 public:
  explicit mlp_hvp(const fmnist::mlp<double>& net) : sizes_(net.sizes()), layout_(net.layout()) {}

  /// out = H(x) v for the mean cross-entropy of the n examples x_data (n x inputs), y.
  void operator()(std::span<const double> x, std::span<const double> v, std::span<double> out, const double* x_data,
                  const std::uint8_t* y, std::size_t n) {
    layout_.require_covers(x.size(), "mlp_hvp: x");
    layout_.require_covers(v.size(), "mlp_hvp: v");
    layout_.require_covers(out.size(), "mlp_hvp: out");
    const std::size_t layers = sizes_.size() - 1;
    a_.resize(layers + 1);
    ra_.resize(layers + 1);
    const auto w = [&](std::span<const double> p, std::size_t l) { return p.data() + layout_[2 * (l - 1)].offset; };
    const auto b = [&](std::span<const double> p, std::size_t l) { return p.data() + layout_[2 * (l - 1) + 1].offset; };
    // Forward and R-forward; a_[l] holds Z_l before the ReLU is applied into it (relu'(Z) = A > 0).
    ra_[0].assign(n * sizes_[0], 0.0);
    for (std::size_t l = 1; l <= layers; ++l) {
      const std::size_t in = sizes_[l - 1], o = sizes_[l];
      const double* prev = l == 1 ? x_data : a_[l - 1].data();
      a_[l].resize(n * o);
      ra_[l].resize(n * o);
      for (std::size_t i = 0; i < n; ++i) {
        std::copy(b(x, l), b(x, l) + o, a_[l].data() + i * o);
        std::copy(b(v, l), b(v, l) + o, ra_[l].data() + i * o);
      }
      fmnist::detail::gemm(false, true, n, o, in, prev, in, w(x, l), in, 1.0, a_[l].data(), o);
      fmnist::detail::gemm(false, true, n, o, in, prev, in, w(v, l), in, 1.0, ra_[l].data(), o);
      if (l > 1) fmnist::detail::gemm(false, true, n, o, in, ra_[l - 1].data(), in, w(x, l), in, 1.0, ra_[l].data(), o);
      if (l < layers)
        for (std::size_t k = 0; k < n * o; ++k)
          if (!(a_[l][k] > 0.0)) a_[l][k] = 0.0, ra_[l][k] = 0.0;
    }
    // Output: D and RD from the logits.
    const std::size_t c = sizes_.back();
    d_.resize(n * c);
    rd_.resize(n * c);
    for (std::size_t i = 0; i < n; ++i) {
      const double* z = a_[layers].data() + i * c;
      const double* rz = ra_[layers].data() + i * c;
      const double m = *std::max_element(z, z + c);
      double sum = 0.0;
      for (std::size_t j = 0; j < c; ++j) sum += std::exp(z[j] - m);
      double prz = 0.0;
      for (std::size_t j = 0; j < c; ++j) prz += std::exp(z[j] - m) / sum * rz[j];
      for (std::size_t j = 0; j < c; ++j) {
        const double p = std::exp(z[j] - m) / sum;
        d_[i * c + j] = (p - (j == y[i] ? 1.0 : 0.0)) / static_cast<double>(n);
        rd_[i * c + j] = p * (rz[j] - prz) / static_cast<double>(n);
      }
    }
    // Backward of D and RD.
    for (std::size_t l = layers; l >= 1; --l) {
      const std::size_t in = sizes_[l - 1], o = sizes_[l];
      const double* prev = l == 1 ? x_data : a_[l - 1].data();
      double* hw = out.data() + layout_[2 * (l - 1)].offset;
      double* hb = out.data() + layout_[2 * (l - 1) + 1].offset;
      fmnist::detail::gemm(true, false, o, in, n, rd_.data(), o, prev, in, 0.0, hw, in);
      if (l > 1) fmnist::detail::gemm(true, false, o, in, n, d_.data(), o, ra_[l - 1].data(), in, 1.0, hw, in);
      std::fill(hb, hb + o, 0.0);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < o; ++j) hb[j] += rd_[i * o + j];
      if (l == 1) break;
      d_prev_.resize(n * in);
      rd_prev_.resize(n * in);
      fmnist::detail::gemm(false, false, n, in, o, d_.data(), o, w(x, l), in, 0.0, d_prev_.data(), in);
      fmnist::detail::gemm(false, false, n, in, o, rd_.data(), o, w(x, l), in, 0.0, rd_prev_.data(), in);
      fmnist::detail::gemm(false, false, n, in, o, d_.data(), o, w(v, l), in, 1.0, rd_prev_.data(), in);
      for (std::size_t k = 0; k < n * in; ++k)
        if (!(a_[l - 1][k] > 0.0)) d_prev_[k] = 0.0, rd_prev_[k] = 0.0;
      d_.swap(d_prev_);
      rd_.swap(rd_prev_);
    }
  }

 private:
  std::vector<std::size_t> sizes_;
  dppf::parameter_layout layout_;
  std::vector<std::vector<double>> a_, ra_;
  std::vector<double> d_, rd_, d_prev_, rd_prev_;
};

}  // namespace generalization
