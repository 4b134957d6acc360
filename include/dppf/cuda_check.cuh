#pragma once
// Turns CUDA runtime errors into dppf::cuda_error naming the call that failed: cuda_check(call,
// what) for a call's result, cuda_check_launch(what) after a kernel launch. Public: a user's own
// kernels next to dppf's report errors the same way.

#include <cuda_runtime.h>

#include <string>

#include "error.hpp"

namespace dppf {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw cuda_error(static_cast<int>(e), std::string("dppf: ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// After a kernel launch: a bad configuration shows up here, faults later at a synchronization.
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

}  // namespace dppf
