# Asynchronous communicators: start_all_reduce on thread_group, single and counting here; on MPI
# through mpiexec (progress while local work runs, errors at wait on every rank).
dppf_add_test(test_async_communicators test_async_communicators.cpp LABELS core)
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_async_mpi test_async_mpi.cpp NP 4 1 3 LABELS core)
