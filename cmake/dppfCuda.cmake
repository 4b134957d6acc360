# dppf::cuda and dppf::nccl, included by the top-level CMakeLists.txt when DPPF_ENABLE_CUDA is ON.
#
#   dppf::cuda   the CUDA headers (.cuh: dppf::cuda executor, device_array, device_group,
#                thrust<cuda policy>): CUDA::cudart, C++20 for nvcc, CCCL (Thrust/CUB, which
#                nvcc finds by itself; the include path is added for g++ users of thrust.hpp).
#   dppf::nccl   adds NCCL (FindNCCL.cmake, version read from nccl.h).
#
# Without a CUDA compiler the build goes on as a CPU-only build, with a message.

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(WARNING "dppf: DPPF_ENABLE_CUDA is ON but no CUDA compiler was found; building without dppf::cuda and dppf::nccl")
  return()
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  # "native" fails on machines without a GPU (CI): an explicit list, like the cuda preset's.
  set(CMAKE_CUDA_ARCHITECTURES 75 80 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

add_library(dppf_cuda INTERFACE)
target_link_libraries(dppf_cuda INTERFACE dppf_core CUDA::cudart)
if(CMAKE_VERSION VERSION_LESS 3.25.2)
  # CMake 3.25.1 does not know cuda_std_20.
  target_compile_options(dppf_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
else()
  target_compile_features(dppf_cuda INTERFACE cuda_std_20)
endif()
# Device lambdas in user code (thrust<cuda policy> with a lambda functor).
target_compile_options(dppf_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:--extended-lambda>)
# CUDA 12.x/13 keep Thrust/CUB under include/cccl: nvcc finds them, g++ needs the path.
find_path(DPPF_CCCL_INCLUDE_DIR thrust/version.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES cccl NO_DEFAULT_PATH)
if(DPPF_CCCL_INCLUDE_DIR)
  target_include_directories(dppf_cuda SYSTEM INTERFACE $<BUILD_INTERFACE:${DPPF_CCCL_INCLUDE_DIR}>)
endif()
dppf_add_component(cuda dppf_cuda PACKAGES "CUDAToolkit")

find_package(NCCL 2.18)
if(NCCL_FOUND)
  add_library(dppf_nccl INTERFACE)
  target_link_libraries(dppf_nccl INTERFACE dppf_cuda NCCL::NCCL)
  dppf_add_component(nccl dppf_nccl PACKAGES "CUDAToolkit" "NCCL 2.18")
else()
  message(STATUS "dppf: NCCL (>= 2.18) not found, dppf::nccl is not defined")
endif()
message(STATUS "dppf: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${NCCL_VERSION}")
