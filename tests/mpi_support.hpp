#pragma once
// Helpers for the MPI tests: this process's place in MPI_COMM_WORLD.

#include <mpi.h>

namespace dppf_test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int world_size() {
  int m = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &m);
  return m;
}

}  // namespace dppf_test
