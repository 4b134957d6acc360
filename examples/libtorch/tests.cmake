# The LibTorch example's tests (label example/libtorch). Included by CMakeLists.txt here.
set(_lt_labels "example;example/libtorch")
add_test(NAME example_libtorch_rejects_unknown_model COMMAND libtorch_fmnist --model vgg)
set_tests_properties(example_libtorch_rejects_unknown_model PROPERTIES LABELS "${_lt_labels}"
  PASS_REGULAR_EXPRESSION "--model: unknown model 'vgg'")
add_test(NAME example_libtorch_rejects_unknown_optimizer COMMAND libtorch_fmnist --optimizer lamb)
set_tests_properties(example_libtorch_rejects_unknown_optimizer PROPERTIES LABELS "${_lt_labels}"
  PASS_REGULAR_EXPRESSION "--optimizer: unknown optimizer 'lamb'")
add_test(NAME example_libtorch_rejects_unknown_method COMMAND libtorch_fmnist --method dppf,sgdx)
set_tests_properties(example_libtorch_rejects_unknown_method PROPERTIES LABELS "${_lt_labels}"
  PASS_REGULAR_EXPRESSION "unknown method 'sgdx'")

if(FMNIST_DATA_FOUND)
  # The ResNet (BatchNorm statistics averaged at every sync) through the whole program, --quick:
  # the last line is the timing line, the one before the complete result of ddp.
  add_test(NAME example_libtorch_resnet_quick COMMAND libtorch_fmnist --quick --width 8 --method dppf,ddp --workers 2 --json)
  set_tests_properties(example_libtorch_resnet_quick PROPERTIES LABELS "${_lt_labels}" TIMEOUT 300
    PASS_REGULAR_EXPRESSION "\\{\"method\": \"ddp\", \"workers\": 2, \"tau\": 1, \"epochs\": 1, \"train_acc\": [0-9.e-]+, \"test_acc\": [0-9.e-]+, \"gen_gap\": [-0-9.e]+, \"train_loss\": [0-9.e-]+, \"test_loss\": [0-9.e-]+, \"relaxed_mv\": [0-9.e-]+, \"imv\": null, \"hessian_top\": null, \"comm_bytes\": [0-9]+, \"wall_s\": [0-9.e-]+\\}\n\\{\"method\": \"ddp\", \"forward_backward_ms\": [0-9.e-]+, \"local_step_ms\": [0-9.e-]+, \"sync_step_ms\": [0-9.e-]+")
  # Every other rule and AdamW on the MLP, --quick; the table must list each.
  add_test(NAME example_libtorch_mlp_every_rule COMMAND libtorch_fmnist --quick --model mlp --hidden 128 --optimizer adamw
    --lr 0.001 --weight-decay 0.01 --method local_sgd,elastic,leader,grawa,diloco,single --workers 3)
  set_tests_properties(example_libtorch_mlp_every_rule PROPERTIES LABELS "${_lt_labels}" TIMEOUT 300
    PASS_REGULAR_EXPRESSION "\\| local_sgd \\| 3 \\| 8 .*\\| elastic \\| 3 .*\\| leader \\| 3 .*\\| grawa \\| 3 .*\\| diloco \\| 3 .*\\| single \\| 1 \\| null \\|")
endif()

# flat_parameters against LibTorch itself (doctest; dppf_add_test comes from tests/CMakeLists.txt).
dppf_add_test(example_libtorch_flat_parameters test_flat_parameters.cpp LIBS libtorch_example_deps
  LABELS example example/libtorch)

# dppf's LocalSGD against torch.optim.SGD + PeriodicModelAverager over Gloo (localsgd_reference.py).
add_executable(libtorch_localsgd localsgd_check.cpp)
target_link_libraries(libtorch_localsgd PRIVATE libtorch_example_deps dppf_warnings)
find_program(LIBTORCH_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(FMNIST_DATA_FOUND AND LIBTORCH_PYTHON)
  add_test(NAME example_libtorch_localsgd_matches_pytorch COMMAND ${LIBTORCH_PYTHON}
    ${CMAKE_CURRENT_SOURCE_DIR}/localsgd_reference.py --exe $<TARGET_FILE:libtorch_localsgd> --data ${FMNIST_DATA_DIR})
  set_tests_properties(example_libtorch_localsgd_matches_pytorch PROPERTIES LABELS "${_lt_labels}" TIMEOUT 300
    PASS_REGULAR_EXPRESSION "OK: dppf's LocalSGD equals" FAIL_REGULAR_EXPRESSION "FAIL")
endif()

# --comm mpi and --comm gloo: two processes give the numbers of two threads.
if(TARGET dppf::mpi AND FMNIST_DATA_FOUND AND MPIEXEC_EXECUTABLE)
  add_test(NAME example_libtorch_mpi_matches_threads COMMAND ${CMAKE_COMMAND} -DCOMM=mpi -DMPIEXEC=${MPIEXEC_EXECUTABLE}
    -DEXE=$<TARGET_FILE:libtorch_fmnist> -P ${CMAKE_CURRENT_SOURCE_DIR}/comm_matches_threads.cmake)
  set_tests_properties(example_libtorch_mpi_matches_threads PROPERTIES LABELS "${_lt_labels};mpi" TIMEOUT 300)
endif()
if(TARGET dppf::gloo AND FMNIST_DATA_FOUND)
  add_test(NAME example_libtorch_gloo_matches_threads COMMAND ${CMAKE_COMMAND} -DCOMM=gloo
    -DEXE=$<TARGET_FILE:libtorch_fmnist> -P ${CMAKE_CURRENT_SOURCE_DIR}/comm_matches_threads.cmake)
  set_tests_properties(example_libtorch_gloo_matches_threads PROPERTIES LABELS "${_lt_labels};gloo" TIMEOUT 300)
endif()
