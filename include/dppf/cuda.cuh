#pragma once
// dppf's umbrella for CUDA builds (nvcc): the host library plus the GPU executors, device
// buffers and communicators. NCCL's MPI bootstrap is separate (dppf/nccl_mpi.cuh needs MPI).

#include "dppf.hpp"

#include "cuda_executor.cuh"
#include "device_buffer.cuh"
#include "device_group.cuh"
#include "nccl.cuh"
#include "thrust.hpp"
