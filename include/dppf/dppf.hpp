#pragma once
// dppf: communication-efficient distributed training that seeks flat minima.
// The umbrella header of everything that compiles with a host compiler alone. MPI lives in
// <dppf/mpi.hpp>; CUDA, Thrust-on-device and NCCL in <dppf/cuda.cuh>.

#include "version.hpp"
#include "error.hpp"
#include "memory_space.hpp"
#include "buffer.hpp"
#include "layout.hpp"
#include "executor.hpp"
#include "host.hpp"
#include "host_parallel.hpp"
#include "algorithms.hpp"
#include "communicator.hpp"
#include "single.hpp"
#include "threads.hpp"
#include "counting.hpp"
#include "schedule.hpp"
#include "sgd.hpp"
#include "adamw.hpp"
