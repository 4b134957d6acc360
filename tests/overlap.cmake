# The overlapped sync (trainer_options::overlap_steps): every delayed rule against a double
# replay on threads, d = 0 bit for bit, errors, checkpoints, options; on MPI through mpiexec.
dppf_add_test(test_overlap test_overlap.cpp LABELS consensus)
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_overlap_mpi test_overlap_mpi.cpp NP 3 4 LABELS consensus)
