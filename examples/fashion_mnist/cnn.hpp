#pragma once
// A small convolutional network for 28 x 28 images, the example's option for a model that over-fits
// Fashion-MNIST sooner than the MLP: stages of (5 x 5 convolution, padding 2) -> ReLU -> 2 x 2 max
// pool, then an fmnist::mlp head on the flattened features (torch's NCHW flatten order). Like the
// MLP, every parameter lives in one flat buffer named by a dppf::parameter_layout
// (conv1.weight, conv1.bias, ..., then the head's fc1.weight, ...), and the heavy work is BLAS gemm:
// each convolution is one im2col + gemm over the whole batch.
//
// Inside the convolution stages activations are channel-major, C x (batch x H x W), so that a
// stage's output is the gemm's row-major result and the next stage's input without reordering.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <dppf/layout.hpp>

#include "mlp.hpp"

namespace fmnist {

template <class T>
class cnn {
 public:
  static constexpr std::size_t image_side = 28, kernel = 5, padding = 2;

  /// channels: output channels of each convolution stage (e.g. {8, 16}); hidden: the head's hidden
  /// layer sizes (e.g. {64}); classes: outputs.
  cnn(std::vector<std::size_t> channels, std::vector<std::size_t> hidden, std::size_t classes = 10)
      : head_(head_sizes(channels, hidden, classes)) {
    std::size_t cin = 1, side = image_side;
    std::vector<std::pair<std::string, std::size_t>> segs;
    for (std::size_t s = 0; s < channels.size(); ++s) {
      stages_.push_back({cin, channels[s], side});
      const std::string name = "conv" + std::to_string(s + 1);
      segs.emplace_back(name + ".weight", channels[s] * cin * kernel * kernel);
      segs.emplace_back(name + ".bias", channels[s]);
      cin = channels[s];
      side /= 2;
    }
    conv_size_ = 0;
    for (const auto& [name, n] : segs) conv_size_ += n;
    for (const dppf::segment& s : head_.layout().segments()) segs.emplace_back(s.name, s.size);
    layout_ = dppf::parameter_layout::from_sizes(segs);
  }

  const dppf::parameter_layout& layout() const noexcept { return layout_; }
  std::size_t size() const noexcept { return layout_.total(); }
  std::size_t inputs() const noexcept { return image_side * image_side; }
  std::size_t classes() const noexcept { return head_.classes(); }

