// flat_parameters against LibTorch itself: the views keep the module's values and names, dppf's
// sgd and adamw on the flat buffers give torch::optim::SGD's and AdamW's parameters step for step,
// BatchNorm statistics are averaged at a sync while num_batches_tracked stays local, and every way
// of losing a view is reported.

#include <torch/torch.h>
// LibTorch brings glog, whose CHECK macros would replace doctest's.
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "flat_parameters.hpp"
#include "models.hpp"

namespace {

using torch_example::make_model;
using torch_example::model_options;

const model_options small_resnet{.name = "resnet", .width = 4};
const model_options small_mlp{.name = "mlp", .hidden = {32, 16}};

// A fixed random minibatch per step, shared by the two runs that are compared.
struct batches {
  std::vector<torch::Tensor> x, y;
  batches(int steps, std::int64_t b, std::uint64_t seed) {
    torch::manual_seed(seed);
    for (int s = 0; s < steps; ++s) {
      x.push_back(torch::randn({b, 784}));
      y.push_back(torch::randint(0, 10, {b}, torch::kLong));
    }
  }
};

double loss_backward(torch_example::model& m, const torch::Tensor& x, const torch::Tensor& y) {
  const torch::Tensor loss = torch::nn::functional::cross_entropy(m.forward(x), y);
  loss.backward();
  return loss.item<double>();
}

// Every element of `ours` (flat, in named_parameters / float named_buffers order) against the
// tensors of `theirs`: |a - b| <= tol * (1 + |b|). Returns the largest |a - b|.
double require_close(const std::vector<float>& ours, const std::vector<torch::Tensor>& theirs, double tol) {
  std::size_t at = 0;
  double worst = 0.0;
  for (const auto& t : theirs) {
    const torch::Tensor c = t.detach().contiguous();
    const float* p = c.data_ptr<float>();
    for (std::int64_t i = 0; i < c.numel(); ++i, ++at) {
      REQUIRE(at < ours.size());
      const double d = std::abs(double(ours[at]) - double(p[i]));
      worst = std::max(worst, d);
      if (d > tol * (1.0 + std::abs(double(p[i])))) FAIL_CHECK("element " << at << ": " << ours[at] << " vs " << p[i]);
    }
  }
  CHECK(at == ours.size());
  return worst;
}

std::vector<torch::Tensor> float_buffers(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& b : m.buffers())
    if (b.scalar_type() == torch::kFloat) out.push_back(b);
  return out;
}

// k steps of torch::optim::<Opt> on one model and of dppf's trainer with `ours` (single worker,
// never synchronizing) on the flat buffers of an identical one; parameters and BatchNorm
// statistics must agree after every step.
template <class TorchOpt, class TorchOptions, class DppfOpt>
void compare_with_torch(const model_options& mo, TorchOptions torch_options, DppfOpt ours, double tol) {
  const int k = 12;
  const batches data(k, 16, 7);
  torch_example::model a = make_model(mo, 3), b = make_model(mo, 3);
  TorchOpt theirs(a.module->parameters(), torch_options);
  flat_torch::flat_parameters flat(*b.module);
  dppf::trainer tr{ours, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {.tau = 1000}};
  double worst = 0.0;
  for (int s = 0; s < k; ++s) {
    theirs.zero_grad();
    const double la = loss_backward(a, data.x[s], data.y[s]);
    theirs.step();
    flat.zero_grad();
    const double lb = loss_backward(b, data.x[s], data.y[s]);
    flat.check();
    if (flat.buffers().empty())
      tr.step(flat.params(), flat.grads(), lb);
    else
      tr.step(flat.params(), flat.grads(), lb, flat.buffers());
    CHECK(lb == doctest::Approx(la).epsilon(1e-4));
    worst = std::max(worst, require_close(flat.params(), a.module->parameters(), tol));
    require_close(flat.buffers(), float_buffers(*a.module), tol);
  }
  MESSAGE(mo.name << ": largest difference over " << k << " steps " << worst);
}

}  // namespace

