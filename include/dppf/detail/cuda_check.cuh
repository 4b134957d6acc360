#pragma once
// Turns CUDA runtime errors into exceptions that name the call that failed. Detail only.

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace dppf {

/// A CUDA runtime call failed (bad launch, out of memory, a kernel fault).
class cuda_error : public std::runtime_error {
 public:
  cuda_error(cudaError_t code, const std::string& what) : std::runtime_error(what), code_(code) {}
  cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

namespace detail {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw cuda_error(e, std::string("dppf: ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// After a kernel launch: a bad configuration shows up here, faults later at a synchronization.
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

}  // namespace detail
}  // namespace dppf
