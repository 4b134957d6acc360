// examples/libtorch: dppf inside a LibTorch trainer. A torch::nn model (a small ResNet with
// BatchNorm, or an MLP) is trained on Fashion-MNIST by M workers; LibTorch computes the loss and
// its gradients, dppf does the optimizer step (exactly torch.optim's SGD or AdamW) and every tau
// steps the sync of the chosen method, on the model's own tensors (flat_parameters.hpp). Every
// method of a comma-separated --method list runs from the same seed. Progress goes to stderr;
// stdout carries the markdown table, or with --json only JSON lines (one per epoch, one per method
// and one with its step timing).

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "fashion_mnist/run_flags.hpp"
#include "torch_train.hpp"

#ifdef TORCH_EXAMPLE_WITH_MPI
#include <dppf/communicators/mpi.hpp>
#endif

#ifdef TORCH_EXAMPLE_WITH_GLOO
#include <dppf/communicators/gloo.hpp>
#endif

#ifndef TORCH_EXAMPLE_DATA_DIR
#define TORCH_EXAMPLE_DATA_DIR "/usr/share/datasets/fashion-mnist"
#endif

namespace {

struct config {
  torch_example::options o;
  std::vector<std::string> methods{"dppf", "local_sgd", "ddp"};
  std::string comm = "threads";
  std::string data = TORCH_EXAMPLE_DATA_DIR;
  std::size_t train_limit = 0, test_limit = 0;
  int rank = -1, size = 0;  // --comm gloo
  std::string store;        // --comm gloo: the rendezvous directory
  bool quick = false, json = false;
};

const char* usage_text =
    "usage: libtorch_fmnist [--model resnet|mlp] [--width W] [--hidden H1,H2,...] [--method LIST]\n"
    "                       [--optimizer sgd|adamw] [--workers M] [--tau T] [--alpha A] [--lambda L]\n"
    "                       [--lr LR] [--momentum MU] [--weight-decay WD] [--outer-lr LR] [--outer-momentum MU]\n"
    "                       [--push constant|inverse_mv] [--push-warmup N] [--epochs E] [--batch B] [--seed S]\n"
    "                       [--comm threads|mpi|gloo] [--quick] [--json] [--data DIR] [--train-limit N] [--test-limit N]\n"
    "  --model     resnet (default): 3x3 stem of W channels (--width, default 16) with BatchNorm, residual\n"
    "              blocks of W, 2W, 4W channels (28 -> 14 -> 7), average pool, linear; or mlp: 784-H1-...-10\n"
    "              (--hidden, default 512,512)\n"
    "  --method    comma-separated list of dppf, local_sgd, elastic, leader, grawa, diloco, ddp, single\n"
    "              (default dppf,local_sgd,ddp); each runs from the same seed\n"
    "  --optimizer the local optimizer, dppf's sgd (default) or adamw (torch.optim's, exactly)\n"
    "  defaults:   --workers 4 --tau 8 --alpha 0.1 --lambda 0.05 --lr 0.05 --momentum 0.9 --weight-decay 0\n"
    "              --epochs 4 --batch 64 (per worker) --seed 1\n"
    "  --quick     1 epoch on the first 4000 training and 2000 test images\n"
    "  --json      stdout carries only JSON lines\n"
    "  --comm mpi  one worker per MPI process (mpiexec -n M libtorch_fmnist --comm mpi ...; --workers is\n"
    "              ignored); threads (default) runs the M workers as threads of this process\n"
    "  --comm gloo --rank R --size M --store DIR  one worker per process over Gloo's TCP transport, the\n"
    "              processes meeting in DIR (a directory all of them see; empty, one per run)\n";

const example_cli::program cli{"libtorch_fmnist", usage_text};

using example_cli::split;

config parse_args(int argc, char** argv) {
  config c;
  bool epochs_given = false;
  auto& r = c.o.run;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") cli.help();
    if (flag == "--quick" || flag == "--json") {
      (flag == "--quick" ? c.quick : c.json) = true;
      continue;
    }
    if (i + 1 >= argc) cli.usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--method") c.methods = split(value);
    else if (flag == "--model") c.o.model.name = value;
    else if (flag == "--width") c.o.model.width = cli.parse<std::int64_t>(flag, value);
    else if (flag == "--optimizer") c.o.optimizer = value;
    else if (fmnist::parse_run_flag(cli, flag, value, r)) epochs_given = epochs_given || flag == "--epochs";
    else if (flag == "--comm") c.comm = value;
    else if (flag == "--rank") c.rank = cli.parse<int>(flag, value);
    else if (flag == "--size") c.size = cli.parse<int>(flag, value);
    else if (flag == "--store") c.store = value;
    else if (flag == "--data") c.data = value;
    else if (flag == "--train-limit") c.train_limit = cli.parse<std::size_t>(flag, value);
    else if (flag == "--test-limit") c.test_limit = cli.parse<std::size_t>(flag, value);
    else if (flag == "--hidden") {
      c.o.model.hidden.clear();
      for (const auto& h : split(value)) c.o.model.hidden.push_back(cli.parse<std::int64_t>(flag, h));
    } else cli.usage("unknown flag " + flag);
  }
  r.model = c.o.model.name;
  r.sharpness_samples = 0;  // the estimators need the hand-written models; the table says n/a
  if (c.methods.empty()) cli.usage("--method needs at least one method");
#ifndef TORCH_EXAMPLE_WITH_MPI
  if (c.comm == "mpi") cli.usage("--comm mpi: this build has no MPI (dppf::mpi was not found when it was configured)");
#endif
#ifndef TORCH_EXAMPLE_WITH_GLOO
  if (c.comm == "gloo") cli.usage("--comm gloo: this build has no Gloo (dppf::gloo was not found when it was configured)");
#endif
  if (c.comm != "threads" && c.comm != "mpi" && c.comm != "gloo")
    cli.usage("--comm: unknown engine '" + c.comm + "' (threads, mpi or gloo)");
  if (c.comm == "gloo" && (c.rank < 0 || c.size < 1 || c.rank >= c.size || c.store.empty()))
    cli.usage("--comm gloo needs --rank R --size M (0 <= R < M) and --store DIR");
  if (c.quick) {
    if (!epochs_given) r.epochs = 1;
    if (c.train_limit == 0) c.train_limit = 4000;
    if (c.test_limit == 0) c.test_limit = 2000;
  }
  return c;
}

