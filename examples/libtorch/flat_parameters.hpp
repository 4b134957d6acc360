#pragma once
// flat_parameters: puts any torch::nn::Module's parameters, their gradients and its float
// buffers (BatchNorm's running statistics) into three flat std::vector<float>, so that a
// dppf::trainer can step and synchronize the whole model with one call per buffer, without copies.
//
// Copy this header into your trainer. It re-seats every parameter as a torch::from_blob view
// into params() (values kept), every .grad() as a view into grads(), and every float32 buffer as
// a view into buffers(); autograd then accumulates into grads() and the module reads params().
// Other buffers (BatchNorm's int64 num_batches_tracked) stay where they are, local to the worker.
// What must hold for the views to stay valid (check() says when one did not):
//   * zero the gradients with zero_grad() here or module.zero_grad() (set_to_none = false, the
//     LibTorch 1.13 default); set_to_none = true drops the views;
//   * no torch optimizer that assigns a new .grad, no backward(create_graph = true);
//   * module->to(...), torch::load(module, ...) and set_data() re-seat parameters: build a new
//     flat_parameters after them.
// The views keep the flat storage alive (they share it), so the module may outlive this object.

#include <torch/torch.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <dppf/layout.hpp>

namespace flat_torch {

class flat_parameters {
 public:
  /// Re-seats `module`'s parameters, gradients and float32 buffers. Throws std::invalid_argument
  /// naming the tensor when one is not a dense float32 CPU tensor, is empty, or is shared by two
  /// names (tied weights); the module is left unchanged then.
  explicit flat_parameters(torch::nn::Module& module) {
    std::unordered_set<const void*> seen;
    std::vector<std::pair<std::string, std::size_t>> psizes, bsizes;
    for (const auto& item : module.named_parameters()) {
      require_flat_float(item.key(), item.value(), "parameter", seen);
      params_entries_.push_back({item.key(), item.value(), 0, static_cast<std::size_t>(item.value().numel())});
      psizes.emplace_back(item.key(), params_entries_.back().size);
    }
    if (params_entries_.empty()) throw std::invalid_argument("flat_parameters: the module has no parameters");
    for (const auto& item : module.named_buffers()) {
      if (item.value().scalar_type() != torch::kFloat) continue;  // e.g. num_batches_tracked: stays local
      require_flat_float(item.key(), item.value(), "buffer", seen);
      buffer_entries_.push_back({item.key(), item.value(), 0, static_cast<std::size_t>(item.value().numel())});
      bsizes.emplace_back(item.key(), buffer_entries_.back().size);
    }
    layout_ = dppf::parameter_layout::from_sizes(psizes);
    buffer_layout_ = dppf::parameter_layout::from_sizes(bsizes);
    params_ = std::make_shared<std::vector<float>>(layout_.total());
    grads_ = std::make_shared<std::vector<float>>(layout_.total());
    buffers_ = std::make_shared<std::vector<float>>(buffer_layout_.total());

    // Everything was validated: from here nothing throws short of an allocation failure.
    torch::NoGradGuard no_grad;
    for (std::size_t k = 0; k < params_entries_.size(); ++k) {
      entry& e = params_entries_[k];
      e.offset = layout_[k].offset;
      e.tensor.set_data(seat(e.tensor, params_, e.offset));
      e.tensor.mutable_grad() = view(grads_, e.offset, e.tensor.sizes());  // zeros
    }
    for (std::size_t k = 0; k < buffer_entries_.size(); ++k) {
      entry& e = buffer_entries_[k];
      e.offset = buffer_layout_[k].offset;
      e.tensor.set_data(seat(e.tensor, buffers_, e.offset));
    }
  }

  // A copy would not be what the module views.
  flat_parameters(const flat_parameters&) = delete;
  flat_parameters& operator=(const flat_parameters&) = delete;
  flat_parameters(flat_parameters&&) = default;
  flat_parameters& operator=(flat_parameters&&) = default;

  std::vector<float>& params() noexcept { return *params_; }
  std::vector<float>& grads() noexcept { return *grads_; }
  /// The float32 buffers; empty for a module without any (then call trainer::step without it).
  std::vector<float>& buffers() noexcept { return *buffers_; }
  /// Segments of params() and grads(), named and ordered as module.named_parameters().
  const dppf::parameter_layout& layout() const noexcept { return layout_; }
  /// Segments of buffers(), named as module.named_buffers() (float32 ones only).
  const dppf::parameter_layout& buffer_layout() const noexcept { return buffer_layout_; }

