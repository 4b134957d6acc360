// examples/fashion_mnist: DPPF against its peers on real data. An MLP (784-512-512-10, ReLU,
// softmax cross-entropy, OpenBLAS sgemm), or with --model cnn a small CNN, is trained on
// Fashion-MNIST by M workers, each on its own shard, with the dppf trainer doing the local SGD
// steps and the sync of the chosen method. Every method of a comma-separated --method list runs
// from the same seed. Progress goes to stderr (a bar on a terminal, plain lines otherwise); stdout
// carries the markdown table, or with --json only JSON lines (one per epoch, then one per method).

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "idx.hpp"
#include "report.hpp"
#include "run_flags.hpp"
#include "train.hpp"

#ifdef FMNIST_WITH_MPI
#include <dppf/communicators/mpi.hpp>
#endif
#ifdef FMNIST_WITH_GLOO
#include "common/gloo_env.hpp"
#include "elastic_run.hpp"
#endif
#ifdef FMNIST_WITH_CUDA
#include <dppf/communicators/device_group.cuh>

#include "backend_cuda.cuh"
#endif
#if defined(FMNIST_WITH_NCCL) && defined(FMNIST_WITH_MPI)
#include <dppf/communicators/nccl_mpi.cuh>
#endif

#ifndef FMNIST_DEFAULT_DATA_DIR
#define FMNIST_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#endif

