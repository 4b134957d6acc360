#pragma once
// dppf's umbrella for CUDA builds (nvcc): the host library plus the GPU executors, device
// buffers and communicators. NCCL's MPI bootstrap is separate (dppf/communicators/nccl_mpi.cuh needs MPI).

#include "dppf.hpp"

#include "executors/cuda.cuh"
#include "device_array.cuh"
#include "communicators/device_group.cuh"
#include "communicators/nccl.cuh"
#include "executors/thrust.hpp"
