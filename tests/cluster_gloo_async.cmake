# Asynchronous all-reduces over Gloo on the emulated cluster (label cluster): a fault on one host
# while one is in flight; the others raise at wait and tear down in bounded time. Ids 100..102.
if(NOT TARGET dppf::gloo OR NOT COMMAND dppf_add_cluster_test)
  return()
endif()
add_executable(gloo_async_probe ${CMAKE_CURRENT_LIST_DIR}/cluster/gloo_async_probe.cpp)
target_link_libraries(gloo_async_probe PRIVATE dppf::gloo dppf_warnings)
target_include_directories(gloo_async_probe PRIVATE ${PROJECT_SOURCE_DIR}/examples)  # common/gloo_env.hpp
set(_id 100)
foreach(_fault stop kill cut)
  dppf_add_cluster_test(gloo_async.${_fault} gloo_async_fault.sh ${_id} ARGS $<TARGET_FILE:gloo_async_probe> ${_fault})
  math(EXPR _id "${_id} + 1")
endforeach()
