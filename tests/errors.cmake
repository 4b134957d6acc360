# The exception family (error.hpp).
dppf_add_test(test_errors test_errors.cpp LABELS core)
