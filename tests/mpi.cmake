# The MPI communicator: real multi-process runs, started by CTest through mpiexec.
#
#   dppf_add_mpi_test(<name> <sources...> [NP <n>...] [LIBS <libs>...] [LABELS <labels>...])
#
# builds one executable with the MPI doctest main (tests/mpi_main.cpp: every rank runs the test
# cases, the process fails when any rank failed) and registers one CTest test per process count,
# named <name>_np<n> (default NP 4). Without MPI it does nothing. Other areas may call it after
# include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake) (this file is include-guarded).
include_guard(GLOBAL)

if(NOT TARGET dppf::mpi)
  message(STATUS "dppf: MPI not found, no MPI tests")
  function(dppf_add_mpi_test)
  endfunction()
  return()
endif()

# Open MPI refuses to run as root (CI does) and more ranks than cores (CI has 2) unless told.
set(_dppf_mpiexec_flags "")
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _dppf_mpiexec_version ERROR_QUIET)
if(_dppf_mpiexec_version MATCHES "Open MPI|OpenRTE")
  set(_dppf_mpiexec_flags --allow-run-as-root --oversubscribe)
endif()
set(DPPF_MPIEXEC_FLAGS "${_dppf_mpiexec_flags}" CACHE INTERNAL "flags dppf's MPI tests pass to mpiexec")

add_library(dppf_mpi_test_main STATIC ${CMAKE_CURRENT_LIST_DIR}/mpi_main.cpp)
target_link_libraries(dppf_mpi_test_main PUBLIC doctest::doctest dppf::mpi dppf_warnings OpenMP::OpenMP_CXX)
target_compile_definitions(dppf_mpi_test_main PUBLIC DPPF_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/data")

function(dppf_add_mpi_test name)
  cmake_parse_arguments(ARG "" "" "NP;LIBS;LABELS" ${ARGN})
  if(NOT ARG_NP)
    set(ARG_NP 4)
  endif()
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE dppf_mpi_test_main ${ARG_LIBS})
  foreach(np IN LISTS ARG_NP)
    add_test(NAME ${name}_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${DPPF_MPIEXEC_FLAGS} ${MPIEXEC_PREFLAGS}
                     $<TARGET_FILE:${name}> ${MPIEXEC_POSTFLAGS})
    # A rank that fails between collectives can leave the others waiting: the timeout ends it.
    set_tests_properties(${name}_np${np} PROPERTIES LABELS "mpi;${ARG_LABELS}" PROCESSORS ${np} TIMEOUT 120)
  endforeach()
endfunction()

dppf_add_mpi_test(test_mpi test_mpi.cpp NP 4 1 3 LABELS core)
