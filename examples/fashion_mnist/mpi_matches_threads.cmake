# Runs the same small training with 2 threads and with 2 MPI processes; the JSON results must
# agree, to the printed digits, in everything but the times.
set(ARGS --method dppf,ddp --workers 2 --epochs 1 --train-limit 2000 --test-limit 1000 --hidden 64 --json)
execute_process(COMMAND ${EXE} ${ARGS} --comm threads OUTPUT_VARIABLE threads RESULT_VARIABLE rc_threads)
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${EXE} ${ARGS} --comm mpi
  OUTPUT_VARIABLE mpi RESULT_VARIABLE rc_mpi)
if(NOT rc_threads EQUAL 0 OR NOT rc_mpi EQUAL 0)
  message(FATAL_ERROR "exit codes: threads ${rc_threads}, mpi ${rc_mpi}\n${mpi}")
endif()
string(REGEX REPLACE "\"(train|wall)_s\": [0-9.e+-]+" "" threads "${threads}")
string(REGEX REPLACE "\"(train|wall)_s\": [0-9.e+-]+" "" mpi "${mpi}")
if(NOT threads STREQUAL mpi)
  message(FATAL_ERROR "threads and mpi runs differ:\n--- threads\n${threads}\n--- mpi\n${mpi}")
endif()
string(LENGTH "${mpi}" n)
if(n LESS 200)
  message(FATAL_ERROR "too little output: ${mpi}")
endif()
message(STATUS "threads and mpi agree:\n${mpi}")
