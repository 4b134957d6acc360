# Shared by the consumer projects: the executables and their CTest tests, given that dppf::core
# (and, with DPPF_CONSUMER_MPI, dppf::mpi) exist.
add_executable(consumer ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
target_link_libraries(consumer PRIVATE dppf::core)
target_compile_options(consumer PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_compile_definitions(consumer PRIVATE DPPF_CONSUMER_EXPECTED_VERSION="${DPPF_CONSUMER_VERSION}")
add_test(NAME consumer COMMAND consumer)

if(DPPF_CONSUMER_GLOO)
  if(NOT TARGET dppf::gloo)
    message(FATAL_ERROR "dppf::gloo is missing")
  endif()
  add_executable(gloo_consumer ${CMAKE_CURRENT_LIST_DIR}/gloo_main.cpp)
  target_link_libraries(gloo_consumer PRIVATE dppf::gloo)
  target_compile_options(gloo_consumer PRIVATE -Wall -Wextra -Wpedantic -Werror)
  add_test(NAME gloo_consumer COMMAND gloo_consumer)
endif()

if(DPPF_CONSUMER_MPI)
  if(NOT TARGET dppf::mpi)
    message(FATAL_ERROR "dppf::mpi is missing")
  endif()
  add_executable(mpi_consumer ${CMAKE_CURRENT_LIST_DIR}/mpi_main.cpp)
  target_link_libraries(mpi_consumer PRIVATE dppf::mpi)
  target_compile_options(mpi_consumer PRIVATE -Wall -Wextra -Wpedantic -Werror)
  # Open MPI refuses root and more ranks than cores unless told.
  set(_flags "")
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _v ERROR_QUIET)
  if(_v MATCHES "Open MPI|OpenRTE")
    set(_flags --allow-run-as-root --oversubscribe)
  endif()
  add_test(NAME mpi_consumer COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${_flags}
                                     ${MPIEXEC_PREFLAGS} $<TARGET_FILE:mpi_consumer> ${MPIEXEC_POSTFLAGS})
endif()