namespace {

struct config {
  fmnist::run_options run;
  std::vector<std::string> methods{"dppf", "local_sgd", "ddp"};
  std::string comm = "threads";
  std::string device = "cpu";
  std::string data = FMNIST_DEFAULT_DATA_DIR;
  std::string svg, replot;
  std::size_t train_limit = 0, test_limit = 0;
  bool quick = false, json = false;
  bool elastic = false, sync_log = false;  ///< --elastic (examples/fashion_mnist/elastic_run.hpp), --sync-log
  int min_workers = 0;
  std::string lost_shard = "drop";
  std::map<std::string, std::string> gloo;  ///< --rank, --store, ... as given (examples/common/gloo_env.hpp)
};

const char* usage_text =
    "usage: fashion_mnist [--method LIST] [--workers M] [--tau T] [--alpha A] [--lambda L] [--lr LR]\n"
    "                     [--momentum MU] [--weight-decay WD] [--outer-lr LR] [--outer-momentum MU]\n"
    "                     [--epochs E] [--batch B] [--seed S]\n"
    "                     [--device cpu|cuda] [--comm threads|mpi|gloo|nccl] [--quick] [--json] [--svg PATH] [--data DIR]\n"
    "                     [--train-limit N] [--test-limit N] [--hidden H1,H2,...] [--sharpness-samples N]\n"
    "                     [--model mlp|cnn] [--channels C1,C2,...] [--push constant|inverse_mv] [--push-warmup N]\n"
    "                     [--checkpoint DIR [--checkpoint-every N] [--resume]] [--bucket-mb MB]\n"
    "                     [--overlap-steps D] [--sync-precision full|bf16|fp16] [--no-sync]\n"
    "                     [--rank R --world-size N --store redis:HOST:PORT|file:DIR [--prefix P] [--gloo-timeout MS]\n"
    "                      [--gloo-addr ADDR | --gloo-iface IFACE]]   (with --comm gloo)\n"
    "                     [--elastic [--min-workers K] [--lost-shard drop|redeal] [--sync-log]]   (with --comm gloo)\n"
    "       fashion_mnist --replot RUN.jsonl --svg PATH   (draws the SVG of an earlier --json run)\n"
    "  --method    comma-separated list of dppf, local_sgd, elastic, leader, grawa, diloco, ddp, single\n"
    "              (default dppf,local_sgd,ddp); each runs from the same seed\n"
    "  defaults:   --workers 4 --tau 8 --alpha 0.1 --lambda 0.05 --lr 0.05 --momentum 0.9 --epochs 4\n"
    "              --batch 64 (per worker) --seed 1 --hidden 512,512\n"
    "  --model     mlp (default) or cnn: (5x5 conv, ReLU, 2x2 max pool) per --channels entry (default 8,16),\n"
    "              then a head with --hidden layers (default 64 for the cnn)\n"
    "  --push      DPPF's push: constant (lambda, default) or inverse_mv (lambda / (M MV^2));\n"
    "              --push-warmup N: no push for the first N steps\n"
    "  --quick     1 epoch on the first 12000 training images (seconds on 2 cores)\n"
    "  --json      stdout carries only JSON lines: one per epoch, then one per method\n"
    "  --sharpness-samples N  IMV and Hessian top eigenvalue of x_bar on the first N training images\n"
    "              (default 1024; 0 skips them and reports null)\n"
    "  --comm mpi  one worker per MPI process (mpirun -np M fashion_mnist --comm mpi ...; --workers is\n"
    "              ignored); threads (default) runs the M workers as threads of this process\n"
    "  --comm gloo one worker per process, M of them meeting in a store (Gloo over TCP; --workers is ignored).\n"
    "              Each flag falls back to an environment variable, as PyTorch's RANK / WORLD_SIZE do:\n"
    "              --rank RANK, --world-size WORLD_SIZE, --store DPPF_GLOO_STORE (redis:HOST:PORT of a\n"
    "              redis-server, or file:DIR on a shared file system), --prefix DPPF_GLOO_PREFIX (one per run,\n"
    "              default dppf), --gloo-timeout DPPF_GLOO_TIMEOUT_MS (every operation; default 30000),\n"
    "              --gloo-addr DPPF_GLOO_ADDR (the address to listen on) or --gloo-iface DPPF_GLOO_IFACE\n"
    "              (scripts/cluster.sh gloo sets RANK, WORLD_SIZE and DPPF_GLOO_ADDR)\n"
    "              With mpi and gloo the ranks first check that they were given the same options.\n"
    "  --bucket-mb MB  ddp: the gradient average in buckets of MB MiB (default 25, the first 1 MiB), each\n"
    "              started during the backward pass once its gradients are final, as PyTorch's DDP does\n"
    "              (CPU, engines with an asynchronous all-reduce); 0: one all-reduce after the backward pass.\n"
    "              With threads both give the same numbers\n"
    "  --overlap-steps D  the sync overlaps the next D local steps (1 <= D <= tau; default 0: blocking):\n"
    "              each worker starts the all-reduce of a snapshot and applies the rule's correction D steps\n"
    "              later, keeping its progress since (dppf, local_sgd, elastic, diloco; not ddp, leader, grawa)\n"
    "  --sync-precision P  the sync's mean travels as full (default: the fp32 all-reduce), bf16 or fp16 (16-bit\n"
    "              differences from the last mean, with error feedback; same methods; with --elastic the first sync\n"
    "              after a change of members is full precision)\n"
    "  --no-sync   the compute-only floor: the same workers and steps with every sync removed, to time against\n"
    "              (train_s); the workers never meet, so the reported accuracy means nothing (local methods)\n"
    "  --checkpoint DIR  every worker saves DIR/<method>.step<K>.rank<R>.safetensors (atomically; its two\n"
    "              newest are kept) every --checkpoint-every N steps (a multiple of --tau; default 0: at the\n"
    "              end of every epoch); --resume continues each method from the newest step every worker\n"
    "              has (a method without checkpoints starts afresh). On the CPU only.\n"
    "  --device cuda  the MLP on the GPU (cuBLAS), data and parameters resident there; with --comm\n"
    "              threads the M workers share GPU 0 (dppf::device_group)\n"
    "  --comm nccl one worker per MPI process and GPU, parameters averaged by NCCL (implies --device cuda)\n"
    "  --elastic   with --comm gloo: the workers form an elastic group (dppf::elastic_trainer): a lost worker\n"
    "              does not end the run, a new process is let in at a sync. --world-size workers found it\n"
    "              (RANK is not needed: ids come from the store); every membership change is printed with\n"
    "              the step, the generation and its members; the table says how many workers finished.\n"
    "              --min-workers K: the smallest group that may go on (default: a strict majority);\n"
    "              --lost-shard drop (default: a lost worker's shard is no longer trained on) or redeal\n"
    "              (each step's images are split over the workers there); --sync-log: one line per sync.\n"
    "              Every method but single (ddp: each step's gradient average is committed, unbucketed;\n"
    "              default dppf,local_sgd). --sync-precision bf16|fp16 and --overlap-steps D below --tau.\n"
    "              --checkpoint DIR: one file per step for the group, DIR/<method>.step<K>.elastic.safetensors\n"
    "              (the mean parameters, rank 0's optimizer state, the generation and member count); --resume\n"
    "              loads it on every worker, however many there are now.\n";

const example_cli::program cli{"fashion_mnist", usage_text};

using example_cli::split;

config parse_args(int argc, char** argv) {
  config c;
  bool epochs_given = false, hidden_given = false, methods_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") cli.help();
    if (flag == "--quick") {
      c.quick = true;
      continue;
    }
    if (flag == "--json") {
      c.json = true;
      continue;
    }
    if (flag == "--resume") {
      c.run.resume = true;
      continue;
    }
    if (flag == "--no-sync") {
      c.run.no_sync = true;
      continue;
    }
    if (flag == "--elastic" || flag == "--sync-log") {
      (flag == "--elastic" ? c.elastic : c.sync_log) = true;
      continue;
    }
    if (i + 1 >= argc) cli.usage(flag + " needs a value");
    const std::string value = argv[++i];
    auto& r = c.run;
    if (flag == "--method") {
      c.methods = split(value);
      methods_given = true;
    } else if (fmnist::parse_run_flag(cli, flag, value, r)) epochs_given = epochs_given || flag == "--epochs";
    else if (flag == "--comm") c.comm = value;
    else if (flag == "--device") c.device = value;
    else if (flag == "--svg") c.svg = value;
    else if (flag == "--data") c.data = value;
    else if (flag == "--replot") c.replot = value;
    else if (flag == "--sharpness-samples") r.sharpness_samples = cli.parse<std::size_t>(flag, value);
    else if (flag == "--train-limit") c.train_limit = cli.parse<std::size_t>(flag, value);
    else if (flag == "--test-limit") c.test_limit = cli.parse<std::size_t>(flag, value);
    else if (flag == "--model") r.model = value;
    else if (flag == "--min-workers") c.min_workers = cli.parse<int>(flag, value);
    else if (flag == "--lost-shard") c.lost_shard = value;
    else if (flag == "--checkpoint") r.checkpoint_dir = value;
    else if (flag == "--checkpoint-every") r.checkpoint_every = cli.parse<std::int64_t>(flag, value);
    else if (flag == "--bucket-mb") r.bucket_mb = cli.parse<double>(flag, value);
    else if (flag == "--rank" || flag == "--world-size" || flag == "--store" || flag == "--prefix" ||
             flag == "--gloo-timeout" || flag == "--gloo-addr" || flag == "--gloo-iface")
      c.gloo[flag] = value;
    else if (flag == "--channels") {
      r.channels.clear();
      for (const auto& ch : split(value)) r.channels.push_back(cli.parse<std::size_t>(flag, ch));
    } else if (flag == "--hidden") {
      hidden_given = true;
      r.sizes = {784};
      for (const auto& h : split(value)) r.sizes.push_back(cli.parse<std::size_t>(flag, h));
      r.sizes.push_back(10);
    } else cli.usage("unknown flag " + flag);
  }
  if (c.run.model == "cnn" && !hidden_given) c.run.sizes = {784, 64, 10};
  if (c.methods.empty()) cli.usage("--method needs at least one method");
  if (c.device != "cpu" && c.device != "cuda") cli.usage("--device: unknown device '" + c.device + "' (cpu or cuda)");
#if !defined(FMNIST_WITH_NCCL) || !defined(FMNIST_WITH_MPI)
  if (c.comm == "nccl")
    cli.usage("--comm nccl: this build has no CUDA, NCCL or MPI (all are needed: MPI starts one rank per GPU)");
#endif
  if (c.comm == "nccl") c.device = "cuda";
#ifndef FMNIST_WITH_CUDA
  if (c.device == "cuda") cli.usage("--device cuda: this build has no CUDA (configure with -DDPPF_ENABLE_CUDA=ON)");
#endif
#ifndef FMNIST_WITH_MPI
  if (c.comm == "mpi") cli.usage("--comm mpi: this build has no MPI (dppf::mpi_communicator was not found when it was configured)");
#endif
#ifndef FMNIST_WITH_GLOO
  if (c.comm == "gloo") cli.usage("--comm gloo: this build has no Gloo (dppf::gloo was not found when it was configured)");
#endif
  if (c.comm != "threads" && c.comm != "mpi" && c.comm != "gloo" && c.comm != "nccl")
    cli.usage("--comm: unknown engine '" + c.comm + "' (threads, mpi, gloo or nccl)");
  if ((c.comm == "mpi" || c.comm == "gloo") && c.device == "cuda")
    cli.usage("--comm " + c.comm + " works on the CPU; on GPUs use --comm nccl");
  if (!c.gloo.empty() && c.comm != "gloo") cli.usage(c.gloo.begin()->first + " is for --comm gloo");
  if (c.elastic && c.comm != "gloo") cli.usage("--elastic needs --comm gloo");
  if (!c.elastic && (c.min_workers != 0 || c.lost_shard != "drop" || c.sync_log))
    cli.usage("--min-workers, --lost-shard and --sync-log are for --elastic");
  if (c.elastic && !methods_given) c.methods = {"dppf", "local_sgd"};  // the default list less ddp
#ifdef FMNIST_WITH_GLOO
  if (c.elastic)
    for (const auto& m : c.methods) {
      fmnist::run_options o = c.run;
      o.method = m;
      fmnist::elastic_settings s;
      s.founders = 1 << 30;  // known at the start (--world-size); checked again there
      s.min_workers = c.min_workers;
      s.lost_shard = c.lost_shard;
      try {
        fmnist::validate_elastic(s, o);
      } catch (const std::invalid_argument& e) {
        cli.usage(e.what());
      }
    }
#endif
  if (c.elastic && c.run.overlap_steps >= c.run.tau)  // (elastic_trainer's rule, said in the flags' terms)
    cli.usage("--elastic: --overlap-steps must be below --tau (a newcomer is let in between a sync's end and the next sync's start)");
  for (const auto& m : c.methods) {  // the sync flags against every method, before any trains
    fmnist::run_options o = c.run;
    o.method = m;
    try {
      if (std::find(fmnist::method_names().begin(), fmnist::method_names().end(), m) != fmnist::method_names().end())
        fmnist::check_trainer_options(o);
    } catch (const std::invalid_argument& e) {
      cli.usage(e.what());
    }
  }
  if (c.run.resume && c.run.checkpoint_dir.empty()) cli.usage("--resume needs --checkpoint DIR");
  if (!c.run.checkpoint_dir.empty() && c.device != "cpu") cli.usage("--checkpoint: on the CPU only (--device cpu)");
  if (c.run.checkpoint_every < 0) cli.usage("--checkpoint-every: must be >= 0");
  for (const auto& m : c.methods)
    if (c.run.checkpoint_every > 0 && m != "ddp" && m != "single" && c.run.checkpoint_every % c.run.tau != 0)
      cli.usage("--checkpoint-every " + std::to_string(c.run.checkpoint_every) + " is not a multiple of --tau " +
            std::to_string(c.run.tau) + " (" + m + "): checkpoints come right after a sync");
  if (c.device == "cuda" && c.run.model != "mlp") cli.usage("--device cuda: only --model mlp runs on the GPU");
  if (c.quick) {
    if (!epochs_given) c.run.epochs = 1;
    if (c.train_limit == 0) c.train_limit = 12000;
  }
  return c;
}

