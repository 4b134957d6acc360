# The Fashion-MNIST example's GPU path (examples/fashion_mnist/mlp_cuda.cuh, data_cuda.cuh) against
# its OpenBLAS MLP: built when dppf::cuda, cuBLAS and the example's dependencies (OpenBLAS, zlib)
# are there; like every GPU test (label "gpu") it exits 77, skipped, on a machine without a GPU.
if(NOT TARGET dppf::cuda)
  return()
endif()
include(${PROJECT_SOURCE_DIR}/examples/fashion_mnist/deps.cmake)
if(NOT FMNIST_DEPS_FOUND OR NOT TARGET CUDA::cublas)
  message(STATUS "dppf: test_fashion_mnist_gpu skipped: missing ${FMNIST_DEPS_MISSING} cuBLAS (CUDA::cublas)")
  return()
endif()

# tests/*.cmake are read in alphabetical order, so gpu.cmake (dppf_add_gpu_test and the GPU test
# main) comes after this file: the test is added at the end of the directory instead.
function(dppf_add_fashion_mnist_gpu_test)
  if(NOT COMMAND dppf_add_gpu_test)
    message(WARNING "dppf: test_fashion_mnist_gpu needs dppf_add_gpu_test from tests/gpu.cmake")
    return()
  endif()
  dppf_add_gpu_test(test_fashion_mnist_gpu gpu/test_fashion_mnist_gpu.cu LIBS fmnist_deps CUDA::cublas)
  set_tests_properties(test_fashion_mnist_gpu PROPERTIES LABELS "gpu;fashion_mnist")
endfunction()
cmake_language(DEFER CALL dppf_add_fashion_mnist_gpu_test)
