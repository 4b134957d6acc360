#pragma once
// The example's two torch::nn models for 28x28 images given as rows of 784 pixels:
//   resnet  a small ResNet: a 3x3 stem (width w) with BatchNorm, then three residual blocks
//           (w, 2w at stride 2, 4w at stride 2: 28 -> 14 -> 7), global average pool, linear to 10;
//   mlp     784-h1-h2-...-10 with ReLU, as a torch::nn::Sequential (the names and order of
//           Python's torch.nn.Sequential of Linear and ReLU, which the reference script relies on).

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace torch_example {

inline torch::nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

/// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a 1x1 convolution with
/// BatchNorm when the shape changes.
struct residual_blockImpl : torch::nn::Module {
  residual_blockImpl(std::int64_t in, std::int64_t out, std::int64_t stride)
      : conv1(register_module("conv1", conv3x3(in, out, stride))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(out))),
        conv2(register_module("conv2", conv3x3(out, out, 1))),
        bn2(register_module("bn2", torch::nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out) {
      shortcut = register_module("shortcut", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      shortcut_bn = register_module("shortcut_bn", torch::nn::BatchNorm2d(out));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor y = bn2(conv2(torch::relu(bn1(conv1(x)))));
    return torch::relu(y + (shortcut ? shortcut_bn(shortcut(x)) : x));
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Conv2d shortcut{nullptr};
  torch::nn::BatchNorm2d shortcut_bn{nullptr};
};
TORCH_MODULE(residual_block);

struct resnetImpl : torch::nn::Module {
  explicit resnetImpl(std::int64_t w)
      : stem(register_module("stem", conv3x3(1, w, 1))),
        stem_bn(register_module("stem_bn", torch::nn::BatchNorm2d(w))),
        block1(register_module("block1", residual_block(w, w, 1))),
        block2(register_module("block2", residual_block(w, 2 * w, 2))),
        block3(register_module("block3", residual_block(2 * w, 4 * w, 2))),
        fc(register_module("fc", torch::nn::Linear(4 * w, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(stem_bn(stem(x.view({-1, 1, 28, 28}))));
    y = block3(block2(block1(y)));
    return fc(y.mean({2, 3}));
  }
  torch::nn::Conv2d stem;
  torch::nn::BatchNorm2d stem_bn;
  residual_block block1, block2, block3;
  torch::nn::Linear fc;
};
TORCH_MODULE(resnet);

/// A model behind one forward() and the torch::nn::Module it is, so the trainer need not know which.
struct model {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

struct model_options {
  std::string name = "resnet";                ///< resnet or mlp
  std::int64_t width = 16;                    ///< resnet: channels of the first stage
  std::vector<std::int64_t> hidden{512, 512};  ///< mlp: hidden layers
};

inline void validate(const model_options& o) {
  if (o.name != "resnet" && o.name != "mlp")
    throw std::invalid_argument("--model: unknown model '" + o.name + "' (resnet or mlp)");
  if (o.width < 1) throw std::invalid_argument("--width: must be >= 1, got " + std::to_string(o.width));
  for (const auto h : o.hidden)
    if (h < 1) throw std::invalid_argument("--hidden: every layer must be >= 1, got " + std::to_string(h));
}

/// A fresh model initialized by torch's default init from `seed`: the same weights for the same
/// seed on every thread and process (the global generator is seeded and used under one lock).
inline model make_model(const model_options& o, std::uint64_t seed) {
  validate(o);
  static std::mutex init;
  const std::lock_guard lock(init);
  torch::manual_seed(seed);
  if (o.name == "resnet") {
    resnet net(o.width);
    return {net.ptr(), [net](const torch::Tensor& x) mutable { return net->forward(x); }};
  }
  torch::nn::Sequential net;
  std::int64_t in = 784;
  for (const auto h : o.hidden) {
    net->push_back(torch::nn::Linear(in, h));
    net->push_back(torch::nn::ReLU());
    in = h;
  }
  net->push_back(torch::nn::Linear(in, 10));
  return {net.ptr(), [net](const torch::Tensor& x) mutable { return net->forward(x); }};
}

}  // namespace torch_example