// A one-line bar on a terminal (redrawn a few times a second), a log line per quarter epoch otherwise.
struct progress_display {
  bool tty = isatty(STDERR_FILENO) != 0;
  std::int64_t last_quarter = -1;
  std::chrono::steady_clock::time_point last_draw{};

  void operator()(const fmnist::progress_info& p) {
    if (tty) {
      const auto now = std::chrono::steady_clock::now();
      if (p.step != p.steps_per_epoch && now - last_draw < std::chrono::milliseconds(200)) return;
      last_draw = now;
      const int width = 30;
      const int filled = static_cast<int>(width * p.step / p.steps_per_epoch);
      std::fprintf(stderr, "\r%-9s epoch %d/%d [%s%s] step %lld/%lld  loss %.4f  %.0f samples/s ", p.method.c_str(),
                   p.epoch, p.epochs, std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(p.step),
                   static_cast<long long>(p.steps_per_epoch), p.loss, p.samples_per_s);
      if (p.step == p.steps_per_epoch) std::fprintf(stderr, "\n");
    } else {
      const std::int64_t quarter = 4 * p.step / p.steps_per_epoch;
      if (quarter == last_quarter && p.step != 1) return;
      last_quarter = quarter;
      if (p.step == 1 && quarter != 0) last_quarter = -1;
      std::fprintf(stderr, "%s epoch %d/%d step %lld/%lld loss %.4f samples/s %.0f\n", p.method.c_str(), p.epoch,
                   p.epochs, static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch), p.loss,
                   p.samples_per_s);
    }
    std::fflush(stderr);
  }
};

