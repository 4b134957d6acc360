// The MPI watchdog's probe: one process of an MPI job (mpiexec, or scripts/cluster.sh mpirun),
// with the timeout from DPPF_MPI_TIMEOUT_MS. Modes:
//
//   healthy          every kind of collective, each checked against its closed form, with ranks
//                    idle between collectives for up to half the timeout and an asynchronous
//                    all-reduce whose start and wait are 1.5 x the timeout apart: the watchdog
//                    must not fire (exit 0, "healthy: ok").
//   stop:<op>        as healthy until round 3, where the last rank SIGSTOPs itself right before
//                    <op> (all_reduce | scalar | all_gather | broadcast | barrier | wait: before
//                    start_all_reduce, run without check_arguments so that the others' start
//                    returns and they block in wait()); the others block in <op> until their
//                    watchdog aborts the job.
//   train            dppf::trainer (SGD + pull_push, tau 2) on 2^18 parameters for up to 60 s,
//                    printing "rank r: training" once the first syncs are done, so a fault can be
//                    injected from outside mid-training.
#include <dppf/communicators/mpi.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

// Under AddressSanitizer, as in mpi_main.cpp: the slow unwinder reaches the libmpi frames that
// tests/sanitizers/lsan.supp names (Open MPI keeps allocations until exit by design).
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

namespace {

int fail(int rank, const std::string& what) {
  std::fprintf(stderr, "rank %d: FAIL: %s\n", rank, what.c_str());
  return 1;
}

// One round of every collective; the last rank stops itself before `stop_op` when `stop`.
int round(dppf::mpi_communicator& comm, int r, const std::string& stop_op, bool stop) {
  const int rank = comm.rank(), size = comm.size();
  const bool me = stop && rank == size - 1;
  const auto halt = [&](const char* op) {
    if (me && stop_op == op) {
      std::fprintf(stderr, "rank %d: stopping itself (SIGSTOP) before %s\n", rank, op);
      std::raise(SIGSTOP);
    }
  };
  const std::size_t n = 1 << 16;
  std::vector<float> x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank + 1 + static_cast<int>(i % 5) + r);
  const auto expected = [&](std::size_t i) { return size * (size + 1) / 2.0 + size * static_cast<double>(i % 5 + r); };

  halt("all_reduce");
  comm.all_reduce(std::span<const float>(x), std::span<float>(y), dppf::reduce_op::sum);
  for (std::size_t i = 0; i < n; ++i)
    if (y[i] != expected(i)) return fail(rank, "all_reduce element " + std::to_string(i));
  halt("scalar");
  if (comm.all_reduce(static_cast<double>(rank), dppf::reduce_op::max) != size - 1) return fail(rank, "scalar all_reduce");
  halt("all_gather");
  const auto all = comm.all_gather(static_cast<double>(rank * 10 + r));
  for (int q = 0; q < size; ++q)
    if (all[static_cast<std::size_t>(q)] != q * 10 + r) return fail(rank, "all_gather");
  halt("broadcast");
  std::vector<double> b(1000, rank == 0 ? 3.5 + r : 0.0);
  comm.broadcast(std::span<double>(b), 0);
  for (double v : b)
    if (v != 3.5 + r) return fail(rank, "broadcast");
  halt("barrier");
  comm.barrier();
  halt("wait");  // without check_arguments, start does not block: the others block in wait()
  auto h = comm.start_all_reduce(std::span<float>(x), dppf::reduce_op::sum);
  h.wait();
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] != expected(i)) return fail(rank, "start_all_reduce element " + std::to_string(i));
  return 0;
}

int healthy(dppf::mpi_communicator& comm) {
  const auto timeout = comm.options().timeout;
  if (timeout.count() == 0) return fail(comm.rank(), "set DPPF_MPI_TIMEOUT_MS");
  for (int r = 0; r < 4; ++r) {
    // One rank idles for half the timeout before the round: the others wait that long inside
    // the first collective, which stays under the timeout.
    std::this_thread::sleep_for(timeout * (comm.rank() == (r % comm.size()) ? 5 : 0) / 10);
    if (round(comm, r, "", false)) return 1;
  }
  // The time between start_all_reduce and wait() is the caller's and does not count.
  std::vector<float> x(4096, 1.0f);
  auto h = comm.start_all_reduce(std::span<float>(x), dppf::reduce_op::sum);
  std::this_thread::sleep_for(timeout * 3 / 2);
  h.wait();
  for (float v : x)
    if (v != static_cast<float>(comm.size())) return fail(comm.rank(), "overlapped start_all_reduce");
  if (comm.rank() == 0) std::printf("healthy: ok\n");
  return 0;
}

int train(dppf::mpi_communicator& comm) {
  const std::size_t n = std::size_t{1} << 18;
  std::vector<float> x(n, 1.0f), g(n);
  dppf::trainer tr{dppf::sgd{{.lr = 0.05}}, dppf::pull_push{{.alpha = 0.5, .lambda = 0.01}}, comm, dppf::host_executor{}, {.tau = 2}};
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(60); ++s) {
    for (std::size_t i = 0; i < n; ++i) g[i] = x[i] - 0.01f * static_cast<float>(comm.rank());
    tr.step(x, g);
    if (s == 20) std::fprintf(stderr, "rank %d: training\n", comm.rank());
  }
  std::fprintf(stderr, "rank %d: trained for 60 s without a fault\n", comm.rank());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dppf::mpi_environment env(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "healthy";
  dppf::mpi_communicator comm{MPI_COMM_WORLD, {.check_arguments = mode != "stop:wait"}};
  if (mode == "healthy") return healthy(comm);
  if (mode == "train") return train(comm);
  if (mode.rfind("stop:", 0) == 0) {
    for (int r = 0; r < 6; ++r)
      if (round(comm, r, mode.substr(5), r == 3)) return 1;
    std::fprintf(stderr, "rank %d: the job went on past the stopped rank\n", comm.rank());
    return 1;
  }
  std::fprintf(stderr, "mpi_watchdog_probe: unknown mode '%s'\n", mode.c_str());
  return 2;
}
