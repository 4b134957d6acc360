#pragma once
// The host executors: host_executor (sequential, the reference) and host_parallel_executor
// (OpenMP, the same bits for every thread count). thrust_executor<P> is <dppf/executors/thrust.hpp>
// (needs CCCL); cuda_executor is <dppf/executors/cuda.cuh> (needs nvcc).

#include "executor.hpp"
#include "executors/host.hpp"
#include "executors/host_parallel.hpp"
