# mpi_communicator's watchdog: the timer alone (no MPI), its options on every rank, a healthy job
# with a short timeout that must not abort, and jobs whose last rank SIGSTOPs itself before each
# kind of collective, which the watchdog must abort (tests/mpi_watchdog_abort.sh asserts the exit
# code, the message, the time bound and that no process is left). Across emulated hosts:
# tests/cluster_mpi.cmake (which includes this file first).
include_guard(GLOBAL)
dppf_add_test(test_watchdog test_watchdog.cpp LABELS "core;reliability")

include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
if(TARGET dppf::mpi)
  dppf_add_mpi_test(test_mpi_watchdog test_mpi_watchdog.cpp NP 3 LABELS reliability)

  add_executable(mpi_watchdog_probe mpi_watchdog_probe.cpp)
  target_link_libraries(mpi_watchdog_probe PRIVATE dppf::mpi dppf_warnings)
  add_test(NAME mpi_watchdog.healthy
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3 ${DPPF_MPIEXEC_FLAGS} $<TARGET_FILE:mpi_watchdog_probe> healthy)
  set_tests_properties(mpi_watchdog.healthy PROPERTIES LABELS "mpi;reliability" PROCESSORS 3 TIMEOUT 120
                       ENVIRONMENT DPPF_MPI_TIMEOUT_MS=2000)
  # Their time bounds hold in the Release build; under a sanitizer MPI_Abort and the kill take
  # seconds longer (seen under TSan), so, like the cluster tests, they run in the host build only.
  if(CMAKE_CXX_FLAGS MATCHES "-fsanitize")
    set(_ops "")
  else()
    set(_ops all_reduce scalar all_gather broadcast barrier wait)
  endif()
  foreach(_op IN LISTS _ops)
    add_test(NAME mpi_watchdog.stop.${_op}
             COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/mpi_watchdog_abort.sh $<TARGET_FILE:mpi_watchdog_probe> ${_op} 1500
                     ${MPIEXEC_EXECUTABLE} ${DPPF_MPIEXEC_FLAGS})
    set_tests_properties(mpi_watchdog.stop.${_op} PROPERTIES LABELS "mpi;reliability" PROCESSORS 3 TIMEOUT 90)
  endforeach()
endif()
