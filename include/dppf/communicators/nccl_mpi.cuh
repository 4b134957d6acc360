#pragma once
// Bootstraps dppf::nccl_communicator from an MPI communicator: rank 0 makes the unique id and broadcasts it
// (with a status, so a failure on rank 0 raises on every rank instead of hanging the others).

#include <mpi.h>

#include <cstring>
#include <string>

#include "nccl.cuh"

namespace dppf {

/// A NCCL communicator over the ranks of `comm` (same ranks, same order).
inline nccl_communicator nccl_from_mpi(MPI_Comm comm, cudaStream_t stream = nullptr, nccl_options options = {}) {
  int rank = 0, size = 0;
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
    throw communication_error("dppf::nccl_from_mpi: MPI_Comm_rank/MPI_Comm_size failed");
  struct message {
    int ok;
    char error[124];
    ncclUniqueId id;
  } msg{};
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&msg.id);
    msg.ok = r == ncclSuccess;
    if (!msg.ok) std::strncpy(msg.error, ncclGetErrorString(r), sizeof msg.error - 1);
  }
  if (MPI_Bcast(&msg, static_cast<int>(sizeof msg), MPI_BYTE, 0, comm) != MPI_SUCCESS)
    throw communication_error("dppf::nccl_from_mpi: MPI_Bcast of the NCCL unique id failed on rank " + std::to_string(rank));
  if (!msg.ok)
    throw communication_error(std::string("dppf::nccl_from_mpi: ncclGetUniqueId failed on rank 0: ") + msg.error);
  return nccl_communicator(msg.id, rank, size, stream, options);
}

}  // namespace dppf
