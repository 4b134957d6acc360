#pragma once
// The LibTorch example's training driver: M workers (threads of one thread_group, or MPI
// processes), each with its own torch::nn model whose parameters, gradients and BatchNorm
// statistics live in three flat buffers (flat_parameters). LibTorch computes the gradients;
// dppf's trainer does the optimizer step and, every tau steps, the sync of the chosen method
// (the BatchNorm statistics are averaged then; num_batches_tracked stays local). Shards,
// per-epoch evaluation of x_bar and the records are those of the Fashion-MNIST example.

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dppf/dppf.hpp>

#include "fashion_mnist/idx.hpp"
#include "fashion_mnist/report.hpp"
#include "flat_parameters.hpp"
#include "models.hpp"

namespace torch_example {

struct options {
  fmnist::run_options run;  ///< method, workers, tau, rule and SGD options, epochs, batch, seed
  model_options model;
  std::string optimizer = "sgd";  ///< sgd (run.lr, momentum, weight_decay) or adamw (run.lr, weight_decay)
};

/// Where a step's time went on worker 0 (wall time, seconds, summed over the run).
struct step_timing {
  double forward_backward = 0.0, local_step = 0.0, sync_step = 0.0;
  std::int64_t local_steps = 0, sync_steps = 0;
};

struct result {
  fmnist::run_result run;
  step_timing timing;
};

inline void validate(const options& o, std::size_t train_count) {
  // The shared flags are checked by the Fashion-MNIST example's validate (it also checks its own
  // model, so it is given a valid one); the model by ours.
  fmnist::run_options shared = o.run;
  shared.model = "mlp";
  shared.sizes = {784, 10};
  fmnist::validate(shared, train_count);
  torch_example::validate(o.model);
  if (o.optimizer != "sgd" && o.optimizer != "adamw")
    throw std::invalid_argument("--optimizer: unknown optimizer '" + o.optimizer + "' (sgd or adamw)");
}

/// Rows [begin, begin + n) of `d` as a tensor viewing the dataset (no copy) and their labels.
inline std::pair<torch::Tensor, torch::Tensor> rows(const fmnist::dataset& d, std::size_t begin, std::size_t n) {
  auto x = torch::from_blob(const_cast<float*>(d.x.data() + begin * d.dim),
                            {static_cast<std::int64_t>(n), static_cast<std::int64_t>(d.dim)});
  auto y = torch::from_blob(const_cast<std::uint8_t*>(d.y.data() + begin), {static_cast<std::int64_t>(n)}, torch::kUInt8)
               .to(torch::kLong);
  return {x, y};
}

/// Sums of the loss and of the correct predictions of `m` (in eval mode) on n rows of `d` from `begin`.
inline fmnist::eval_sums evaluate(model& m, const fmnist::dataset& d, std::size_t begin, std::size_t n) {
  const torch::NoGradGuard no_grad;
  fmnist::eval_sums s;
  for (std::size_t at = begin; at < begin + n; at += 1000) {
    const auto [x, y] = rows(d, at, std::min<std::size_t>(1000, begin + n - at));
    const torch::Tensor logits = m.forward(x);
    s.loss += torch::nn::functional::cross_entropy(logits, y,
                                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
    s.correct += logits.argmax(1).eq(y).sum().item<double>();
    s.count += static_cast<double>(x.size(0));
  }
  return s;
}

namespace detail {

// With several workers on a machine each runs LibTorch on one thread, so they do not
// oversubscribe the cores (OpenMP threads of one worker spinning while another one computes).
inline int intra_op_threads(int workers) {
  return workers > 1 ? 1 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Trains with optimizer `opt` and rule `rule`; launch(f, m) calls f(comm) for every worker of
// this process (all m as threads, or this rank under MPI). The result is complete on rank 0.
template <class Optimizer, class Rule, class Launch>
result train_with(Optimizer opt, Rule rule, std::int64_t tau, const options& o, const fmnist::dataset& train,
                  const fmnist::dataset& test, const fmnist::callbacks& cb, int m, Launch&& launch) {
  const fmnist::run_options& ro = o.run;
  const std::size_t shard_size = train.count / static_cast<std::size_t>(m);
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>(shard_size / ro.batch);
  // The Fashion-MNIST example's dealing: one global permutation, shard r is its r-th slice.
  std::vector<std::size_t> perm(train.count);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  std::mt19937_64 deal(ro.seed ^ 0x9e3779b97f4a7c15ull);
  std::shuffle(perm.begin(), perm.end(), deal);

  result res;
  res.run.options = ro;
  res.run.epochs.resize(static_cast<std::size_t>(ro.epochs));
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };

  launch([&](auto comm) {
    const int r = comm.rank();
    // LibTorch's OpenMP thread count is per calling thread: set it in each worker (see train()).
    torch::set_num_threads(intra_op_threads(m));
    model net = make_model(o.model, ro.seed);  // the same start on every worker
    flat_torch::flat_parameters flat(*net.module);
    const bool has_buffers = !flat.buffers().empty();
    std::vector<std::size_t> shard(perm.begin() + static_cast<std::ptrdiff_t>(shard_size * static_cast<std::size_t>(r)),
                                   perm.begin() + static_cast<std::ptrdiff_t>(shard_size * static_cast<std::size_t>(r + 1)));
    std::mt19937_64 rng(ro.seed * 1000003ull + static_cast<std::uint64_t>(r));
    dppf::trainer tr{opt, rule, std::move(comm), dppf::host_executor{}, {.tau = tau, .warmup_steps = ro.push_warmup}};
    auto& eval_comm = tr.comm().inner();  // uncounted: evaluation traffic is not training traffic

    torch::Tensor xb = torch::empty({static_cast<std::int64_t>(ro.batch), 784});
    torch::Tensor yb = torch::empty({static_cast<std::int64_t>(ro.batch)}, torch::kLong);
    const auto gather = [&](std::int64_t s) {
      float* x = xb.data_ptr<float>();
      std::int64_t* y = yb.data_ptr<std::int64_t>();
      for (std::size_t i = 0; i < ro.batch; ++i) {
        const std::size_t k = shard[static_cast<std::size_t>(s) * ro.batch + i];
        std::copy_n(train.x.data() + k * train.dim, train.dim, x + i * train.dim);
        y[i] = train.y[k];
      }
    };

    // x_bar (parameters and BatchNorm statistics averaged) evaluated on one slice of each set per
    // worker; afterwards the worker's own values are put back.
    std::vector<float> own_params, own_buffers;
    const auto evaluate_xbar = [&] {
      own_params = flat.params();
      own_buffers = flat.buffers();
      eval_comm.all_reduce(flat.params(), dppf::reduce_op::avg);
      if (has_buffers) eval_comm.all_reduce(flat.buffers(), dppf::reduce_op::avg);
      net.module->eval();
      std::pair<double, double> out[2];
      for (int test_set = 0; test_set < 2; ++test_set) {
        const fmnist::dataset& d = test_set ? test : train;
        const std::size_t per = (d.count + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
        const std::size_t begin = std::min(d.count, per * static_cast<std::size_t>(r)), n = std::min(d.count, begin + per) - begin;
        const fmnist::eval_sums s = n ? evaluate(net, d, begin, n) : fmnist::eval_sums{};
        const double loss = eval_comm.all_reduce(s.loss, dppf::reduce_op::sum);
        const double correct = eval_comm.all_reduce(s.correct, dppf::reduce_op::sum);
        const double total = eval_comm.all_reduce(s.count, dppf::reduce_op::sum);
        out[test_set] = {loss / total, correct / total};
      }
      net.module->train();
      std::copy(own_params.begin(), own_params.end(), flat.params().begin());  // in place: the views stay
      std::copy(own_buffers.begin(), own_buffers.end(), flat.buffers().begin());
      return std::pair{out[0], out[1]};
    };

    step_timing timing;
    for (int e = 0; e < ro.epochs; ++e) {
      std::shuffle(shard.begin(), shard.end(), rng);
      double loss_sum = 0.0;
      const auto epoch_start = clock::now();
      for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
        gather(s);
        const auto t_fb = clock::now();
        flat.zero_grad();
        const torch::Tensor loss_t = torch::nn::functional::cross_entropy(net.forward(xb), yb);
        loss_t.backward();
        flat.check();  // autograd wrote into grads(): a clear error if a view was lost
        const double loss = loss_t.item<double>();
        const auto t_step = clock::now();
        timing.forward_backward += std::chrono::duration<double>(t_step - t_fb).count();
        const bool syncs = tr.syncs_after(tr.steps()) || Rule::averages_gradients;
        if (has_buffers)
          tr.step(flat.params(), flat.grads(), loss, flat.buffers());
        else
          tr.step(flat.params(), flat.grads(), loss);
        (syncs ? timing.sync_step : timing.local_step) += since(t_step);
        ++(syncs ? timing.sync_steps : timing.local_steps);
        loss_sum += loss;
        if (r == 0 && cb.progress) {
          const double dt = since(epoch_start);
          const double seen = static_cast<double>(s + 1) * static_cast<double>(ro.batch) * m;
          cb.progress(fmnist::progress_info{ro.method, e + 1, ro.epochs, s + 1, steps_per_epoch,
                                            loss_sum / static_cast<double>(s + 1), dt > 0.0 ? seen / dt : 0.0});
        }
      }
      const double mb_loss = eval_comm.all_reduce(loss_sum / static_cast<double>(steps_per_epoch), dppf::reduce_op::avg);
      const auto [tr_eval, te_eval] = evaluate_xbar();
      const dppf::trainer_stats st = tr.stats();
      if (r == 0) {  // every rank agrees on every value above
        fmnist::epoch_record& rec = res.run.epochs[static_cast<std::size_t>(e)];
        rec = {e + 1, tr_eval.first, tr_eval.second, te_eval.first, te_eval.second, mb_loss, st.mean_distance, st.bytes, since(t0)};
        if (cb.epoch) cb.epoch(ro, rec);
      }
      eval_comm.barrier();
    }
    const dppf::trainer_stats st = tr.stats();
    tr.average(flat.params());  // the deliverable model, x_bar, on every worker
    if (r == 0) {
      res.run.x_bar = flat.params();
      res.run.steps = st.steps;
      res.run.syncs = st.syncs;
      res.run.comm_bytes = st.bytes;
      res.timing = timing;
    }
  }, m);
  res.run.wall_s = since(t0);
  return res;
}

// Calls f(rule, tau) with the consensus rule of o.method.
template <class F>
decltype(auto) with_rule(const fmnist::run_options& o, F&& f) {
  const std::string& k = o.method;
  if (k == "dppf") {
    const auto mode = o.push == "inverse_mv" ? dppf::push_mode::inverse_mv : dppf::push_mode::constant;
    return f(dppf::pull_push{{.alpha = o.alpha, .lambda = o.lambda, .push = mode}}, o.tau);
  }
  if (k == "local_sgd") return f(dppf::local_sgd{}, o.tau);
  if (k == "elastic") return f(dppf::elastic{{.alpha = o.alpha}}, o.tau);
  if (k == "leader") return f(dppf::leader{{.pull = o.alpha}}, o.tau);
  if (k == "grawa") return f(dppf::grawa{{.alpha = o.alpha}}, o.tau);
  if (k == "diloco") return f(dppf::diloco{{.outer_lr = o.outer_lr, .outer_momentum = o.outer_momentum}}, o.tau);
  if (k == "ddp") return f(dppf::data_parallel{}, std::int64_t{1});
  return f(dppf::local_sgd{}, std::numeric_limits<std::int64_t>::max());  // single: never synchronizes
}

}  // namespace detail

/// Trains o.run.method with m workers started by launch(f, m) and evaluates x_bar after every epoch.
template <class Launch>
result train(const options& o, const fmnist::dataset& train, const fmnist::dataset& test, const fmnist::callbacks& cb,
             int m, Launch&& launch) {
  validate(o, train.count);
  if (train.dim != 784 || test.dim != 784)
    throw std::invalid_argument("libtorch example: the models expect 28x28 images, the data has " +
                                std::to_string(train.dim) + " pixels per image");
  const fmnist::run_options& ro = o.run;
  return detail::with_rule(ro, [&](auto rule, std::int64_t tau) {
    if (o.optimizer == "adamw")
      return detail::train_with(dppf::adamw{{.lr = ro.lr, .weight_decay = ro.weight_decay}}, rule, tau, o, train, test, cb,
                                m, launch);
    return detail::train_with(dppf::sgd{{.lr = ro.lr, .momentum = ro.momentum, .weight_decay = ro.weight_decay}}, rule,
                              tau, o, train, test, cb, m, launch);
  });
}

}  // namespace torch_example
