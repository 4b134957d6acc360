# DPPF's pull-push sync, the baseline consensus rules and the trainer.
dppf_add_test(test_consensus test_consensus.cpp LABELS consensus)
