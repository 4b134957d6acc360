# mpi_communicator's watchdog across 3 emulated hosts (tests/cluster/mpi_watchdog.sh; cluster ids
# 240..244): a healthy job, and a rank stopped, a host frozen, a link cut and a rank killed
# mid-training, each of which must end the job with a report naming the rank or host within the
# timeout + 10 s.
# dppf_add_cluster_test comes from cluster.cmake (read before this file); the probe from
# mpi_watchdog.cmake (include-guarded, so the glob's later include of it adds nothing).
include(${CMAKE_CURRENT_LIST_DIR}/mpi_watchdog.cmake)
if(TARGET mpi_watchdog_probe)
  set(_id 240)
  foreach(_fault none stop freeze cut kill)
    dppf_add_cluster_test(mpi.${_fault} mpi_watchdog.sh ${_id} ARGS $<TARGET_FILE:mpi_watchdog_probe> ${_fault})
    math(EXPR _id "${_id} + 1")
  endforeach()
endif()
