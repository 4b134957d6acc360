# Communicators: argument agreement across ranks (thread_group end to end, and the integer
# encoding the MPI and NCCL communicators all-reduce).
dppf_add_test(test_communicators test_communicators.cpp LABELS core)
