# Runs the same small training (the MLP, DPPF and DDP) with 2 threads and with 2 MPI processes;
# the JSON results must agree, to the printed digits, in everything but the timings.
set(ARGS --quick --model mlp --hidden 64 --method dppf,ddp --workers 2 --json)
execute_process(COMMAND ${EXE} ${ARGS} --comm threads OUTPUT_VARIABLE threads RESULT_VARIABLE rc_threads)
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${EXE} ${ARGS} --comm mpi
  OUTPUT_VARIABLE mpi RESULT_VARIABLE rc_mpi)
if(NOT rc_threads EQUAL 0 OR NOT rc_mpi EQUAL 0)
  message(FATAL_ERROR "exit codes: threads ${rc_threads}, mpi ${rc_mpi}\n${mpi}")
endif()
foreach(run threads mpi)  # timings differ from run to run
  string(REGEX REPLACE "\"(wall_s|[a-z_]+_ms|optimizer_and_sync_share)\": [0-9.e+-]+" "" ${run} "${${run}}")
endforeach()
if(NOT threads STREQUAL mpi)
  message(FATAL_ERROR "threads and mpi runs differ:\n--- threads\n${threads}\n--- mpi\n${mpi}")
endif()
string(LENGTH "${mpi}" n)
if(n LESS 200)
  message(FATAL_ERROR "too little output: ${mpi}")
endif()
message(STATUS "threads and mpi agree:\n${mpi}")
