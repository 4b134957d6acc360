# The example's sync flags (--overlap-steps, --sync-precision, --no-sync), run with threads.
#   PART=runs:    the defaults given explicitly print today's JSON bit for bit (times aside); an
#                 overlapped (d = 2) and a bf16 run of local_sgd,dppf --quick land within a stated
#                 bound of the blocking run's test accuracy; --no-sync sends (almost) nothing.
#   PART=refused: bad values and combinations the trainer refuses stop before training, exit 2 and
#                 name the flag (and, for a rule's refusal, carry the trainer's own message).
# Bounds, from seeds 1-3 on this build (--quick: one epoch, 12000 images, M = 4, tau = 8):
# |overlap 2 - blocking| was at most 0.0095 and |bf16 - blocking| at most 0.0009; the bounds
# below are twice those rounded up. The runs are deterministic with threads.
cmake_policy(VERSION 3.20)  # if() does not dereference quoted strings (CMP0054)
set(OVERLAP_BOUND 0.02)
set(BF16_BOUND 0.002)

function(run_json out)
  execute_process(COMMAND ${EXE} ${ARGN} OUTPUT_VARIABLE o ERROR_VARIABLE e RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fashion_mnist ${ARGN}: exit ${rc}\n${e}")
  endif()
  set(${out} "${o}" PARENT_SCOPE)
endfunction()

# The final JSON line of `method` in `text`, the value of `key` in it.
function(result_field text method key out)
  string(REGEX MATCH "\\{\"method\": \"${method}\", \"workers\"[^\n]*" line "${text}")
  if(line STREQUAL "")
    message(FATAL_ERROR "no result line of ${method} in:\n${text}")
  endif()
  string(JSON v GET "${line}" ${key})
  set(${out} "${v}" PARENT_SCOPE)
endfunction()

function(expect_close label text reference bound)
  foreach(m local_sgd dppf)
    result_field("${text}" ${m} test_acc a)
    result_field("${reference}" ${m} test_acc b)
    # CMake has no floating-point arithmetic
    execute_process(COMMAND python3 -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t else 1)" ${a} ${b} ${bound}
                    RESULT_VARIABLE far)
    if(NOT far EQUAL 0)
      message(FATAL_ERROR "${label}: ${m} test accuracy ${a} is more than ${bound} from the blocking run's ${b}")
    endif()
    message(STATUS "${label}: ${m} test accuracy ${a} (blocking ${b}, bound ${bound})")
  endforeach()
endfunction()

if(PART STREQUAL "runs")
  set(SMALL --method local_sgd,dppf --workers 2 --epochs 1 --train-limit 2000 --test-limit 1000 --hidden 64 --json)
  run_json(plain ${SMALL})
  run_json(explicit ${SMALL} --overlap-steps 0 --sync-precision full)
  foreach(v plain explicit)
    string(REGEX REPLACE "\"(train|wall)_s\": [0-9.e+-]+" "" ${v} "${${v}}")
  endforeach()
  if(NOT plain STREQUAL explicit)
    message(FATAL_ERROR "--overlap-steps 0 --sync-precision full changed the output:\n--- plain\n${plain}\n--- explicit\n${explicit}")
  endif()
  string(FIND "${plain}" "overlap_steps" has_field)
  if(NOT has_field EQUAL -1)
    message(FATAL_ERROR "a default run names the sync's form in its JSON:\n${plain}")
  endif()

  set(QUICK --method local_sgd,dppf --quick --json --sharpness-samples 0)
  run_json(blocking ${QUICK})
  run_json(overlapped ${QUICK} --overlap-steps 2)
  run_json(bf16 ${QUICK} --sync-precision bf16)
  run_json(floor ${QUICK} --no-sync)
  foreach(m local_sgd dppf)
    result_field("${overlapped}" ${m} overlap_steps d)
    result_field("${bf16}" ${m} sync_precision p)
    result_field("${floor}" ${m} no_sync n)
    if(NOT d EQUAL 2 OR NOT p STREQUAL "bf16" OR NOT n STREQUAL "ON")
      message(FATAL_ERROR "${m}: the JSON does not say the sync's form (overlap_steps ${d}, sync_precision ${p}, no_sync ${n})")
    endif()
    # The floor's workers never sync: only the start's agreement is counted, against a sync of the
    # whole model every 8 steps in the blocking run.
    result_field("${floor}" ${m} comm_bytes floor_bytes)
    result_field("${blocking}" ${m} comm_bytes blocking_bytes)
    math(EXPR limit "${blocking_bytes} / 1000")
    if(NOT floor_bytes LESS limit)
      message(FATAL_ERROR "${m} --no-sync sent ${floor_bytes} bytes (blocking: ${blocking_bytes}): a sync ran")
    endif()
  endforeach()
  expect_close("--overlap-steps 2" "${overlapped}" "${blocking}" ${OVERLAP_BOUND})
  expect_close("--sync-precision bf16" "${bf16}" "${blocking}" ${BF16_BOUND})
