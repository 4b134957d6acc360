# DPPF's pull-push sync, the baseline consensus rules and the trainer.
dppf_add_test(test_consensus test_consensus.cpp LABELS consensus)

# DPPF and LocalSGD through dppf::mpi with 4 real processes.
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_consensus_mpi test_consensus_mpi.cpp NP 4 LABELS consensus)

# A process that exits early: the launcher must end the job (non-zero) instead of leaving the
# other ranks blocked in the sync. What MPI itself cannot detect is documented in reliability.md.
if(TARGET dppf::mpi)
  add_executable(mpi_early_exit mpi_early_exit.cpp)
  target_link_libraries(mpi_early_exit PRIVATE dppf::mpi dppf_warnings)
  add_test(NAME mpi_early_exit_ends_the_job
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 4 ${DPPF_MPIEXEC_FLAGS} $<TARGET_FILE:mpi_early_exit>)
  set_tests_properties(mpi_early_exit_ends_the_job PROPERTIES LABELS "mpi;reliability" PROCESSORS 4 TIMEOUT 60
                       WILL_FAIL TRUE)
endif()
