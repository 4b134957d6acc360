# dppf::thrust<Policy> on the CPU: Thrust's OpenMP system compiled by g++. Needs Thrust's headers
# (CCCL: shipped with CUDA 12/13 under include/cccl, or a standalone CCCL/Thrust install); no GPU,
# no nvcc. Skipped with a message when no Thrust headers are found.
find_path(DPPF_THRUST_INCLUDE_DIR thrust/version.h
  PATHS /usr/local/cuda/include/cccl /usr/local/cuda/include /usr/include
  DOC "Directory holding thrust/, cub/ and cuda/ (CCCL) for the Thrust OMP tests")
if(NOT DPPF_THRUST_INCLUDE_DIR)
  message(STATUS "dppf: Thrust headers not found, test_thrust_omp is not built")
  dppf_header_test_skip(dppf/executors/thrust.hpp "Thrust headers not found")
  dppf_umbrella_exclude(dppf/executors/thrust.hpp "needs Thrust")
  return()
endif()

# What g++ needs to use Thrust's OpenMP system: the headers (SYSTEM, so Thrust is not held to our
# -Werror warnings), the system choice and OpenMP.
add_library(dppf_thrust_omp INTERFACE)
target_include_directories(dppf_thrust_omp SYSTEM INTERFACE ${DPPF_THRUST_INCLUDE_DIR})
target_compile_definitions(dppf_thrust_omp INTERFACE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP
                                                     THRUST_HOST_SYSTEM=THRUST_HOST_SYSTEM_CPP)
target_link_libraries(dppf_thrust_omp INTERFACE OpenMP::OpenMP_CXX)

dppf_add_test(test_thrust_omp test_thrust_omp.cpp LIBS dppf_thrust_omp LABELS thrust)
target_include_directories(test_thrust_omp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(test_thrust_omp PROPERTIES ENVIRONMENT OMP_NUM_THREADS=2)

dppf_header_test_requires(dppf/executors/thrust.hpp dppf_thrust_omp)