  /// torch's default initialization of Conv2d and Linear: weights and biases uniform in
  /// +-1/sqrt(fan_in).
  void init(std::span<T> params, std::uint64_t seed) const {
    layout_.require_covers(params.size(), "cnn::init: parameters");
    std::mt19937_64 rng(seed);
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(stages_[s].cin * kernel * kernel));
      std::uniform_real_distribution<double> u(-bound, bound);
      for (std::size_t k : {2 * s, 2 * s + 1}) {
        const dppf::segment& seg = layout_[k];
        for (std::size_t i = 0; i < seg.size; ++i) params[seg.offset + i] = static_cast<T>(u(rng));
      }
    }
    head_.init(head_params(params), seed + 1);
  }

  /// Mean cross-entropy over the batch (x: batch x 784) and its gradient into grads; `ready`, when
  /// set, is told each layer's segments as soon as their gradient is written (fmnist::mlp's).
  double loss_and_grad(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t batch,
                       std::span<T> grads, const gradient_ready& ready = {}) {
    layout_.require_covers(params.size(), "cnn::loss_and_grad: parameters");
    layout_.require_covers(grads.size(), "cnn::loss_and_grad: gradients");
    forward(params, x, batch);
    dfeatures_.resize(features_.size());
    const std::size_t conv_segments = 2 * stages_.size();  // the head's segments follow the stages'
    const gradient_ready head_ready =
        ready ? gradient_ready([&](std::size_t a, std::size_t b) { ready(a + conv_segments, b + conv_segments); }) : gradient_ready{};
    const double loss = head_.loss_and_grad(head_params(params), features_.data(), y, batch, head_params(grads),
                                            dfeatures_.data(), head_ready);
    // d(pooled output of the last stage), channel-major, from the head's input gradient.
    std::vector<T>& dpooled = stage_data_.back().dpooled;
    unflatten(dfeatures_, dpooled, stages_.back(), batch);
    for (std::size_t s = stages_.size(); s-- > 0;) backward_stage(s, params, grads, batch, ready);
    return loss;
  }

  /// Summed loss and correct predictions over n examples, in chunks.
  eval_sums evaluate(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t n,
                     std::size_t chunk = 250) {
    layout_.require_covers(params.size(), "cnn::evaluate: parameters");
    eval_sums total;
    for (std::size_t start = 0; start < n; start += chunk) {
      const std::size_t b = std::min(chunk, n - start);
      forward(params, x + start * inputs(), b);
      const eval_sums s = head_.evaluate(head_params(params), features_.data(), y + start, b, b);
      total.loss += s.loss;
      total.correct += s.correct;
      total.count += s.count;
    }
    return total;
  }

 private:
  struct stage {
    std::size_t cin, cout, side;  // input channels, output channels, input height = width
    std::size_t rows() const { return cin * kernel * kernel; }
    std::size_t pooled_side() const { return side / 2; }
  };
  struct stage_buffers {
    std::vector<T> cols;     // im2col of the input: rows() x (batch x side^2)
    std::vector<T> act;      // ReLU(conv): cout x (batch x side^2)
    std::vector<T> pooled;   // cout x (batch x pooled_side^2), the next stage's input
    std::vector<std::uint32_t> argmax;  // per pooled element, its source index in act
    std::vector<T> dpooled, dact, dcols;
  };

  static std::vector<std::size_t> head_sizes(const std::vector<std::size_t>& channels,
                                             const std::vector<std::size_t>& hidden, std::size_t classes) {
    if (channels.empty()) throw std::invalid_argument("cnn: needs at least one convolution stage");
    std::size_t side = image_side;
    for (std::size_t c : channels) {
      if (c == 0) throw std::invalid_argument("cnn: channel counts must be positive");
      if (side % 2 != 0 || side < 2)
        throw std::invalid_argument("cnn: " + std::to_string(channels.size()) + " stages halve 28 x 28 images to an odd side");
      side /= 2;
    }
    std::vector<std::size_t> sizes{channels.back() * side * side};
    sizes.insert(sizes.end(), hidden.begin(), hidden.end());
    sizes.push_back(classes);
    return sizes;
  }

  template <class U>
  std::span<U> head_params(std::span<U> p) const {
    return p.subspan(conv_size_);
  }

  // cols[(c k k + ky k + kx)][b side^2 + y side + x] = in[c][b][y + ky - pad][x + kx - pad] (0 outside).
  static void im2col(const T* in, const stage& st, std::size_t batch, T* cols) {
    const std::size_t side = st.side, area = side * side, n = batch * area;
    for (std::size_t c = 0; c < st.cin; ++c)
      for (std::size_t ky = 0; ky < kernel; ++ky)
        for (std::size_t kx = 0; kx < kernel; ++kx) {
          T* row = cols + ((c * kernel + ky) * kernel + kx) * n;
          for (std::size_t b = 0; b < batch; ++b) {
            const T* src = in + (c * batch + b) * area;
            for (std::size_t y = 0; y < side; ++y) {
              const std::ptrdiff_t sy = static_cast<std::ptrdiff_t>(y + ky) - static_cast<std::ptrdiff_t>(padding);
              T* dst = row + b * area + y * side;
              for (std::size_t x = 0; x < side; ++x) {
                const std::ptrdiff_t sx = static_cast<std::ptrdiff_t>(x + kx) - static_cast<std::ptrdiff_t>(padding);
                const bool inside = sy >= 0 && sy < static_cast<std::ptrdiff_t>(side) && sx >= 0 &&
                                    sx < static_cast<std::ptrdiff_t>(side);
                dst[x] = inside ? src[static_cast<std::size_t>(sy) * side + static_cast<std::size_t>(sx)] : T(0);
              }
            }
          }
        }
  }

  // The adjoint of im2col: din[c][b][sy][sx] += dcols[...] (din zeroed first).
  static void col2im(const T* dcols, const stage& st, std::size_t batch, T* din) {
    const std::size_t side = st.side, area = side * side, n = batch * area;
    std::fill(din, din + st.cin * n, T(0));
    for (std::size_t c = 0; c < st.cin; ++c)
      for (std::size_t ky = 0; ky < kernel; ++ky)
        for (std::size_t kx = 0; kx < kernel; ++kx) {
          const T* row = dcols + ((c * kernel + ky) * kernel + kx) * n;
          for (std::size_t b = 0; b < batch; ++b) {
            T* dst = din + (c * batch + b) * area;
            for (std::size_t y = 0; y < side; ++y) {
              const std::ptrdiff_t sy = static_cast<std::ptrdiff_t>(y + ky) - static_cast<std::ptrdiff_t>(padding);
              if (sy < 0 || sy >= static_cast<std::ptrdiff_t>(side)) continue;
              const T* src = row + b * area + y * side;
              for (std::size_t x = 0; x < side; ++x) {
                const std::ptrdiff_t sx = static_cast<std::ptrdiff_t>(x + kx) - static_cast<std::ptrdiff_t>(padding);
                if (sx >= 0 && sx < static_cast<std::ptrdiff_t>(side))
                  dst[static_cast<std::size_t>(sy) * side + static_cast<std::size_t>(sx)] += src[x];
              }
            }
          }
        }
  }

  void forward(std::span<const T> params, const T* x, std::size_t batch) {
    stage_data_.resize(stages_.size());
    const T* in = x;  // one input channel: batch x 784 is already channel-major
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const stage& st = stages_[s];
      stage_buffers& d = stage_data_[s];
      const std::size_t area = st.side * st.side, n = batch * area, ps = st.pooled_side();
      d.cols.resize(st.rows() * n);
      d.act.resize(st.cout * n);
      d.pooled.resize(st.cout * batch * ps * ps);
      d.argmax.resize(d.pooled.size());
      im2col(in, st, batch, d.cols.data());
      const T* w = params.data() + layout_[2 * s].offset;
      const T* bias = params.data() + layout_[2 * s + 1].offset;
      for (std::size_t c = 0; c < st.cout; ++c) std::fill_n(d.act.data() + c * n, n, bias[c]);
      detail::gemm(false, false, st.cout, n, st.rows(), w, st.rows(), d.cols.data(), n, T(1), d.act.data(), n);
      for (T& v : d.act) v = std::max(v, T(0));
      // 2 x 2 max pool, stride 2; the first maximum of a window wins, as in torch.
      for (std::size_t cb = 0; cb < st.cout * batch; ++cb)
        for (std::size_t py = 0; py < ps; ++py)
          for (std::size_t px = 0; px < ps; ++px) {
            std::size_t best = cb * area + 2 * py * st.side + 2 * px;
            for (std::size_t k : {best + 1, best + st.side, best + st.side + 1})
              if (d.act[k] > d.act[best]) best = k;
            const std::size_t out = (cb * ps + py) * ps + px;
            d.pooled[out] = d.act[best];
            d.argmax[out] = static_cast<std::uint32_t>(best);
          }
      in = d.pooled.data();
    }
    // Flatten to batch x (C x H x W), torch's order.
    const stage& last = stages_.back();
    const std::size_t pa = last.pooled_side() * last.pooled_side(), f = last.cout * pa;
    features_.resize(batch * f);
    const T* pooled = stage_data_.back().pooled.data();
    for (std::size_t c = 0; c < last.cout; ++c)
      for (std::size_t b = 0; b < batch; ++b)
        std::copy_n(pooled + (c * batch + b) * pa, pa, features_.data() + b * f + c * pa);
  }

  static void unflatten(const std::vector<T>& dfeatures, std::vector<T>& dpooled, const stage& last, std::size_t batch) {
    const std::size_t pa = last.pooled_side() * last.pooled_side(), f = last.cout * pa;
    dpooled.resize(last.cout * batch * pa);
    for (std::size_t c = 0; c < last.cout; ++c)
      for (std::size_t b = 0; b < batch; ++b)
        std::copy_n(dfeatures.data() + b * f + c * pa, pa, dpooled.data() + (c * batch + b) * pa);
  }

  // From d(pooled) of stage s: the stage's weight and bias gradients and, unless it is the first
  // stage, d(pooled) of the stage before.
  void backward_stage(std::size_t s, std::span<const T> params, std::span<T> grads, std::size_t batch,
                      const gradient_ready& ready) {
    const stage& st = stages_[s];
    stage_buffers& d = stage_data_[s];
    const std::size_t n = batch * st.side * st.side;
    d.dact.assign(st.cout * n, T(0));
    for (std::size_t i = 0; i < d.dpooled.size(); ++i) d.dact[d.argmax[i]] = d.dpooled[i];
    for (std::size_t i = 0; i < d.dact.size(); ++i)
      if (!(d.act[i] > T(0))) d.dact[i] = T(0);  // ReLU: act > 0 exactly where the convolution was > 0
    T* dw = grads.data() + layout_[2 * s].offset;
    T* db = grads.data() + layout_[2 * s + 1].offset;
    detail::gemm(false, true, st.cout, st.rows(), n, d.dact.data(), n, d.cols.data(), n, T(0), dw, st.rows());
    for (std::size_t c = 0; c < st.cout; ++c) {
      double acc = 0.0;
      for (std::size_t i = 0; i < n; ++i) acc += static_cast<double>(d.dact[c * n + i]);
      db[c] = static_cast<T>(acc);
    }
    if (ready) ready(2 * s, 2 * s + 2);
    if (s == 0) return;
    const T* w = params.data() + layout_[2 * s].offset;
    d.dcols.resize(st.rows() * n);
    detail::gemm(true, false, st.rows(), n, st.cout, w, st.rows(), d.dact.data(), n, T(0), d.dcols.data(), n);
    std::vector<T>& din = stage_data_[s - 1].dpooled;
    din.resize(st.cin * n);
    col2im(d.dcols.data(), st, batch, din.data());
  }

  std::vector<stage> stages_;
  mlp<T> head_;
  dppf::parameter_layout layout_;
  std::size_t conv_size_ = 0;
  std::vector<stage_buffers> stage_data_;
  std::vector<T> features_, dfeatures_;  // batch x flattened features, and their gradient
};

}  // namespace fmnist
