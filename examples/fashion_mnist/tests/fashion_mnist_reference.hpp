#pragma once
// Independent references for the Fashion-MNIST models: their losses written as plain double
// loops (no BLAS, no im2col), parameters in the models' layout order.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fmnist_reference {

// The MLP's logits (rows x classes) with plain double loops, no BLAS: the independent reference.
inline std::vector<double> mlp_logits(const std::vector<std::size_t>& sizes, const std::vector<double>& p,
                                      const std::vector<double>& x, std::size_t rows) {
  std::vector<double> logits;
  for (std::size_t i = 0; i < rows; ++i) {
    std::vector<double> a(x.begin() + static_cast<std::ptrdiff_t>(i * sizes[0]),
                          x.begin() + static_cast<std::ptrdiff_t>((i + 1) * sizes[0]));
    std::size_t off = 0;
    for (std::size_t l = 1; l < sizes.size(); ++l) {
      const std::size_t in = sizes[l - 1], out = sizes[l];
      std::vector<double> z(out);
      for (std::size_t o = 0; o < out; ++o) {
        double s = p[off + in * out + o];  // bias after the weights
        for (std::size_t k = 0; k < in; ++k) s += p[off + o * in + k] * a[k];
        z[o] = l + 1 < sizes.size() ? std::max(s, 0.0) : s;
      }
      off += in * out + out;
      a = z;
    }
    logits.insert(logits.end(), a.begin(), a.end());
  }
  return logits;
}

// The MLP's mean cross-entropy over the batch, from mlp_logits.
inline double mlp_loss(const std::vector<std::size_t>& sizes, const std::vector<double>& p, const std::vector<double>& x,
                       const std::vector<std::uint8_t>& y, std::size_t batch) {
  const std::vector<double> logits = mlp_logits(sizes, p, x, batch);
  const std::size_t c = sizes.back();
  double total = 0.0;
  for (std::size_t i = 0; i < batch; ++i) {
    const double* z = logits.data() + i * c;
    const double m = *std::max_element(z, z + c);
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) sum += std::exp(z[j] - m);
    total += m + std::log(sum) - z[y[i]];
  }
  return total / static_cast<double>(batch);
}

// The CNN of examples/fashion_mnist/cnn.hpp on 28 x 28 images: per stage a direct 5 x 5
// convolution (padding 2, weights [out][in][ky][kx] then biases), ReLU and a 2 x 2 max pool; then
// the MLP head on the features flattened channel by channel.
inline double cnn_loss(const std::vector<std::size_t>& channels, const std::vector<std::size_t>& head,
                       const std::vector<double>& p, const std::vector<double>& x, const std::vector<std::uint8_t>& y,
                       std::size_t batch) {
  std::vector<double> features;
  std::size_t off = 0, side = 28, cin = 1;  // after the loop: where the head starts, its input shape
  for (std::size_t i = 0; i < batch; ++i) {
    std::vector<double> a(x.begin() + static_cast<std::ptrdiff_t>(i * 784), x.begin() + static_cast<std::ptrdiff_t>((i + 1) * 784));
    off = 0, side = 28, cin = 1;
    for (std::size_t cout : channels) {
      std::vector<double> conv(cout * side * side);
      for (std::size_t o = 0; o < cout; ++o)
        for (std::size_t r = 0; r < side; ++r)
          for (std::size_t c = 0; c < side; ++c) {
            double s = p[off + cout * cin * 25 + o];
            for (std::size_t ci = 0; ci < cin; ++ci)
              for (std::size_t ky = 0; ky < 5; ++ky)
                for (std::size_t kx = 0; kx < 5; ++kx) {
                  const long sr = static_cast<long>(r + ky) - 2, sc = static_cast<long>(c + kx) - 2;
                  if (sr < 0 || sc < 0 || sr >= static_cast<long>(side) || sc >= static_cast<long>(side)) continue;
                  s += p[off + ((o * cin + ci) * 5 + ky) * 5 + kx] *
                       a[(ci * side + static_cast<std::size_t>(sr)) * side + static_cast<std::size_t>(sc)];
                }
            conv[(o * side + r) * side + c] = std::max(s, 0.0);
          }
      off += cout * cin * 25 + cout;
      const std::size_t half = side / 2;
      a.assign(cout * half * half, 0.0);
      for (std::size_t o = 0; o < cout; ++o)
        for (std::size_t r = 0; r < half; ++r)
          for (std::size_t c = 0; c < half; ++c) {
            const auto at = [&](std::size_t dr, std::size_t dc) { return conv[(o * side + 2 * r + dr) * side + 2 * c + dc]; };
            a[(o * half + r) * half + c] = std::max({at(0, 0), at(0, 1), at(1, 0), at(1, 1)});
          }
      side = half;
      cin = cout;
    }
    features.insert(features.end(), a.begin(), a.end());
  }
  std::vector<std::size_t> sizes{cin * side * side};
  sizes.insert(sizes.end(), head.begin(), head.end());
  sizes.push_back(10);
  const std::vector<double> head_params(p.begin() + static_cast<std::ptrdiff_t>(off), p.end());
  return mlp_loss(sizes, head_params, features, y, batch);
}

}  // namespace fmnist_reference
