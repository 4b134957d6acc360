# The Fashion-MNIST example's GPU path (examples/fashion_mnist/mlp_cuda.cuh, data_cuda.cuh,
# backend_cuda.cuh), built when dppf::cuda and cuBLAS are there:
#   test_fashion_mnist_gpu        mlp_cuda and the batch gather against the host MLP of mlp.hpp
#                                 (label "gpu": exits 77, skipped, on a machine without a GPU)
#   test_fashion_mnist_gpu_host   their argument checks, which run before anything touches the GPU
#                                 (label "cuda": runs everywhere, CI included)
#   test_fashion_mnist_gpu_train  fmnist::train on the GPU backend against the CPU backend (label
#                                 "gpu"; needs the example's OpenBLAS and zlib)
# Without OpenBLAS (a bare GPU image) the first two build mlp.hpp on the plain loops of
# gpu/fmnist_naive_blas/cblas.h (beside this file), so the GPU checks of the model still run there.
if(NOT TARGET dppf::cuda)
  return()
endif()
if(NOT TARGET CUDA::cublas)
  message(STATUS "dppf: Fashion-MNIST GPU tests skipped: no cuBLAS (CUDA::cublas)")
  return()
endif()
if(FMNIST_DEPS_FOUND)
  set(_fmnist_gpu_model fmnist_deps)
else()
  message(STATUS "dppf: Fashion-MNIST GPU tests use naive loops for the host MLP and skip the training test: "
                 "missing ${FMNIST_DEPS_MISSING}")
  add_library(fmnist_gpu_naive_blas INTERFACE)
  target_include_directories(fmnist_gpu_naive_blas INTERFACE ${CMAKE_CURRENT_LIST_DIR}/gpu/fmnist_naive_blas
                                                             ${PROJECT_SOURCE_DIR}/examples/fashion_mnist)
  target_link_libraries(fmnist_gpu_naive_blas INTERFACE dppf::core)
  set(_fmnist_gpu_model fmnist_gpu_naive_blas)
endif()

# tests/gpu.cmake (read before the examples) defines dppf_add_gpu_test, the GPU test main and
# DPPF_CUDA_WARNINGS.
function(dppf_add_fashion_mnist_gpu_tests)
  if(NOT COMMAND dppf_add_gpu_test)
    message(WARNING "dppf: the Fashion-MNIST GPU tests need dppf_add_gpu_test from tests/gpu.cmake")
    return()
  endif()
  set(here ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  dppf_add_gpu_test(test_fashion_mnist_gpu ${here}/gpu/test_fashion_mnist_gpu.cu LIBS ${_fmnist_gpu_model} CUDA::cublas)
  set_tests_properties(test_fashion_mnist_gpu PROPERTIES LABELS "gpu;fashion_mnist")
  set(gpu_exes test_fashion_mnist_gpu)
  if(FMNIST_DEPS_FOUND)
    dppf_add_gpu_test(test_fashion_mnist_gpu_train ${here}/gpu/test_fashion_mnist_gpu_train.cu LIBS fmnist_deps CUDA::cublas)
    set_tests_properties(test_fashion_mnist_gpu_train PROPERTIES LABELS "gpu;fashion_mnist")
    list(APPEND gpu_exes test_fashion_mnist_gpu_train)
  endif()

  add_executable(test_fashion_mnist_gpu_host ${here}/gpu/test_fashion_mnist_gpu_host.cu)
  target_link_libraries(test_fashion_mnist_gpu_host PRIVATE dppf_test_main dppf::cuda ${_fmnist_gpu_model} CUDA::cublas)
  target_include_directories(test_fashion_mnist_gpu_host PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_options(test_fashion_mnist_gpu_host PRIVATE ${DPPF_CUDA_WARNINGS})
  list(GET CMAKE_CUDA_ARCHITECTURES 0 first_arch)  # host checks: one architecture is enough
  set_target_properties(test_fashion_mnist_gpu_host PROPERTIES CUDA_ARCHITECTURES ${first_arch})
  add_test(NAME test_fashion_mnist_gpu_host COMMAND test_fashion_mnist_gpu_host)
  set_tests_properties(test_fashion_mnist_gpu_host PROPERTIES LABELS "cuda;fashion_mnist")

  # Every kernel registered on the host has device code (tests/gpu/check_kernel_registration.cmake):
  # a launch-time "invalid device function" found without a GPU.
  set(script ${PROJECT_SOURCE_DIR}/tests/gpu/check_kernel_registration.cmake)
  if(CMAKE_OBJCOPY AND EXISTS ${script})
    foreach(exe IN LISTS gpu_exes)
      add_test(NAME kernel_registration:${exe}
               COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${exe}> -DOBJCOPY=${CMAKE_OBJCOPY}
                       -DWORK=${CMAKE_CURRENT_BINARY_DIR}/kernel_registration -P ${script})
      set_tests_properties(kernel_registration:${exe} PROPERTIES LABELS "cuda;fashion_mnist" SKIP_REGULAR_EXPRESSION "SKIPPED:")
    endforeach()
  endif()
endfunction()
dppf_add_fashion_mnist_gpu_tests()
