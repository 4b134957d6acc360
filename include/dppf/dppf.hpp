#pragma once
// dppf: communication-efficient distributed training that seeks flat minima.
// The umbrella header of everything that compiles with a host compiler alone. MPI lives in
// <dppf/communicators/mpi.hpp>; CUDA, Thrust-on-device and NCCL in <dppf/cuda.cuh>.

#include "version.hpp"
#include "config.hpp"
#include "error.hpp"
#include "memory_space.hpp"
#include "buffer.hpp"
#include "layout.hpp"
#include "executor.hpp"
#include "executors.hpp"
#include "algorithms.hpp"
#include "communicator.hpp"
#include "async_communicator.hpp"
#include "exchange_communicator.hpp"
#include "communicators.hpp"
#include "optimizers.hpp"
#include "consensus.hpp"
#include "compression.hpp"
#include "trainer.hpp"
#include "random.hpp"
#include "sharpness.hpp"
#include "checkpoint.hpp"
