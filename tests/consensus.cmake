# DPPF's pull-push sync, the baseline consensus rules and the trainer.
dppf_add_test(test_consensus test_consensus.cpp LABELS consensus)

# DPPF and LocalSGD through dppf::mpi with 4 real processes.
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_consensus_mpi test_consensus_mpi.cpp NP 4 LABELS consensus)
