# The Fashion-MNIST example's own tests: its IDX reader, MLP, CNN and training driver (here), and
# its GPU path (gpu.cmake). Included by ../CMakeLists.txt when DPPF_BUILD_TESTS is ON, after
# tests/ (which defines dppf_add_test and dppf_add_gpu_test). Needs OpenBLAS and zlib; the
# end-to-end test also needs the Debian package dataset-fashion-mnist.
if(FMNIST_DEPS_FOUND)
  dppf_add_test(test_fashion_mnist ${CMAKE_CURRENT_LIST_DIR}/test_fashion_mnist.cpp LIBS fmnist_deps LABELS fashion_mnist)
  target_compile_definitions(test_fashion_mnist PRIVATE FMNIST_DATA_DIR="${FMNIST_DATA_DIR}")
  if(FMNIST_DATA_FOUND)
    dppf_add_test(test_fashion_mnist_train ${CMAKE_CURRENT_LIST_DIR}/test_fashion_mnist_train.cpp LIBS fmnist_deps LABELS fashion_mnist)
    target_compile_definitions(test_fashion_mnist_train PRIVATE FMNIST_DATA_DIR="${FMNIST_DATA_DIR}")
    # ddp's gradient buckets (--bucket-mb): the same model as one all-reduce, the backward's reports.
    dppf_add_test(test_fashion_mnist_buckets ${CMAKE_CURRENT_LIST_DIR}/test_fashion_mnist_buckets.cpp LIBS fmnist_deps LABELS fashion_mnist)
    target_compile_definitions(test_fashion_mnist_buckets PRIVATE FMNIST_DATA_DIR="${FMNIST_DATA_DIR}")
  endif()
  # --overlap-steps, --sync-precision, --no-sync: refused by name (no data needed) and run (sync_flags.cmake).
  add_test(NAME example_fashion_mnist_sync_flags_refused COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:fashion_mnist>
    -DPART=refused -DGLOO=$<BOOL:$<TARGET_EXISTS:dppf::gloo>> -P ${CMAKE_CURRENT_LIST_DIR}/sync_flags.cmake)
  set_tests_properties(example_fashion_mnist_sync_flags_refused PROPERTIES LABELS "example;fashion_mnist" TIMEOUT 120)
  if(FMNIST_DATA_FOUND)
    add_test(NAME example_fashion_mnist_sync_flags COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:fashion_mnist>
      -DPART=runs -P ${CMAKE_CURRENT_LIST_DIR}/sync_flags.cmake)
    set_tests_properties(example_fashion_mnist_sync_flags PROPERTIES LABELS "example;fashion_mnist" TIMEOUT 300)
  endif()
  if(TARGET dppf::gloo)
    # --elastic's data dealing (--lost-shard drop | redeal) against the rules it states.
    dppf_add_test(test_fashion_mnist_elastic ${CMAKE_CURRENT_LIST_DIR}/test_fashion_mnist_elastic.cpp LIBS fmnist_deps dppf::gloo LABELS fashion_mnist)
    # A newcomer let in at a checkpoint step joins the group's save (elastic_newcomer.sh; loopback).
    find_program(FMNIST_PYTHON3 NAMES python3)
    if(FMNIST_DATA_FOUND AND FMNIST_PYTHON3)
      add_test(NAME example_fashion_mnist_elastic_newcomer_checkpoint
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/elastic_newcomer.sh $<TARGET_FILE:fashion_mnist> ${FMNIST_PYTHON3})
      set_tests_properties(example_fashion_mnist_elastic_newcomer_checkpoint PROPERTIES LABELS "example;fashion_mnist;gloo"
        TIMEOUT 180 PASS_REGULAR_EXPRESSION "PASS: newcomer let in")
    endif()
  endif()
  if(NOT FMNIST_DATA_FOUND)
    message(STATUS "dppf: test_fashion_mnist_train skipped: no Fashion-MNIST files in ${FMNIST_DATA_DIR}")
  endif()
else()
  message(STATUS "dppf: Fashion-MNIST tests skipped: missing ${FMNIST_DEPS_MISSING}")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/gpu.cmake)
