# Reliability (issue 8): the safetensors reader/writer, checkpoints, the fuzz corpus replay and
# an independent Python reader of files dppf writes.
dppf_add_test(test_safetensors test_safetensors.cpp LABELS reliability)
