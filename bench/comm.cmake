# Communication benchmarks: the threads all-reduce (M = 2, 4, 8) and training steps of
# every consensus rule for tau in {1, 4, 16, 64} with the bytes communicated per step; and, when
# MPI is found, the dppf::mpi all-reduce, run under mpiexec (bench/compare_pytorch.py runs it
# with 4 processes; the smoke test with 2).
dppf_add_benchmark(dppf_bench_comm comm.cpp NO_MAIN
                   SMOKE --benchmark_filter=N:65536/ --benchmark_min_time=0.001)

if(TARGET dppf::mpi)
  dppf_add_benchmark(dppf_bench_mpi mpi.cpp NO_MAIN LIBS dppf::mpi)
  if(DPPF_BUILD_TESTS)
    set(_dppf_bench_mpiexec_flags "")
    execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _dppf_bench_mpiexec_version ERROR_QUIET)
    if(_dppf_bench_mpiexec_version MATCHES "Open MPI|OpenRTE")
      set(_dppf_bench_mpiexec_flags --allow-run-as-root --oversubscribe)
    endif()
    add_test(NAME bench.dppf_bench_mpi
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${_dppf_bench_mpiexec_flags} ${MPIEXEC_PREFLAGS}
                     $<TARGET_FILE:dppf_bench_mpi> --benchmark_filter=N:65536 ${MPIEXEC_POSTFLAGS})
    set_tests_properties(bench.dppf_bench_mpi PROPERTIES LABELS "bench;mpi")
  endif()
endif()