// A one-line bar on a terminal, a log line per quarter epoch otherwise.
struct progress_display {
  bool tty = isatty(STDERR_FILENO) != 0;
  std::int64_t last_quarter = -1;
  std::chrono::steady_clock::time_point last_draw{};

  void operator()(const fmnist::progress_info& p) {
    const auto now = std::chrono::steady_clock::now();
    if (tty) {
      if (p.step != p.steps_per_epoch && now - last_draw < std::chrono::milliseconds(200)) return;
      last_draw = now;
      std::fprintf(stderr, "\r%-9s epoch %d/%d step %lld/%lld  loss %.4f  %.0f samples/s ", p.method.c_str(), p.epoch,
                   p.epochs, static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch), p.loss,
                   p.samples_per_s);
      if (p.step == p.steps_per_epoch) std::fprintf(stderr, "\n");
    } else {
      const std::int64_t quarter = 4 * p.step / p.steps_per_epoch;
      if (quarter == last_quarter) return;
      last_quarter = p.step == p.steps_per_epoch ? -1 : quarter;
      std::fprintf(stderr, "%s epoch %d/%d step %lld/%lld loss %.4f samples/s %.0f\n", p.method.c_str(), p.epoch,
                   p.epochs, static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch), p.loss,
                   p.samples_per_s);
    }
    std::fflush(stderr);
  }
};

std::string timing_json(const torch_example::result& r) {
  const auto& t = r.timing;
  const auto ms = [](double s, std::int64_t n) { return fmnist::number(n ? 1e3 * s / static_cast<double>(n) : 0.0); };
  const double total = t.forward_backward + t.local_step + t.sync_step;
  std::ostringstream s;
  s << "{\"method\": \"" << r.run.options.method << "\", \"forward_backward_ms\": "
    << ms(t.forward_backward, t.local_steps + t.sync_steps) << ", \"local_step_ms\": " << ms(t.local_step, t.local_steps)
    << ", \"sync_step_ms\": " << ms(t.sync_step, t.sync_steps) << ", \"local_steps\": " << t.local_steps
    << ", \"sync_steps\": " << t.sync_steps << ", \"optimizer_and_sync_share\": "
    << fmnist::number(total > 0 ? (t.local_step + t.sync_step) / total : 0.0) << "}";
  return s.str();
}

