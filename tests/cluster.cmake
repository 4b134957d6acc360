# Tests on an emulated cluster (scripts/cluster.sh): each script makes its own hosts with a
# cluster id of its own (tests run in parallel), runs, asserts and tears down in a trap. They
# need root; without it they exit 77 and CTest reports them skipped with the reason, or fail
# when DPPF_REQUIRE_CLUSTER=1 is in the environment (as .ci/run sets it) (label `cluster`).
#
#   dppf_add_cluster_test(<name> <script> <cluster id> [ARGS ...] [TIMEOUT s])
function(dppf_add_cluster_test name script id)
  cmake_parse_arguments(ARG "" "TIMEOUT" "ARGS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 60)
  endif()
  add_test(NAME cluster.${name} COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/cluster/${script} ${PROJECT_SOURCE_DIR} ${id} ${ARG_ARGS})
  set_tests_properties(cluster.${name} PROPERTIES LABELS cluster SKIP_RETURN_CODE 77 TIMEOUT ${ARG_TIMEOUT})
endfunction()

dppf_add_cluster_test(script cluster_script.sh 201)

if(TARGET dppf::gloo)
  add_executable(gloo_probe ${CMAKE_CURRENT_LIST_DIR}/cluster/gloo_probe.cpp)
  target_link_libraries(gloo_probe PRIVATE dppf::gloo dppf_warnings)
  target_include_directories(gloo_probe PRIVATE ${PROJECT_SOURCE_DIR}/examples)  # common/gloo_env.hpp
  set(_id 210)
  foreach(_fault none stop kill cut)
    dppf_add_cluster_test(gloo.${_fault} gloo_cluster.sh ${_id} ARGS $<TARGET_FILE:gloo_probe> ${_fault})
    math(EXPR _id "${_id} + 1")
  endforeach()
endif()
