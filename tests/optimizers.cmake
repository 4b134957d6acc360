# Local optimizers and learning-rate schedules against PyTorch reference data (tests/data/optim_*,
# made by tools/make_reference.py; CI never runs PyTorch).
dppf_add_test(test_optimizers test_optimizers.cpp LABELS optimizers)
