#pragma once
// Turns CUDA runtime errors into dppf::cuda_error naming the call that failed: cuda_check(call,
// what) for a call's result, cuda_check_launch(what) after a kernel launch. Public: a user's own
// kernels next to dppf's report errors the same way.

#include <cuda_runtime.h>

#include <string>

#include "error.hpp"

namespace dppf {

// A failed call also leaves its error as the thread's "last error", which the next
// cudaGetLastError (a later, unrelated launch check) would report again: once reported here, it
// is cleared. (Sticky errors, a device fault, cannot be cleared and keep being reported.)
inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw cuda_error(static_cast<int>(e), std::string("dppf: ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
}

// After a kernel launch: a bad configuration shows up here, faults later at a synchronization.
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

namespace detail {
// For a result deliberately ignored (a free whose failure has no one to go to): clears it from
// the last error, so it is not reported as the failure of a later, unrelated launch.
inline void cuda_discard(cudaError_t e) noexcept {
  if (e != cudaSuccess) (void)cudaGetLastError();
}
}  // namespace detail

}  // namespace dppf