  /// Zeros every gradient in one pass (the views stay).
  void zero_grad() { std::fill(grads_->begin(), grads_->end(), 0.0f); }

  /// Throws std::runtime_error naming the first tensor that no longer views its flat buffer: a
  /// parameter or buffer re-seated (module->to, torch::load, set_data), a gradient dropped
  /// (zero_grad with set_to_none) or re-allocated by autograd or an optimizer. Call after
  /// backward(), before handing grads() to dppf: a few pointer comparisons.
  void check() const {
    for (const entry& e : params_entries_) {
      require_views(e, params_, "parameter",
                    "was re-seated (module->to(), torch::load() or set_data()); build a new flat_parameters after them");
      const torch::Tensor& g = e.tensor.grad();
      if (!g.defined())
        fail("the gradient of parameter '" + e.name +
             "' is undefined: it was set to none (zero_grad(true) or an optimizer); zero it with zero_grad() instead");
      if (!views(g, grads_, e.offset, e.size))
        fail("the gradient of parameter '" + e.name +
             "' no longer views the flat gradient buffer: autograd or an optimizer assigned a new tensor "
             "(backward(create_graph = true) does); the gradients computed are not in grads()");
    }
    for (const entry& e : buffer_entries_)
      require_views(e, buffers_, "buffer", "was re-seated (module->to(), torch::load() or set_data())");
  }

 private:
  using storage = std::shared_ptr<std::vector<float>>;
  struct entry {
    std::string name;
    torch::Tensor tensor;  // shares its TensorImpl with the module's, so set_data reaches the module
    std::size_t offset = 0, size = 0;
  };

  static void require_flat_float(const std::string& name, const torch::Tensor& t, const char* what,
                                 std::unordered_set<const void*>& seen) {
    const std::string who = std::string("flat_parameters: ") + what + " '" + name + "'";
    if (t.scalar_type() != torch::kFloat)
      throw std::invalid_argument(who + " is " + std::string(c10::toString(t.scalar_type())) + ", expected float32");
    if (!t.device().is_cpu()) throw std::invalid_argument(who + " is on " + t.device().str() + ", expected the CPU");
    if (t.layout() != torch::kStrided) throw std::invalid_argument(who + " is not a dense (strided) tensor");
    if (t.numel() == 0) throw std::invalid_argument(who + " is empty");
    if (!seen.insert(t.unsafeGetTensorImpl()).second)
      throw std::invalid_argument(who + " is the same tensor as an earlier one (tied weights are not supported)");
  }

  static torch::Tensor view(const storage& s, std::size_t offset, torch::IntArrayRef sizes) {
    // The deleter holds a reference: the storage lives as long as any view of it.
    return torch::from_blob(s->data() + offset, sizes, [keep = s](void*) {}, torch::TensorOptions().dtype(torch::kFloat));
  }

  static torch::Tensor seat(const torch::Tensor& t, const storage& s, std::size_t offset) {
    const torch::Tensor src = t.detach().contiguous();
    std::copy_n(src.data_ptr<float>(), src.numel(), s->data() + offset);
    return view(s, offset, t.sizes());
  }

  static bool views(const torch::Tensor& t, const storage& s, std::size_t offset, std::size_t size) {
    return t.defined() && t.scalar_type() == torch::kFloat && t.data_ptr() == static_cast<void*>(s->data() + offset) &&
           static_cast<std::size_t>(t.numel()) == size && t.is_contiguous();
  }

  static void require_views(const entry& e, const storage& s, const char* what, const char* why) {
    if (!views(e.tensor, s, e.offset, e.size))
      fail(std::string(what) + " '" + e.name + "' no longer views its flat buffer: it " + why);
  }

  [[noreturn]] static void fail(const std::string& why) { throw std::runtime_error("flat_parameters: " + why); }

  std::vector<entry> params_entries_, buffer_entries_;
  dppf::parameter_layout layout_, buffer_layout_;
  storage params_, grads_, buffers_;
};

}  // namespace flat_torch