// The training and test sets, once every method's flags were checked (before the data is read).
std::pair<fmnist::dataset, fmnist::dataset> load_data(const config& c, int workers, bool announce) {
  for (const auto& m : c.methods) {
    fmnist::run_options o = c.run;
    o.method = m;
    fmnist::validate(o, 60000);  // flag errors before the data is read; sizes checked again below
  }
  std::pair<fmnist::dataset, fmnist::dataset> data{fmnist::load_split(c.data, "train", c.train_limit),
                                                   fmnist::load_split(c.data, "t10k", c.test_limit)};
  if (announce)
    std::fprintf(stderr, "fashion_mnist: %zu training and %zu test images from %s, %s, %d workers (%s%s)\n",
                 data.first.count, data.second.count, c.data.c_str(), c.run.model.c_str(), workers, c.comm.c_str(),
                 c.elastic ? ", elastic" : "");
  return data;
}

// Progress on stderr (bar), epochs on stderr or as JSON lines on stdout, checkpoint notes.
fmnist::callbacks make_callbacks(const config& c, progress_display& bar) {
  fmnist::callbacks cb;
  cb.checkpoint = [](const fmnist::run_options& o, std::int64_t step, bool resumed) {
    std::fprintf(stderr, "fashion_mnist: %s: %s the checkpoints of step %lld in %s\n", o.method.c_str(),
                 resumed ? "resumed from" : "saved", static_cast<long long>(step), o.checkpoint_dir.c_str());
  };
  cb.progress = [&bar](const fmnist::progress_info& p) { bar(p); };
  cb.epoch = [&c](const fmnist::run_options& o, const fmnist::epoch_record& e) {
    if (c.json) {
      std::cout << fmnist::epoch_json(o, e) << std::endl;
    } else {
      std::fprintf(stderr, "%s epoch %d: x_bar train acc %.4f loss %.4f | test acc %.4f loss %.4f | relaxed MV %.4g | %.1f s\n",
                   o.method.c_str(), e.epoch, e.train_acc, e.train_loss, e.test_acc, e.test_loss, e.relaxed_mv, e.wall_s);
    }
  };
  return cb;
}

