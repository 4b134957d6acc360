// MPI training that stops and resumes: one process per worker, DPPF syncs over MPI, a checkpoint
// per rank. Run it twice with the same directory:
//
//   mpiexec -n 3 mpi_checkpoint DIR     the first run trains to step 40, saves DIR/rank<r>.safetensors
//   mpiexec -n 3 mpi_checkpoint DIR     the next run finds them, resumes at step 40 and trains to 80
//
// The resumed run then trains the same 80 steps from scratch in the same process and exits
// non-zero unless both end bit for bit alike on every rank: a resume loses nothing (parameters,
// momentum, the sync counter and the loss accumulator all come back).
#include <dppf/dppf.hpp>
#include <dppf/communicators/mpi.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace {

constexpr std::size_t n = 4096;
constexpr int stop_at = 40, total = 80;

// Worker r's noisy quadratic: gradient x - c_r plus a deterministic wiggle that depends on the step.
void gradient(int rank, int step, const std::vector<float>& x, std::vector<float>& g) {
  for (std::size_t i = 0; i < n; ++i)
    g[i] = x[i] - 0.01f * static_cast<float>(rank) + 0.001f * static_cast<float>((step * 7 + i) % 5);
}

auto make_trainer(dppf::mpi_communicator comm) {
  return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::pull_push{{.alpha = 0.5, .lambda = 0.01}},
                       comm, dppf::host_executor{}, {.tau = 8}};
}

template <class Trainer>
void train(Trainer& tr, std::vector<float>& x, int from, int to, int rank) {
  std::vector<float> g(n);
  for (int s = from; s < to; ++s) {
    gradient(rank, s, x, g);
    tr.step(x, g, /*loss=*/0.5 * static_cast<double>(s));
  }
}

}  // namespace

int main(int argc, char** argv) try {
  dppf::mpi_environment env(argc, argv);
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  if (argc != 2) {
    if (comm.rank() == 0) std::fprintf(stderr, "usage: mpiexec -n M mpi_checkpoint DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const auto file = dir / ("rank" + std::to_string(comm.rank()) + ".safetensors");
  const bool resume = comm.all_reduce(std::filesystem::exists(file) ? 1.0 : 0.0, dppf::reduce_op::min) == 1.0;

  std::vector<float> x(n, 1.0f);
  auto tr = make_trainer(comm);
  if (!resume) {
    train(tr, x, 0, stop_at, comm.rank());
    std::filesystem::create_directories(dir);
    dppf::save_trainer(file, tr, x);  // atomic: a crash mid-write leaves the old file
    if (comm.rank() == 0) std::printf("trained to step %d, %d syncs; saved %s/rank*.safetensors\n", stop_at,
                                      int(tr.stats().syncs), dir.c_str());
    return 0;
  }

  dppf::load_trainer(file, tr, x);  // all-or-nothing, checked on every rank
  const int resumed_at = static_cast<int>(tr.steps());
  train(tr, x, resumed_at, total, comm.rank());

  std::vector<float> fresh(n, 1.0f);
  auto uninterrupted = make_trainer(comm);
  train(uninterrupted, fresh, 0, total, comm.rank());
  const bool same = x == fresh && tr.stats().syncs == uninterrupted.stats().syncs;
  const bool all_same = comm.all_reduce(same ? 1.0 : 0.0, dppf::reduce_op::min) == 1.0;
  if (comm.rank() == 0)
    std::printf("resumed at step %d, trained to %d: %s the uninterrupted run on every rank\n", resumed_at, total,
                all_same ? "bit for bit" : "DIFFERENT from");
  return all_same && resumed_at == stop_at ? 0 : 1;
} catch (const dppf::error& e) {
  std::fprintf(stderr, "mpi_checkpoint: %s\n", e.what());
  return 1;
}
