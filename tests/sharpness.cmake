# Philox4x32-10 and the random fills (known-answer vectors, executor independence) and the
# sharpness estimators (closed forms on quadratics, executor independence, bad input).
dppf_add_test(test_philox test_philox.cpp LABELS sharpness)
dppf_add_test(test_sharpness test_sharpness.cpp LABELS sharpness)
