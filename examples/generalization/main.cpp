// examples/generalization: one model of the generalization sweeps (docs/results.md, "Claim 1: IMV
// and the generalization gap" and "Claim 2: DPPF where over-fitting happens"). Trains one MLP on
// the first --train-size Fashion-MNIST training images with the fashion_mnist example's model,
// data reader and training driver (momentum SGD, a fixed number of epochs, or with
// --target-train-loss L --max-epochs E epoch by epoch until the first epoch whose training loss is
// <= L, at most E; by default one worker, with --method any of the example's methods over
// --workers threads, the images dealt into equal shards), then writes one JSON object with
//   * accuracy and mean cross-entropy of the final model on its whole training set and on the
//     full 10 000-image test set, and the gaps (train - test accuracy, test - train loss);
//   * dppf's sharpness measures of the final model (IMV, Hessian top eigenvalue and trace, SAM
//     and average-case sharpness), all with the mean loss over the first --measure-samples
//     training images (in every model's training set) as the oracle, evaluated in double
//     precision; the Hessian measures use the MLP's exact Hessian-vector product (mlp_hvp.hpp),
//     since finite differences of gradients are wrong across ReLU kinks;
//   * with a loss target, "stop": the criterion, the epochs trained and whether the target was reached;
//   * the settings of every estimator, the per-epoch curve (with the relaxed mean valley, the
//     workers' mean distance to their mean at each epoch's last sync) and the wall time of each part.
// The JSON is written to a temporary file and renamed, so a file at --out is always a finished run.

#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dppf/sharpness.hpp>

#include "common/cli.hpp"
#include "fashion_mnist/idx.hpp"
#include "fashion_mnist/mlp.hpp"
#include "fashion_mnist/train.hpp"
#include "mlp_hvp.hpp"

#ifndef FMNIST_DEFAULT_DATA_DIR
#define FMNIST_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#endif

