# gradient_buckets: the data-parallel gradient average overlapped with the backward pass, bit for
# bit the one-buffer all-reduce on threads; bad use, a silent and a failing rank; the trainer's
# data_parallel step on averaged gradients.
dppf_add_test(test_gradient_buckets test_gradient_buckets.cpp LABELS consensus)