// The closing table (unless --json) and the SVG; with `elastic`, the elastic table below.
void print_results(const config& c, const std::vector<fmnist::run_result>& results,
                   const std::vector<fmnist::elastic_summary>& elastic = {}) {
  if (!c.json) {
    std::cout << "\n" << fmnist::markdown_table(results);
    if (!elastic.empty()) std::cout << fmnist::elastic_table(results, elastic);
    if (!results.front().imv)
      std::cout << "\nIMV and Hessian top eigenvalue: n/a (--sharpness-samples 0).\n";
  }
  if (!c.svg.empty()) {
    std::ofstream f(c.svg);
    f << fmnist::draw_svg(results);
    if (!f) throw std::runtime_error("--svg: cannot write " + c.svg);
  }
}

// Runs every method of the list. launch/workers as for fmnist::train, the backend made by
// make_backend(train, test); rank 0 prints.
template <class MakeBackend, class Launch>
void run_all(const config& c, int workers, int rank, MakeBackend&& make_backend, Launch&& launch) {
  const auto [train, test] = load_data(c, workers, rank == 0);
  progress_display bar;
  const fmnist::callbacks cb = make_callbacks(c, bar);
  const auto backend = make_backend(train, test);
  std::vector<fmnist::run_result> results;
  for (const auto& m : c.methods) {
    fmnist::run_options o = c.run;
    o.method = m;
    o.workers = workers;
    results.push_back(fmnist::train(o, train, test, cb, m == "single" ? 1 : workers, backend, launch));
    if (c.json && rank == 0) std::cout << fmnist::result_json(results.back()) << std::endl;
  }
  if (rank == 0) print_results(c, results);
}