namespace {

struct config {
  fmnist::run_options run;
  std::size_t width = 128, depth = 2;  // hidden layers of `width` units
  std::size_t train_size = 4000;
  std::size_t measure_samples = 1000;
  std::size_t curve_test = 1000;  // test images of the per-epoch curve (the final test is on all 10 000)
  int threads = 1;                // OpenBLAS threads
  // The loss-target criterion (off while target_train_loss is NaN): stop after the first epoch
  // whose training loss (the curve's train_loss, the mean cross-entropy of x_bar over the whole
  // training set) is <= target_train_loss, at most run.epochs = --max-epochs epochs.
  double target_train_loss = std::numeric_limits<double>::quiet_NaN();
  bool has_target() const { return !std::isnan(target_train_loss); }
  std::string data = FMNIST_DEFAULT_DATA_DIR, out, command;
  // Estimator settings (stated in the JSON and the doc).
  std::size_t imv_directions = 16;
  double imv_delta = 0.1, imv_tolerance = 1e-2;
  std::size_t eig_iters = 100;
  double eig_tol = 1e-3;
  std::size_t trace_samples = 32;
  double sam_rho = 0.05;
  double avg_sigma = 0.05;  // 0.01 moves the loss less than its sampling noise here
  std::size_t avg_samples = 32;
};

const char* usage_text =
    "usage: generalization [--lr LR] [--batch B] [--weight-decay WD] [--momentum MU] [--width W] [--depth D]\n"
    "                      [--train-size N] [--epochs E] [--seed S] [--measure-samples N] [--threads T]\n"
    "                      [--method M] [--workers K] [--tau T] [--alpha A] [--lambda L] [--push MODE]\n"
    "                      [--push-warmup S] [--target-train-loss L --max-epochs E] [--data DIR]\n"
    "                      [--out FILE.json] [--quick]\n"
    "  defaults: --lr 0.02 --batch 64 --weight-decay 0 --momentum 0.9 --width 128 --depth 2\n"
    "            --train-size 4000 --epochs 40 --seed 1 --measure-samples 1000 --threads 1\n"
    "            --method single; the other methods (ddp, local_sgd, dppf, ...) as in fashion_mnist, with\n"
    "            --workers 4 --tau 8 --alpha 0.1 --lambda 0.05 --push constant --push-warmup 0 and the\n"
    "            --batch per worker\n"
    "  --target-train-loss L --max-epochs E  instead of --epochs: stop after the first epoch whose\n"
    "            training loss (mean cross-entropy over the whole training set) is <= L, at most E\n"
    "            epochs; the JSON's \"stop\" says how many were trained and whether L was reached\n"
    "  --quick   a seconds-long smoke run: 1000 images, 2 epochs, width 32, cheap estimators\n"
    "  --out     write the JSON there (atomically); stdout otherwise\n";

const example_cli::program cli{"generalization", usage_text};

config parse_args(int argc, char** argv) {
  config c;
  c.run.method = "single";
  c.run.lr = 0.02;  // the sweep's base point (docs/results.md, Claim 1)
  c.run.epochs = 40;
  c.run.sharpness_samples = 0;  // the driver's own estimates are off; this program runs its own
  for (int i = 0; i < argc; ++i) {
    if (i) c.command += ' ';
    c.command += argv[i];
  }
  bool quick = false, epochs_given = false;
  int max_epochs = 0;  // 0: not given
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") cli.help();
    if (flag == "--quick") {
      quick = true;
      continue;
    }
    if (i + 1 >= argc) cli.usage(flag + " needs a value");
    const std::string v = argv[++i];
    auto& r = c.run;
    if (flag == "--lr") r.lr = cli.parse<double>(flag, v);
    else if (flag == "--batch") r.batch = cli.parse<std::size_t>(flag, v);
    else if (flag == "--weight-decay") r.weight_decay = cli.parse<double>(flag, v);
    else if (flag == "--momentum") r.momentum = cli.parse<double>(flag, v);
    else if (flag == "--width") c.width = cli.parse<std::size_t>(flag, v);
    else if (flag == "--depth") c.depth = cli.parse<std::size_t>(flag, v);
    else if (flag == "--train-size") c.train_size = cli.parse<std::size_t>(flag, v);
    else if (flag == "--epochs") {
      r.epochs = cli.parse<int>(flag, v);
      epochs_given = true;
    }
    else if (flag == "--target-train-loss") c.target_train_loss = cli.parse<double>(flag, v);
    else if (flag == "--max-epochs") max_epochs = cli.parse<int>(flag, v);
    else if (flag == "--seed") r.seed = cli.parse<std::uint64_t>(flag, v);
    else if (flag == "--measure-samples") c.measure_samples = cli.parse<std::size_t>(flag, v);
    else if (flag == "--threads") c.threads = cli.parse<int>(flag, v);
    else if (flag == "--method") r.method = v;
    else if (flag == "--workers") r.workers = cli.parse<int>(flag, v);
    else if (flag == "--tau") r.tau = cli.parse<std::int64_t>(flag, v);
    else if (flag == "--alpha") r.alpha = cli.parse<double>(flag, v);
    else if (flag == "--lambda") r.lambda = cli.parse<double>(flag, v);
    else if (flag == "--push") r.push = v;
    else if (flag == "--push-warmup") r.push_warmup = cli.parse<std::int64_t>(flag, v);
    else if (flag == "--data") c.data = v;
    else if (flag == "--out") c.out = v;
    else cli.usage("unknown flag " + flag);
  }
  if (quick) {
    c.train_size = 1000, c.run.epochs = 2, c.width = 32, c.measure_samples = 200, c.curve_test = 200;
    c.imv_directions = 2, c.eig_iters = 5, c.trace_samples = 2, c.avg_samples = 2;
  }
  if (c.has_target() != (max_epochs != 0))
    cli.usage("--target-train-loss and --max-epochs go together (the target and the cap on the epochs)");
  if (c.has_target()) {
    if (epochs_given) cli.usage("--epochs: not with --target-train-loss (--max-epochs is the cap)");
    if (!(c.target_train_loss >= 0.0) || !std::isfinite(c.target_train_loss))
      cli.usage("--target-train-loss must be a finite number >= 0");
    if (max_epochs < 1) cli.usage("--max-epochs must be >= 1");
    c.run.epochs = max_epochs;  // also under --quick
  }
  if (c.width == 0 || c.depth == 0) cli.usage("--width and --depth must be > 0");
  if (c.train_size == 0 || c.train_size > 60000) cli.usage("--train-size must be in [1, 60000]");
  if (c.measure_samples == 0 || c.measure_samples > c.train_size)
    cli.usage("--measure-samples must be in [1, --train-size] (the oracle's images must be training images)");
  if (!(c.run.weight_decay >= 0.0)) cli.usage("--weight-decay must be >= 0");
  if (c.threads < 1) cli.usage("--threads must be >= 1");
  c.run.sizes = {784};
  for (std::size_t l = 0; l < c.depth; ++l) c.run.sizes.push_back(c.width);
  c.run.sizes.push_back(10);
  return c;
}

