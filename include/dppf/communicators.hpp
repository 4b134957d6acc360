#pragma once
// The communicators that need only the standard library: single_communicator (a group of one),
// thread_group / thread_communicator (ranks as threads of one process) and the
// counting_communicator<C> decorator. Engines have their own entry points:
// <dppf/communicators/mpi.hpp> (MPI), <dppf/communicators/nccl.cuh> and
// <dppf/communicators/device_group.cuh> (nvcc).

#include "communicator.hpp"
#include "communicators/single.hpp"
#include "communicators/thread_group.hpp"
#include "communicators/counting.hpp"
