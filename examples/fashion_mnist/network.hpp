#pragma once
// fmnist::network: the example's model, an MLP or a CNN chosen at run time, behind one interface
// (layout, init, loss_and_grad, evaluate, loss) so the training driver and the sharpness
// estimators are written once.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "cnn.hpp"
#include "mlp.hpp"

namespace fmnist {

template <class T>
class network {
 public:
  /// kind "mlp": layers `sizes` = {inputs, hidden..., classes}; kind "cnn": convolution stages with
  /// `channels` on 28 x 28 images and a head with the hidden sizes of `sizes` (its first entry,
  /// the input size, must be 784).
  network(const std::string& kind, const std::vector<std::size_t>& sizes, const std::vector<std::size_t>& channels)
      : net_(make(kind, sizes, channels)) {}

  const dppf::parameter_layout& layout() const noexcept {
    return std::visit([](const auto& n) -> const dppf::parameter_layout& { return n.layout(); }, net_);
  }
  std::size_t size() const noexcept { return layout().total(); }

  void init(std::span<T> params, std::uint64_t seed) const {
    std::visit([&](const auto& n) { n.init(params, seed); }, net_);
  }
  /// `ready`: see fmnist::gradient_ready.
  double loss_and_grad(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t batch,
                       std::span<T> grads, const gradient_ready& ready = {}) {
    return std::visit(
        [&](auto& n) {
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(n)>, mlp<T>>)
            return n.loss_and_grad(params, x, y, batch, grads, nullptr, ready);
          else
            return n.loss_and_grad(params, x, y, batch, grads, ready);
        },
        net_);
  }
  eval_sums evaluate(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t n) {
    return std::visit([&](auto& net) { return net.evaluate(params, x, y, n); }, net_);
  }
  double loss(std::span<const T> params, const T* x, const std::uint8_t* y, std::size_t n) {
    const eval_sums s = evaluate(params, x, y, n);
    return s.loss / s.count;
  }

 private:
  static std::variant<mlp<T>, cnn<T>> make(const std::string& kind, const std::vector<std::size_t>& sizes,
                                           const std::vector<std::size_t>& channels) {
    if (kind == "mlp") return mlp<T>(sizes);
    if (kind != "cnn") throw std::invalid_argument("--model: unknown model '" + kind + "' (mlp or cnn)");
    if (sizes.size() < 2 || sizes.front() != cnn<T>::image_side * cnn<T>::image_side)
      throw std::invalid_argument("--model cnn: expects 28 x 28 images (784 inputs)");
    return cnn<T>(channels, std::vector<std::size_t>(sizes.begin() + 1, sizes.end() - 1), sizes.back());
  }

  std::variant<mlp<T>, cnn<T>> net_;
};

}  // namespace fmnist
