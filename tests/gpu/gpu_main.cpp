// doctest's main for the GPU tests: exits with 77 (CTest: skipped) when no CUDA device is
// present, so CPU-only machines build these tests and skip them.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    // Why, too: on a GPU machine a driver older than the runtime lands here, not "no GPU".
    std::printf("no CUDA device (%s): GPU tests skipped\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return 77;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) std::printf("device 0: %s\n", prop.name);
  doctest::Context context(argc, argv);
  return context.run();
}
