# fashion_mnist --elastic on the emulated cluster (tests/cluster/fmnist_elastic.sh, cluster ids
# 168-169): a redis-server on a host of its own, four workers, one SIGKILLed after a sync drawn
# from a printed seed; the other three finish within one point of the no-fault run's accuracy.
# Once with --lost-shard drop and an overlapped sync (the no-fault run must equal plain --comm
# gloo), once with redeal and a bf16 sync.
# The fashion_mnist target is defined later (examples/), so it is named by generator expression.
include(${PROJECT_SOURCE_DIR}/examples/fashion_mnist/deps.cmake)
if(NOT TARGET dppf::gloo OR NOT COMMAND dppf_add_cluster_test OR NOT FMNIST_DEPS_FOUND OR NOT FMNIST_DATA_FOUND OR
   NOT DPPF_BUILD_EXAMPLES)
  return()
endif()
set(_id 168)
foreach(_mode drop redeal)
  dppf_add_cluster_test(fmnist.elastic_${_mode} fmnist_elastic.sh ${_id} ARGS $<TARGET_FILE:fashion_mnist> ${_mode} TIMEOUT 240)
  # Its recovery bound (timeout + 5 s) is tight on 2 cores: it runs alone, as the elastic ones do.
  set_tests_properties(cluster.fmnist.elastic_${_mode} PROPERTIES RUN_SERIAL TRUE)
  math(EXPR _id "${_id} + 1")
endforeach()