// The fashion_mnist host backend with a fixed number of OpenBLAS threads (the machine is shared).
struct fixed_threads_backend {
  fmnist::host_backend base;
  int threads;
  void prepare(int) const { openblas_set_num_threads(threads); }
  fmnist::host_replica make_replica(const fmnist::run_options& o) const { return base.make_replica(o); }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A JSON number (null for a non-finite one, which JSON cannot spell).
std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}
std::string num_list(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}
std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') q += '\\';
    q += ch;
  }
  return q + "\"";
}

fmnist::dataset head(const fmnist::dataset& d, std::size_t n) {
  fmnist::dataset h;
  h.count = std::min(n, d.count);
  h.dim = d.dim;
  h.x.assign(d.x.begin(), d.x.begin() + static_cast<std::ptrdiff_t>(h.count * d.dim));
  h.y.assign(d.y.begin(), d.y.begin() + static_cast<std::ptrdiff_t>(h.count));
  return h;
}

std::string run(const config& c) {
  const auto t_start = std::chrono::steady_clock::now();
  const fmnist::dataset train = fmnist::load_split(c.data, "train", c.train_size);
  const fmnist::dataset test = fmnist::load_split(c.data, "t10k");
  if (train.count < c.train_size)
    throw std::invalid_argument("--train-size " + std::to_string(c.train_size) + ": the data has only " +
                                std::to_string(train.count) + " training images");
  const fmnist::dataset curve = head(test, c.curve_test);

  // Training: the example's driver, a fixed number of epochs or until the loss target; its options
  // are checked there.
  const auto t_train = std::chrono::steady_clock::now();
  const fixed_threads_backend backend{{train, curve}, c.threads};
  const int workers = c.run.method == "single" ? 1 : c.run.workers;
  fmnist::callbacks cb;
  if (c.has_target())
    cb.stop = [&c](const fmnist::run_options&, const fmnist::epoch_record& e) { return e.train_loss <= c.target_train_loss; };
  const fmnist::run_result result =
      fmnist::train(c.run, train, curve, cb, workers, backend, [](auto&& f, int m) {
        dppf::thread_group group(m);
        group.run(f);
      });
  const double train_s = seconds_since(t_train);

  // Final model on the whole training set and the full test set.
  openblas_set_num_threads(c.threads);
  fmnist::network<float> net = fmnist::make_network(c.run);
  const fmnist::eval_sums tr = net.evaluate(result.x_bar, train.x.data(), train.y.data(), train.count);
  const fmnist::eval_sums te = net.evaluate(result.x_bar, test.x.data(), test.y.data(), test.count);
  const double train_loss = tr.loss / tr.count, train_acc = tr.correct / tr.count;
  const double test_loss = te.loss / te.count, test_acc = te.correct / te.count;

  // The measures, in double, on the first measure_samples training images.
  const std::size_t s = c.measure_samples;
  std::vector<double> xs(train.x.begin(), train.x.begin() + static_cast<std::ptrdiff_t>(s * train.dim));
  const std::uint8_t* ys = train.y.data();
  std::vector<double> x(result.x_bar.begin(), result.x_bar.end());
  fmnist::mlp<double> model(c.run.sizes);
  const auto loss = [&](std::span<const double> p) { return model.loss(p, xs.data(), ys, s); };
  const auto loss_and_grad = [&](std::span<const double> p, std::span<double> g) {
    return model.loss_and_grad(p, xs.data(), ys, s, g);
  };
  generalization::mlp_hvp exact_hvp(model);
  const auto hvp = dppf::hvp_oracle{[&](std::span<const double> p, std::span<const double> v, std::span<double> out) {
    exact_hvp(p, v, out, xs.data(), ys, s);
  }};
  const dppf::host_executor ex;
  const std::uint64_t seed = c.run.seed;
  std::ostringstream m;
  auto t = std::chrono::steady_clock::now();
  const auto imv = dppf::inverse_mean_valley(
      ex, loss, x, {.directions = c.imv_directions, .delta = c.imv_delta, .tolerance = c.imv_tolerance, .seed = seed});
  m << "\"imv\": {\"value\": " << num(imv.value) << ", \"mean_width\": " << num(imv.mean_width)
    << ", \"widths\": " << num_list(imv.widths) << ", \"censored\": " << imv.censored << ", \"loss\": " << num(imv.loss)
    << ", \"oracle_calls\": " << imv.oracle_calls << ", \"wall_s\": " << num(seconds_since(t))
    << ", \"settings\": \"additive threshold f(x) + " << c.imv_delta << ", " << c.imv_directions
    << " Gaussian unit directions, one-sided, relative tolerance " << c.imv_tolerance << ", t_max 1000\"}";
  t = std::chrono::steady_clock::now();
  const auto eig = dppf::hessian_top_eigenvalue(ex, hvp, x,
                                                {.max_iters = c.eig_iters, .tol = c.eig_tol, .seed = seed});
  m << ",\n  \"hessian_top\": {\"value\": " << num(eig.value) << ", \"iterations\": " << eig.iterations
    << ", \"converged\": " << (eig.converged ? "true" : "false") << ", \"wall_s\": " << num(seconds_since(t))
    << ", \"settings\": \"power iteration on exact Hessian-vector products, at most " << c.eig_iters
    << " iterations, relative tolerance " << c.eig_tol << "\"}";
  t = std::chrono::steady_clock::now();
  const auto trace = dppf::hessian_trace(ex, hvp, x, {.samples = c.trace_samples, .seed = seed});
  m << ",\n  \"hessian_trace\": {\"value\": " << num(trace.value) << ", \"standard_error\": " << num(trace.standard_error)
    << ", \"wall_s\": " << num(seconds_since(t)) << ", \"settings\": \"Hutchinson, " << c.trace_samples
    << " Rademacher probes, exact Hessian-vector products\"}";
  t = std::chrono::steady_clock::now();
  const auto sam = dppf::sam_sharpness(ex, loss_and_grad, x, {.rho = c.sam_rho});
  m << ",\n  \"sam\": {\"value\": " << num(sam.value) << ", \"gradient_norm\": " << num(sam.gradient_norm)
    << ", \"wall_s\": " << num(seconds_since(t)) << ", \"settings\": \"f(x + rho g/|g|) - f(x), rho " << c.sam_rho
    << "\"}";
  t = std::chrono::steady_clock::now();
  const auto avg = dppf::average_sharpness(ex, loss, x, {.sigma = c.avg_sigma, .samples = c.avg_samples, .seed = seed});
  m << ",\n  \"average\": {\"value\": " << num(avg.value) << ", \"standard_error\": " << num(avg.standard_error)
    << ", \"wall_s\": " << num(seconds_since(t)) << ", \"settings\": \"E f(x + sigma n) - f(x), n ~ N(0, I), sigma "
    << c.avg_sigma << ", " << c.avg_samples << " draws\"}";
  double norm2 = 0.0;
  for (double v : x) norm2 += v * v;

  std::ostringstream j;
  const auto& o = c.run;
  j << "{\"config\": {\"lr\": " << num(o.lr) << ", \"batch\": " << o.batch << ", \"weight_decay\": " << num(o.weight_decay)
    << ", \"momentum\": " << num(o.momentum) << ", \"width\": " << c.width << ", \"depth\": " << c.depth
    << ", \"train_size\": " << c.train_size << ", \"epochs\": " << o.epochs << ", \"seed\": " << o.seed
    << ", \"method\": " << quoted(o.method) << ", \"workers\": " << workers << ", \"tau\": " << o.tau
    << ", \"alpha\": " << num(o.alpha) << ", \"lambda\": " << num(o.lambda) << ", \"push\": " << quoted(o.push)
    << ", \"push_warmup\": " << o.push_warmup
    << ", \"parameters\": " << net.size() << ", \"measure_samples\": " << s << ", \"threads\": " << c.threads << "},\n"
    << " \"command\": " << quoted(c.command) << ",\n";
  if (c.has_target()) {
    const bool reached = !result.epochs.empty() && result.last().train_loss <= c.target_train_loss;
    j << " \"stop\": {\"criterion\": \"the first epoch whose train_loss (mean cross-entropy over the whole "
         "training set, after the epoch) is <= target_train_loss, at most max_epochs\", \"target_train_loss\": "
      << num(c.target_train_loss) << ", \"max_epochs\": " << o.epochs << ", \"epochs_trained\": " << result.epochs.size()
      << ", \"reached\": " << (reached ? "true" : "false") << "},\n";
  }
  j
    << " \"train_acc\": " << num(train_acc) << ", \"test_acc\": " << num(test_acc) << ", \"train_loss\": "
    << num(train_loss) << ", \"test_loss\": " << num(test_loss) << ",\n"
    << " \"acc_gap\": " << num(train_acc - test_acc) << ", \"loss_gap\": " << num(test_loss - train_loss)
    << ", \"param_norm\": " << num(std::sqrt(norm2)) << ", \"steps\": " << result.steps
    << ", \"syncs\": " << result.syncs << ", \"relaxed_mv\": " << num(result.last().relaxed_mv) << ",\n"
    << " \"measures\": {" << m.str() << "},\n"
    << " \"curve\": [";
  for (std::size_t e = 0; e < result.epochs.size(); ++e) {
    const auto& r = result.epochs[e];
    j << (e ? ", " : "") << "{\"epoch\": " << r.epoch << ", \"train_loss\": " << num(r.train_loss) << ", \"train_acc\": "
      << num(r.train_acc) << ", \"test_loss_head\": " << num(r.test_loss) << ", \"test_acc_head\": " << num(r.test_acc)
      << ", \"relaxed_mv\": " << num(r.relaxed_mv) << "}";
  }
  j << "],\n \"wall_s\": {\"train\": " << num(train_s) << ", \"total\": " << num(seconds_since(t_start)) << "}}\n";
  return j.str();
}

}  // namespace

int main(int argc, char** argv) {
  const config c = parse_args(argc, argv);
  std::string json;
  try {
    json = run(c);
  } catch (const std::exception& e) {
    std::cerr << "generalization: " << e.what() << "\n";
    return 1;
  }
  if (c.out.empty()) {
    std::cout << json;
    return 0;
  }
  const std::string tmp = c.out + ".tmp";
  {
    std::ofstream f(tmp);
    f << json;
    if (!f) {
      std::cerr << "generalization: cannot write " << tmp << "\n";
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), c.out.c_str()) != 0) {
    std::cerr << "generalization: cannot rename " << tmp << " to " << c.out << "\n";
    return 1;
  }
  return 0;
}