// Runs every method of the list; launch(f, m) as for torch_example::train; rank 0 prints.
template <class Launch>
void run_all(const config& c, int workers, int rank, Launch&& launch) {
  for (const auto& m : c.methods) {
    torch_example::options o = c.o;
    o.run.method = m;
    torch_example::validate(o, 60000);  // flag errors before the data is read
  }
  const fmnist::dataset train = fmnist::load_split(c.data, "train", c.train_limit);
  const fmnist::dataset test = fmnist::load_split(c.data, "t10k", c.test_limit);
  if (rank == 0)
    std::fprintf(stderr, "libtorch_fmnist: %zu training and %zu test images from %s, %s, %s, %d workers (%s)\n",
                 train.count, test.count, c.data.c_str(), c.o.model.name.c_str(), c.o.optimizer.c_str(), workers,
                 c.comm.c_str());
  progress_display bar;
  fmnist::callbacks cb;
  cb.progress = [&](const fmnist::progress_info& p) { bar(p); };
  cb.epoch = [&](const fmnist::run_options& o, const fmnist::epoch_record& e) {
    if (c.json)
      std::cout << fmnist::epoch_json(o, e) << std::endl;
    else
      std::fprintf(stderr, "%s epoch %d: x_bar train acc %.4f loss %.4f | test acc %.4f loss %.4f | relaxed MV %.4g | %.1f s\n",
                   o.method.c_str(), e.epoch, e.train_acc, e.train_loss, e.test_acc, e.test_loss, e.relaxed_mv, e.wall_s);
  };
  std::vector<fmnist::run_result> results;
  for (const auto& m : c.methods) {
    torch_example::options o = c.o;
    o.run.method = m;
    o.run.workers = workers;
    const torch_example::result r = torch_example::train(o, train, test, cb, m == "single" ? 1 : workers, launch);
    results.push_back(r.run);
    if (rank != 0) continue;
    if (c.json)
      std::cout << fmnist::result_json(r.run) << "\n" << timing_json(r) << std::endl;
    else
      std::fprintf(stderr, "%s worker 0 per step: forward+backward %.2f ms, dppf step %.3f ms, step with sync %.3f ms\n",
                   m.c_str(), 1e3 * r.timing.forward_backward / static_cast<double>(r.timing.local_steps + r.timing.sync_steps),
                   r.timing.local_steps ? 1e3 * r.timing.local_step / static_cast<double>(r.timing.local_steps) : 0.0,
                   r.timing.sync_steps ? 1e3 * r.timing.sync_step / static_cast<double>(r.timing.sync_steps) : 0.0);
  }
  if (rank == 0 && !c.json) std::cout << "\n" << fmnist::markdown_table(results);
}

}  // namespace

int main(int argc, char** argv) {
  const config c = parse_args(argc, argv);
  try {
    if (c.comm == "threads") {
      run_all(c, c.o.run.workers, 0, [](auto&& f, int m) {
        dppf::thread_group group(m);
        group.run(f);
      });
      return 0;
    }
#ifdef TORCH_EXAMPLE_WITH_GLOO
    if (c.comm == "gloo") {
      dppf::gloo_store store;
      store.file_dir = c.store;
      dppf::gloo_communicator comm{store, c.rank, c.size};
      for (const auto& m : c.methods)
        if (m == "single" && c.size != 1) cli.usage("--method single runs one worker: with --comm gloo, --size 1");
      run_all(c, c.size, c.rank, [&](auto&& f, int) { f(comm); });
      return 0;
    }
#endif
#ifdef TORCH_EXAMPLE_WITH_MPI
    dppf::mpi_environment env(argc, argv);  // one worker per MPI process: M is the number of ranks
    dppf::mpi_communicator comm{MPI_COMM_WORLD};
    for (const auto& m : c.methods)
      if (m == "single" && comm.size() != 1) cli.usage("--method single runs one worker: with --comm mpi, start 1 rank");
    try {
      run_all(c, comm.size(), comm.rank(), [&](auto&& f, int) { f(comm); });
    } catch (const std::exception& e) {
      std::cerr << "libtorch_fmnist: error on rank " << comm.rank() << ": " << e.what() << "\n";
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
#endif
  } catch (const std::exception& e) {
    std::cerr << "libtorch_fmnist: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
