// A program that links dppf::mpi_communicator: MPI's headers and library come with the target. Run by its
// project's CTest under mpiexec with 2 processes.
#include <dppf/dppf.hpp>
#include <mpi.h>

#include <cstdio>

#if __has_include(<dppf/communicators/mpi.hpp>)
#include <dppf/communicators/mpi.hpp>
#define DPPF_CONSUMER_HAS_MPI_COMMUNICATOR 1
#endif

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int failures = 0;
  const double expected = size * (size - 1) / 2.0;
  double total = 0.0;
  const double mine = rank;
  MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  if (total != expected) ++failures;
#ifdef DPPF_CONSUMER_HAS_MPI_COMMUNICATOR
  {
    dppf::mpi_communicator comm{MPI_COMM_WORLD};
    if (comm.rank() != rank || comm.size() != size) ++failures;
    if (comm.all_reduce(static_cast<double>(rank), dppf::reduce_op::sum) != expected) ++failures;
  }
#endif
  int all_failures = 0;
  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("mpi consumer on %d ranks: %s\n", size, all_failures == 0 ? "ok" : "FAILED");
  MPI_Finalize();
  return all_failures == 0 ? 0 : 1;
}
