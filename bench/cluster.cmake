# The all-reduce across hosts (bench/cluster/allreduce.cpp), run by bench/cluster/run.py on an
# emulated cluster against PyTorch's gloo backend. Needs dppf::gloo; with dppf::mpi it also
# times dppf::mpi_communicator (--engine mpi).
if(TARGET dppf::gloo)
  set(_dppf_cluster_libs dppf::gloo)
  if(TARGET dppf::mpi)
    list(APPEND _dppf_cluster_libs dppf::mpi)
  endif()
  dppf_add_benchmark(dppf_bench_cluster_allreduce cluster/allreduce.cpp NO_MAIN LIBS ${_dppf_cluster_libs})
  if(TARGET dppf::mpi)
    target_compile_definitions(dppf_bench_cluster_allreduce PRIVATE DPPF_BENCH_WITH_MPI)
  endif()
endif()

# Cheap and rootless (label bench): 2 ranks over loopback, not the emulated cluster.
if(TARGET dppf_bench_cluster_allreduce AND DPPF_BUILD_TESTS)
  add_test(NAME bench.dppf_bench_cluster_allreduce
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cluster/smoke.sh $<TARGET_FILE:dppf_bench_cluster_allreduce>)
  set_tests_properties(bench.dppf_bench_cluster_allreduce PROPERTIES LABELS bench TIMEOUT 90)
endif()