TEST_CASE("flat_parameters: views keep the module's values, names and order") {
  for (const auto& mo : {small_resnet, small_mlp}) {
    torch_example::model m = make_model(mo, 1);
    std::vector<std::string> names;
    std::vector<float> before;
    for (const auto& p : m.module->named_parameters()) {
      names.push_back(p.key());
      const torch::Tensor c = p.value().detach().contiguous();
      before.insert(before.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    }
    flat_torch::flat_parameters flat(*m.module);
    CHECK(flat.params() == before);
    REQUIRE(flat.layout().size() == names.size());
    std::size_t offset = 0;
    for (std::size_t k = 0; k < names.size(); ++k) {
      CHECK(flat.layout()[k].name == names[k]);
      CHECK(flat.layout()[k].offset == offset);
      offset += flat.layout()[k].size;
    }
    CHECK(std::all_of(flat.grads().begin(), flat.grads().end(), [](float g) { return g == 0.0f; }));
    flat.check();
    // The module reads the flat buffer: writing there changes its output.
    const torch::Tensor x = torch::randn({2, 784});
    const torch::Tensor y0 = m.forward(x).detach().clone();
    std::fill(flat.params().begin(), flat.params().end(), 0.0f);
    m.module->eval();
    CHECK(m.forward(x).abs().max().item<float>() == 0.0f);
    CHECK(!y0.eq(0).all().item<bool>());
    if (mo.name == "resnet") {  // running_mean and running_var of each BatchNorm; num_batches_tracked stays out
      CHECK(flat.buffer_layout().size() == 2 * 9);  // stem, 2 + 3 + 3 in the blocks
      CHECK(flat.buffer_layout()[0].name == "stem_bn.running_mean");
      CHECK(flat.buffer_layout()[1].name == "stem_bn.running_var");
    } else {
      CHECK(flat.buffers().empty());
    }
  }
}

TEST_CASE("flat_parameters with dppf sgd gives torch::optim::SGD's parameters") {
  namespace optim = torch::optim;
  for (const auto& mo : {small_mlp, small_resnet}) {
    compare_with_torch<optim::SGD>(mo, optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-3),
                                   dppf::sgd{{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3}}, 1e-5);
    compare_with_torch<optim::SGD>(mo, optim::SGDOptions(0.05).momentum(0.9).nesterov(true),
                                   dppf::sgd{{.lr = 0.05, .momentum = 0.9, .nesterov = true}}, 1e-5);
  }
}

TEST_CASE("flat_parameters with dppf adamw gives torch::optim::AdamW's parameters") {
  namespace optim = torch::optim;
  for (const auto& mo : {small_mlp, small_resnet})
    compare_with_torch<optim::AdamW>(mo, optim::AdamWOptions(1e-3).weight_decay(1e-2),
                                     dppf::adamw{{.lr = 1e-3, .weight_decay = 1e-2}}, 1e-5);
}

TEST_CASE("flat_parameters: BatchNorm statistics are averaged at a sync, num_batches_tracked stays local") {
  // Two workers on different data; worker 1 runs one extra forward pass before training, so its
  // statistics and its counter differ. tau = 2: the second step syncs.
  constexpr int m = 2;
  std::array<std::vector<float>, m> before_sync, after_sync;
  std::array<std::int64_t, m> tracked{};
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    torch::set_num_threads(1);
    const int r = comm.rank();
    torch_example::model net = make_model(small_resnet, 5);
    flat_torch::flat_parameters flat(*net.module);
    torch::Generator gen = at::detail::createCPUGenerator(100 + static_cast<std::uint64_t>(r));
    const auto input = [&] { return torch::randn({8, 784}, gen) * (1.0 + r); };
    if (r == 1) (void)net.forward(input());
    dppf::trainer tr{dppf::sgd{{.lr = 0.01}}, dppf::local_sgd{}, std::move(comm), dppf::host_executor{}, {.tau = 2}};
    for (int s = 0; s < 2; ++s) {
      flat.zero_grad();
      const double loss = loss_backward(net, input(), torch::randint(0, 10, {8}, gen, torch::kLong));
      flat.check();
      if (s == 1) before_sync[static_cast<std::size_t>(r)] = flat.buffers();
      tr.step(flat.params(), flat.grads(), loss, flat.buffers());
    }
    after_sync[static_cast<std::size_t>(r)] = flat.buffers();
    for (const auto& b : net.module->named_buffers())
      if (b.key() == "stem_bn.num_batches_tracked") tracked[static_cast<std::size_t>(r)] = b.value().item<std::int64_t>();
  });
  REQUIRE(before_sync[0].size() == before_sync[1].size());
  CHECK(before_sync[0] != before_sync[1]);
  for (std::size_t i = 0; i < before_sync[0].size(); ++i) {
    const double mean = (double(before_sync[0][i]) + double(before_sync[1][i])) / 2.0;
    CHECK(after_sync[0][i] == doctest::Approx(mean).epsilon(1e-6));
    CHECK(after_sync[1][i] == after_sync[0][i]);
  }
  CHECK(tracked[0] == 2);  // its own count, not averaged
  CHECK(tracked[1] == 3);
}

