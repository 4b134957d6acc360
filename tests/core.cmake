# Core concepts: buffers, layouts, host executors, algorithms, in-process communicators.
dppf_add_test(test_core test_core.cpp LABELS core)
