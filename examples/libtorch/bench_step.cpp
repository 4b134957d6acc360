// Timings of dppf's optimizers against torch::optim's on the same LibTorch model: the optimizer
// step alone, and a whole training step (zero_grad, forward, backward, step) on a minibatch of 64.
// One line per (model, optimizer, implementation): the median over the repetitions, in ms, the
// two implementations timed in turn.
// usage: libtorch_bench_step [REPS] [THREADS]   (defaults 50 and 1)

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <dppf/dppf.hpp>

#include "common/cli.hpp"
#include "flat_parameters.hpp"
#include "models.hpp"

namespace {

// The medians (ms) of a and b over `reps` rounds, timed in turn (a b, then b a, ...), so that a
// drift of the machine's speed during the run reaches both alike.
std::pair<double, double> paired_median_ms(int reps, const std::function<void()>& a, const std::function<void()>& b) {
  for (int i = 0; i < 3; ++i) {  // warm-up
    a();
    b();
  }
  const auto time = [](const std::function<void()>& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> ta, tb;
  for (int i = 0; i < std::max(1, reps); ++i) {
    if (i % 2 == 0) {
      ta.push_back(time(a));
      tb.push_back(time(b));
    } else {
      tb.push_back(time(b));
      ta.push_back(time(a));
    }
  }
  const auto median = [](std::vector<double>& t) {
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    return t[t.size() / 2];
  };
  return {median(ta), median(tb)};
}

void report(const std::string& model, const std::string& opt, const char* who, double step, double train) {
  std::printf("{\"model\": \"%s\", \"optimizer\": \"%s\", \"impl\": \"%s\", \"step_ms\": %.4f, \"train_step_ms\": %.3f}\n",
              model.c_str(), opt.c_str(), who, step, train);
  std::fflush(stdout);
}

// The same model twice (same initial weights): one stepped by torch::optim, one by dppf on flat
// buffers; each measurement alternates between the two.
template <class TorchOpt, class TorchOptions, class DppfOpt>
void compare(const torch_example::model_options& mo, const std::string& name, TorchOptions torch_options, DppfOpt ours, int reps) {
  const torch::Tensor x = torch::randn({64, 784});
  const torch::Tensor y = torch::randint(0, 10, {64}, torch::kLong);
  const auto fwd_bwd = [&](torch_example::model& m) {
    torch::nn::functional::cross_entropy(m.forward(x), y).backward();
  };
  torch_example::model tm = torch_example::make_model(mo, 1);
  TorchOpt opt(tm.module->parameters(), torch_options);
  torch_example::model dm = torch_example::make_model(mo, 1);
  flat_torch::flat_parameters flat(*dm.module);
  dppf::trainer tr{ours, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {.tau = 1 << 30}};
  fwd_bwd(tm);
  fwd_bwd(dm);
  const auto [torch_step, dppf_step] =
      paired_median_ms(reps, [&] { opt.step(); }, [&] { tr.step(flat.params(), flat.grads()); });
  const auto [torch_train, dppf_train] = paired_median_ms(
      reps, [&] { opt.zero_grad(); fwd_bwd(tm); opt.step(); },
      [&] { flat.zero_grad(); fwd_bwd(dm); flat.check(); tr.step(flat.params(), flat.grads()); });
  report(mo.name, name, "torch::optim", torch_step, torch_train);
  report(mo.name, name, "dppf", dppf_step, dppf_train);
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
