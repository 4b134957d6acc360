// Timings of dppf's optimizers against torch::optim's on the same LibTorch model: the optimizer
// step alone, and a whole training step (zero_grad, forward, backward, step) on a minibatch of 64.
// One line per (model, optimizer, implementation): the median over the repetitions, in ms.
// usage: libtorch_bench_step [REPS] [THREADS]   (defaults 50 and 1)

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "common/cli.hpp"
#include "flat_parameters.hpp"
#include "models.hpp"

namespace {

double median_ms(int reps, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up
  std::vector<double> t(static_cast<std::size_t>(std::max(1, reps)));
  for (double& ms : t) {
    const auto a = std::chrono::steady_clock::now();
    f();
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
  }
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

void report(const std::string& model, const std::string& opt, const char* who, double step, double train) {
  std::printf("{\"model\": \"%s\", \"optimizer\": \"%s\", \"impl\": \"%s\", \"step_ms\": %.4f, \"train_step_ms\": %.3f}\n",
              model.c_str(), opt.c_str(), who, step, train);
  std::fflush(stdout);
}

template <class TorchOpt, class TorchOptions, class DppfOpt>
void compare(const torch_example::model_options& mo, const std::string& name, TorchOptions torch_options, DppfOpt ours, int reps) {
  const torch::Tensor x = torch::randn({64, 784});
  const torch::Tensor y = torch::randint(0, 10, {64}, torch::kLong);
  const auto fwd_bwd = [&](torch_example::model& m) {
    torch::nn::functional::cross_entropy(m.forward(x), y).backward();
  };
  {
    torch_example::model m = torch_example::make_model(mo, 1);
    TorchOpt opt(m.module->parameters(), torch_options);
    fwd_bwd(m);
    const double step = median_ms(reps, [&] { opt.step(); });
    const double train = median_ms(reps, [&] { opt.zero_grad(); fwd_bwd(m); opt.step(); });
    report(mo.name, name, "torch::optim", step, train);
  }
  {
    torch_example::model m = torch_example::make_model(mo, 1);
    flat_torch::flat_parameters flat(*m.module);
    dppf::trainer tr{ours, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {.tau = 1 << 30}};
    fwd_bwd(m);
    const double step = median_ms(reps, [&] { tr.step(flat.params(), flat.grads()); });
    const double train = median_ms(reps, [&] { flat.zero_grad(); fwd_bwd(m); flat.check(); tr.step(flat.params(), flat.grads()); });
    report(mo.name, name, "dppf", step, train);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? example_cli::parse<int>("REPS", argv[1]) : 50;
  torch::set_num_threads(argc > 2 ? example_cli::parse<int>("THREADS", argv[2]) : 1);
  namespace optim = torch::optim;
  for (const auto& mo : {torch_example::model_options{.name = "resnet"}, torch_example::model_options{.name = "mlp"}}) {
    compare<optim::SGD>(mo, "sgd", optim::SGDOptions(0.05).momentum(0.9), dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, reps);
    compare<optim::AdamW>(mo, "adamw", optim::AdamWOptions(1e-3).weight_decay(1e-2),
                          dppf::adamw{{.lr = 1e-3, .weight_decay = 1e-2}}, reps);
  }
}
