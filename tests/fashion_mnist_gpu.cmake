# The Fashion-MNIST example's GPU path (examples/fashion_mnist/mlp_cuda.cuh, data_cuda.cuh,
# backend_cuda.cuh), built when dppf::cuda, cuBLAS and the example's dependencies (OpenBLAS, zlib)
# are there:
#   test_fashion_mnist_gpu       against the OpenBLAS MLP and the CPU training backend (label
#                                "gpu"; exits 77, skipped, on a machine without a GPU)
#   test_fashion_mnist_gpu_host  the argument checks, which run before anything touches the GPU
#                                (label "cuda": runs everywhere, CI included)
if(NOT TARGET dppf::cuda)
  return()
endif()
include(${PROJECT_SOURCE_DIR}/examples/fashion_mnist/deps.cmake)
if(NOT FMNIST_DEPS_FOUND OR NOT TARGET CUDA::cublas)
  message(STATUS "dppf: Fashion-MNIST GPU tests skipped: missing ${FMNIST_DEPS_MISSING} cuBLAS (CUDA::cublas)")
  return()
endif()

# tests/*.cmake are read in alphabetical order, so gpu.cmake (dppf_add_gpu_test, the GPU test main,
# DPPF_CUDA_WARNINGS) comes after this file: the tests are added at the end of the directory.
function(dppf_add_fashion_mnist_gpu_tests)
  if(NOT COMMAND dppf_add_gpu_test)
    message(WARNING "dppf: test_fashion_mnist_gpu needs dppf_add_gpu_test from tests/gpu.cmake")
    return()
  endif()
  dppf_add_gpu_test(test_fashion_mnist_gpu gpu/test_fashion_mnist_gpu.cu LIBS fmnist_deps CUDA::cublas)
  set_tests_properties(test_fashion_mnist_gpu PROPERTIES LABELS "gpu;fashion_mnist")

  add_executable(test_fashion_mnist_gpu_host gpu/test_fashion_mnist_gpu_host.cu)
  target_link_libraries(test_fashion_mnist_gpu_host PRIVATE dppf_test_main dppf::cuda fmnist_deps CUDA::cublas)
  target_include_directories(test_fashion_mnist_gpu_host PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test_fashion_mnist_gpu_host PRIVATE ${DPPF_CUDA_WARNINGS})
  list(GET CMAKE_CUDA_ARCHITECTURES 0 first_arch)  # host checks: one architecture is enough
  set_target_properties(test_fashion_mnist_gpu_host PROPERTIES CUDA_ARCHITECTURES ${first_arch})
  add_test(NAME test_fashion_mnist_gpu_host COMMAND test_fashion_mnist_gpu_host)
  set_tests_properties(test_fashion_mnist_gpu_host PROPERTIES LABELS "cuda;fashion_mnist")

  # Every kernel registered on the host has device code (tests/gpu/check_kernel_registration.cmake):
  # a launch-time "invalid device function" found without a GPU.
  set(script ${CMAKE_CURRENT_SOURCE_DIR}/gpu/check_kernel_registration.cmake)
  if(CMAKE_OBJCOPY AND EXISTS ${script})
    add_test(NAME kernel_registration:test_fashion_mnist_gpu
             COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:test_fashion_mnist_gpu> -DOBJCOPY=${CMAKE_OBJCOPY}
                     -DWORK=${CMAKE_CURRENT_BINARY_DIR}/kernel_registration -P ${script})
    set_tests_properties(kernel_registration:test_fashion_mnist_gpu PROPERTIES LABELS "cuda;fashion_mnist"
                         SKIP_REGULAR_EXPRESSION "SKIPPED:")
  endif()
endfunction()
cmake_language(DEFER CALL dppf_add_fashion_mnist_gpu_tests)
