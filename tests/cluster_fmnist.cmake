# fashion_mnist across emulated hosts (tests/cluster/fmnist_*.sh, cluster ids 220-239): the threads
# run's numbers over Gloo and MPI, faults mid-training with checkpoints resumed, the Redis store
# lost mid-training, and bad input at startup. Needs the example's data and Gloo (MPI for the MPI
# one); the fashion_mnist target is defined later (examples/), so it is named by generator expression.
include(${PROJECT_SOURCE_DIR}/examples/fashion_mnist/deps.cmake)
if(NOT TARGET dppf::gloo OR NOT FMNIST_DEPS_FOUND OR NOT FMNIST_DATA_FOUND OR NOT DPPF_BUILD_EXAMPLES)
  message(STATUS "dppf: no fashion_mnist cluster tests (needs Gloo, OpenBLAS, zlib, the data and the examples)")
  return()
endif()
set(_exe $<TARGET_FILE:fashion_mnist>)
dppf_add_cluster_test(fmnist.gloo_matches_threads fmnist_match.sh 220 ARGS ${_exe} gloo TIMEOUT 240)
if(TARGET dppf::mpi)
  dppf_add_cluster_test(fmnist.mpi_matches_threads fmnist_match.sh 221 ARGS ${_exe} mpi TIMEOUT 240)
endif()
set(_id 222)
foreach(_fault kill stop cut)
  dppf_add_cluster_test(fmnist.fault_${_fault} fmnist_fault.sh ${_id} ARGS ${_exe} ${_fault} TIMEOUT 180)
  math(EXPR _id "${_id} + 1")
endforeach()
dppf_add_cluster_test(fmnist.redis_lost fmnist_redis.sh 225 ARGS ${_exe} TIMEOUT 180)
dppf_add_cluster_test(fmnist.bad_input fmnist_bad_input.sh 226 ARGS ${_exe} TIMEOUT 120)