TEST_CASE("flat_parameters: check reports every lost view") {
  const torch::Tensor x = torch::randn({4, 784});
  const torch::Tensor y = torch::randint(0, 10, {4}, torch::kLong);
  SUBCASE("zero_grad(set_to_none = true)") {
    torch_example::model m = make_model(small_mlp, 1);
    flat_torch::flat_parameters flat(*m.module);
    m.module->zero_grad(true);
    CHECK_THROWS_WITH_AS(flat.check(), doctest::Contains("gradient of parameter '0.weight' is undefined"), std::runtime_error);
    loss_backward(m, x, y);  // autograd now allocates new gradients, outside grads()
    CHECK_THROWS_WITH_AS(flat.check(), doctest::Contains("gradient of parameter '0.weight' no longer views"), std::runtime_error);
  }
  SUBCASE("module.zero_grad() without set_to_none keeps the views") {
    torch_example::model m = make_model(small_mlp, 1);
    flat_torch::flat_parameters flat(*m.module);
    loss_backward(m, x, y);
    m.module->zero_grad(false);
    CHECK(std::all_of(flat.grads().begin(), flat.grads().end(), [](float g) { return g == 0.0f; }));
    loss_backward(m, x, y);
    CHECK_NOTHROW(flat.check());
    CHECK(std::any_of(flat.grads().begin(), flat.grads().end(), [](float g) { return g != 0.0f; }));
  }
  SUBCASE("backward(create_graph = true) re-allocates the gradients") {
    torch_example::model m = make_model(small_mlp, 1);
    flat_torch::flat_parameters flat(*m.module);
    torch::nn::functional::cross_entropy(m.forward(x), y).backward({}, true, true);
    CHECK_THROWS_WITH_AS(flat.check(), doctest::Contains("no longer views the flat gradient buffer"), std::runtime_error);
  }
  SUBCASE("module->to() re-seats the parameters and buffers") {
    torch_example::model m = make_model(small_resnet, 1);
    flat_torch::flat_parameters flat(*m.module);
    m.module->to(torch::kDouble);
    CHECK_THROWS_WITH_AS(flat.check(), doctest::Contains("parameter 'stem.weight' no longer views its flat buffer"),
                         std::runtime_error);
  }
}

TEST_CASE("flat_parameters: modules it cannot flatten are rejected, unchanged") {
  SUBCASE("a double parameter") {
    torch_example::model m = make_model(small_mlp, 1);
    m.module->to(torch::kDouble);
    const void* before = m.module->parameters()[0].data_ptr();
    CHECK_THROWS_WITH_AS(flat_torch::flat_parameters{*m.module},
                         doctest::Contains("parameter '0.weight' is Double, expected float32"), std::invalid_argument);
    CHECK(m.module->parameters()[0].data_ptr() == before);
  }
  SUBCASE("tied weights") {
    struct tied : torch::nn::Module {
      tied() {
        const torch::Tensor w = torch::randn({3, 3});
        register_parameter("a", w);
        register_parameter("b", w);
      }
    } m;
    CHECK_THROWS_WITH_AS(flat_torch::flat_parameters{m}, doctest::Contains("parameter 'b' is the same tensor as an earlier one"),
                         std::invalid_argument);
  }
  SUBCASE("no parameters") {
    torch::nn::ReLU relu;
    CHECK_THROWS_WITH_AS(flat_torch::flat_parameters{*relu}, doctest::Contains("the module has no parameters"),
                         std::invalid_argument);
  }
}
