# Runs the same small training (the MLP, DPPF and DDP) with 2 threads and with 2 processes over
# COMM (mpi: started by MPIEXEC; gloo: two processes meeting in a fresh directory); the JSON
# results must agree, to the printed digits, in everything but the timings.
set(ARGS --quick --model mlp --hidden 64 --method dppf,ddp --workers 2 --json)
execute_process(COMMAND ${EXE} ${ARGS} --comm threads OUTPUT_VARIABLE threads RESULT_VARIABLE rc_threads)
if(COMM STREQUAL "mpi")
  execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${EXE} ${ARGS} --comm mpi
    OUTPUT_VARIABLE mpi RESULT_VARIABLE rc_mpi TIMEOUT 200)
else()
  # The two commands run at once (a pipe, which rank 0 never reads); rank 0 prints.
  string(RANDOM LENGTH 12 tag)
  set(store ${CMAKE_CURRENT_BINARY_DIR}/libtorch_gloo_store_${tag})
  file(MAKE_DIRECTORY ${store})
  execute_process(COMMAND ${EXE} ${ARGS} --comm gloo --rank 1 --size 2 --store ${store}
                  COMMAND ${EXE} ${ARGS} --comm gloo --rank 0 --size 2 --store ${store}
    OUTPUT_VARIABLE mpi RESULTS_VARIABLE rc_all TIMEOUT 200)
  file(REMOVE_RECURSE ${store})
  set(rc_mpi 0)
  foreach(rc IN LISTS rc_all)
    if(NOT rc EQUAL 0)
      set(rc_mpi "${rc_all}")
    endif()
  endforeach()
endif()
if(NOT rc_threads EQUAL 0 OR NOT rc_mpi EQUAL 0)
  message(FATAL_ERROR "exit codes: threads ${rc_threads}, ${COMM} ${rc_mpi}\n${mpi}")
endif()
foreach(run threads mpi)  # timings differ from run to run
  string(REGEX REPLACE "\"(wall_s|[a-z_]+_ms|optimizer_and_sync_share)\": [0-9.e+-]+" "" ${run} "${${run}}")
endforeach()
if(NOT threads STREQUAL mpi)
  message(FATAL_ERROR "threads and ${COMM} runs differ:\n--- threads\n${threads}\n--- ${COMM}\n${mpi}")
endif()
string(LENGTH "${mpi}" n)
if(n LESS 200)
  message(FATAL_ERROR "too little output: ${mpi}")
endif()
message(STATUS "threads and ${COMM} agree:\n${mpi}")
