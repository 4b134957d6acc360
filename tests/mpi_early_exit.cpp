// A process that exits in the middle of training: the last rank leaves with an error before the
// first sync while the others enter it. MPI cannot report this as an error inside the surviving
// ranks; what bounds the damage is the launcher, which must end the whole job. CTest checks that
// the job ends (non-zero) within its timeout instead of hanging.

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

int main(int argc, char** argv) {
  dppf::mpi_environment env(argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<float> x(1000, 1.0f + static_cast<float>(rank)), g(1000, 0.01f);
  dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{}, dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_executor{}, {.tau = 4}};
  for (int t = 0; t < 8; ++t) {
    if (rank == size - 1 && t == 2) {
      std::fprintf(stderr, "rank %d exits early on purpose\n", rank);
      std::exit(3);
    }
    tr.step(x, g);
  }
  return 0;
}
