# The elastic group on the emulated cluster (label cluster): a redis-server on a host of its own,
# four workers, one fault each (drawn from a printed seed; see tests/cluster/elastic_cluster.sh).
# Cluster ids 160..166. 8 to 21 s each, 90 s one after the other.
if(NOT TARGET dppf::gloo OR NOT COMMAND dppf_add_cluster_test)
  return()
endif()
add_executable(elastic_probe ${CMAKE_CURRENT_LIST_DIR}/cluster/elastic_probe.cpp)
target_link_libraries(elastic_probe PRIVATE dppf::gloo dppf_warnings)
set(_id 160)
foreach(_scenario kill stop cut split join twice restore)
  dppf_add_cluster_test(elastic.${_scenario} elastic_cluster.sh ${_id} ARGS $<TARGET_FILE:elastic_probe> ${_scenario} TIMEOUT 90)
  # Their recovery bounds (timeout + 5 s) are tight: on 2 cores they run alone.
  set_tests_properties(cluster.elastic.${_scenario} PROPERTIES RUN_SERIAL TRUE)
  math(EXPR _id "${_id} + 1")
endforeach()