#if defined(FMNIST_WITH_MPI) || defined(FMNIST_WITH_GLOO)
// What every rank of a distributed run must have been given alike (not --workers, --data or output paths).
std::string run_text(const config& c) {
  fmnist::run_options o = c.run;
  o.method.clear();
  for (const auto& m : c.methods) o.method += (o.method.empty() ? "" : ",") + m;
  return fmnist::options_text(o) + "train-limit=" + std::to_string(c.train_limit) + "\ntest-limit=" +
         std::to_string(c.test_limit) + "\ncheckpoint=" + (c.run.checkpoint_dir.empty() ? "no" : "yes") +
         "\nresume=" + (c.run.resume ? "yes" : "no") + "\nbucket-mb=" + std::to_string(c.run.bucket_mb) + "\n";
}

// Collective, before anything else: every rank learns rank 0's options (one byte per double, since
// every communicator moves doubles) and which ranks differ, and every rank raises on a mismatch,
// so a rank given another --tau or --method fails at once instead of deadlocking or mixing runs.
template <class Comm>
void agree_on_options(Comm& comm, const std::string& mine) {
  const std::size_t n = static_cast<std::size_t>(comm.all_gather(static_cast<double>(mine.size()))[0]);
  std::vector<double> bytes(n);
  if (comm.rank() == 0)
    for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(mine[i]);
  comm.broadcast(bytes, 0);
  std::string first(n, ' ');
  for (std::size_t i = 0; i < n; ++i) first[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
  const std::string diff = fmnist::first_difference(mine, first, "on this rank (" + std::to_string(comm.rank()) + ")", "on rank 0");
  const std::vector<double> differs = comm.all_gather(diff.empty() ? 0.0 : 1.0);
  std::string ranks;
  for (std::size_t r = 0; r < differs.size(); ++r)
    if (differs[r] != 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  if (ranks.empty()) return;
  throw std::invalid_argument("the ranks were given different options: " +
                              (diff.empty() ? "rank(s) " + ranks + " differ from rank 0 (each says how)" : diff));
}

#endif

#ifdef FMNIST_WITH_GLOO
// --elastic: each method trained by this process as a worker of an elastic group of its own
// (prefix <prefix>/<method>); whoever is rank 0 at the end of the last method prints.
int run_elastic(const config& c, const example_gloo::launch& l) {
  try {
    const auto [train, test] = load_data(c, l.size, true);
    progress_display bar;
    const fmnist::callbacks cb = make_callbacks(c, bar);
    std::vector<fmnist::run_result> results;
    std::vector<fmnist::elastic_summary> summaries;
    bool printer = false;
    for (const auto& m : c.methods) {
      fmnist::run_options o = c.run;
      o.method = m;
      fmnist::elastic_settings s{.founders = l.size, .min_workers = c.min_workers, .lost_shard = c.lost_shard,
                                 .sync_log = c.sync_log, .store = l.store, .gloo = l.options,
                                 .agree = [&](dppf::gloo_communicator& comm) { agree_on_options(comm, run_text(c)); },
                                 .options = run_text(c)};
      s.store.prefix += "/" + m;
      fmnist::elastic_outcome out;
      results.push_back(fmnist::train_elastic(o, train, test, cb, s, out));
      summaries.push_back(out.summary);
      printer = out.printer;
      if (c.json && printer) std::cout << fmnist::result_json(results.back(), out.summary) << std::endl;
    }
    if (printer) print_results(c, results, summaries);
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: elastic worker stopped: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}

// One worker per process, the group met in a store (flags or environment, see the usage text).
int run_gloo(const config& c) {
  example_gloo::launch l;
  try {
    std::map<std::string, std::string> flags = c.gloo;
    if (c.elastic && !flags.count("--rank") && !std::getenv("RANK")) flags["--rank"] = "0";  // elastic ids come from the store
    l = example_gloo::from_flags_and_environment(flags);
  } catch (const std::invalid_argument& e) {
    cli.usage(e.what());
  }
  if (c.elastic) return run_elastic(c, l);
  for (const auto& m : c.methods)
    if (m == "single" && l.size != 1) cli.usage("--method single runs one worker: with --comm gloo, start 1 rank");
  try {
    dppf::gloo_communicator comm(l.store, l.rank, l.size, l.options);
    agree_on_options(comm, run_text(c));
    const auto host = [](const fmnist::dataset& train, const fmnist::dataset& test) {
      return fmnist::host_backend{train, test};
    };
    run_all(c, comm.size(), comm.rank(), host, [&](auto&& f, int) { f(comm); });
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: error on rank " << l.rank << " of " << l.size << ": " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
#endif

#ifdef FMNIST_WITH_CUDA
// The stream of the GPU runs (created on the current device, destroyed at the end).
class cuda_stream {
 public:
  cuda_stream() { dppf::cuda_check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  cuda_stream(const cuda_stream&) = delete;
  cuda_stream& operator=(const cuda_stream&) = delete;
  ~cuda_stream() { (void)cudaStreamDestroy(s_); }
  cudaStream_t get() const noexcept { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};
#endif

}  // namespace

int main(int argc, char** argv) {
  const config c = parse_args(argc, argv);
  try {
    if (!c.replot.empty()) {
      if (c.svg.empty()) cli.usage("--replot needs --svg PATH");
      std::ifstream in(c.replot);
      if (!in) throw std::runtime_error("--replot: cannot read " + c.replot);
      std::ofstream f(c.svg);
      f << fmnist::draw_svg(fmnist::parse_epoch_lines(in));
      if (!f) throw std::runtime_error("--svg: cannot write " + c.svg);
      return 0;
    }
    const auto host = [](const fmnist::dataset& train, const fmnist::dataset& test) {
      return fmnist::host_backend{train, test};
    };
#ifdef FMNIST_WITH_GLOO
    if (c.comm == "gloo") return run_gloo(c);
#endif
    if (c.comm == "threads" && c.device == "cpu") {
      run_all(c, c.run.workers, 0, host, [&](auto&& f, int m) {
        dppf::thread_group group(m);
        group.run(f);
      });
      return 0;
    }
#ifdef FMNIST_WITH_CUDA
    if (c.comm == "threads") {  // --device cuda: M virtual workers on GPU 0, one stream
      const cuda_stream s;
      const auto gpu = [&](const fmnist::dataset& train, const fmnist::dataset& test) {
        return fmnist::cuda_backend{train, test, s.get()};
      };
      run_all(c, c.run.workers, 0, gpu, [&](auto&& f, int m) { dppf::device_group(m, s.get()).run(f); });
      return 0;
    }
#endif
#ifdef FMNIST_WITH_MPI
    // One worker per MPI process: M is the number of ranks.
    dppf::mpi_environment env(argc, argv);
    dppf::mpi_communicator comm{MPI_COMM_WORLD};
    for (const auto& m : c.methods)
      if (m == "single" && comm.size() != 1) cli.usage("--method single runs one worker: with --comm mpi, start 1 rank");
    try {
      agree_on_options(comm, run_text(c));
#if defined(FMNIST_WITH_NCCL)
      if (c.comm == "nccl") {
        // One GPU per rank: the rank's index among the ranks of its node picks the device.
        MPI_Comm node = MPI_COMM_NULL;
        int local = 0, on_node = 0, devices = 0;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node) != MPI_SUCCESS ||
            MPI_Comm_rank(node, &local) != MPI_SUCCESS || MPI_Comm_size(node, &on_node) != MPI_SUCCESS ||
            MPI_Comm_free(&node) != MPI_SUCCESS)
          throw dppf::communication_error("--comm nccl: cannot find this rank's index on its node");
        dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
        if (on_node > devices)  // NCCL refuses two ranks on one GPU; say so before it does
          throw std::invalid_argument("--comm nccl: " + std::to_string(on_node) + " ranks on this node but " +
                                      std::to_string(devices) + " GPUs (one rank per GPU; for several workers on one "
                                      "GPU use --device cuda --comm threads)");
        dppf::cuda_check(cudaSetDevice(local), "cudaSetDevice");
        const cuda_stream s;
        const auto gpu = [&](const fmnist::dataset& train, const fmnist::dataset& test) {
          return fmnist::cuda_backend{train, test, s.get()};
        };
        // A fresh NCCL communicator per method (the trainer takes it over).
        run_all(c, comm.size(), comm.rank(), gpu, [&](auto&& f, int) { f(dppf::nccl_from_mpi(MPI_COMM_WORLD, s.get())); });
        return 0;
      }
#endif
      run_all(c, comm.size(), comm.rank(), host, [&](auto&& f, int) { f(comm); });
    } catch (const std::exception& e) {
      std::cerr << "fashion_mnist: error on rank " << comm.rank() << ": " << e.what() << "\n";
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
#endif
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