elseif(PART STREQUAL "refused")
  # Each: the arguments (| between them), then what stderr must contain.
  set(cases
    "--overlap-steps|two" "--overlap-steps expects an integer, got 'two'"
    "--overlap-steps|-1" "--overlap-steps: must be >= 0"
    "--sync-precision|fp8" "--sync-precision: unknown format 'fp8' (full, bf16 or fp16)"
    "--method|ddp|--overlap-steps|2" "--method ddp --overlap-steps 2: dppf: trainer: overlap_steps = 2: this rule (data_parallel) averages gradients"
    "--method|local_sgd,ddp|--overlap-steps|1" "--method ddp --overlap-steps 1: dppf: trainer: overlap_steps = 1: this rule (data_parallel)"
    "--method|grawa|--overlap-steps|1" "--method grawa --overlap-steps 1: dppf: trainer: overlap_steps = 1: this consensus rule has no delayed form"
    "--method|dppf|--overlap-steps|9" "--method dppf --overlap-steps 9: dppf: trainer: overlap_steps must be in [0, tau] = [0, 8]"
    "--method|leader|--sync-precision|fp16" "--method leader --sync-precision fp16: dppf: trainer: sync_precision = fp16: this consensus rule reads the other workers beyond their mean"
    "--method|ddp|--no-sync" "--no-sync: ddp has no periodic sync to remove"
    "--method|dppf|--no-sync|--sync-precision|bf16" "--no-sync: there is no sync to overlap or compress")
  if(GLOO)  # (--elastic needs --comm gloo, refused by a build without it)
    list(APPEND cases
      "--comm|gloo|--elastic|--tau|4|--overlap-steps|4" "--elastic: --overlap-steps must be below --tau")
  endif()
  list(LENGTH cases n)
  math(EXPR last "${n} - 1")
  foreach(i RANGE 0 ${last} 2)
    math(EXPR j "${i} + 1")
    list(GET cases ${i} args)
    string(REPLACE "|" ";" args "${args}")
    list(GET cases ${j} want)
    string(REPLACE ";" " " shown "${args}")
    execute_process(COMMAND ${EXE} ${args} OUTPUT_VARIABLE o ERROR_VARIABLE e RESULT_VARIABLE rc TIMEOUT 30)
    string(FIND "${e}" "${want}" at)
    if(NOT rc EQUAL 2 OR at EQUAL -1 OR NOT o STREQUAL "")  # 2: the usage error
      message(FATAL_ERROR "fashion_mnist ${shown}: exit ${rc}, expected a refusal saying '${want}'\nstdout: ${o}\nstderr: ${e}")
    endif()
    message(STATUS "refused: ${shown}")
  endforeach()
else()
  message(FATAL_ERROR "PART must be runs or refused")
endif()
