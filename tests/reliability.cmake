# Reliability: the safetensors reader/writer, checkpoints, the fuzz corpus replay and
# an independent Python reader of files dppf writes.
dppf_add_test(test_safetensors test_safetensors.cpp LABELS reliability)

# An independent reader (Python with json and numpy) checks files dppf wrote, bit for bit, and
# gives a second opinion on which corpus files are malformed.
# Skipped (exit 77) when /usr/bin/python3 or numpy is missing.
add_executable(dppf_checkpoint_sample test_checkpoint_sample.cpp)
target_link_libraries(dppf_checkpoint_sample PRIVATE dppf::core dppf_warnings)
add_test(NAME checkpoint_python_reader
  COMMAND sh -c "[ -x /usr/bin/python3 ] || exit 77; \"$1\" \"$2\" \"$3\" && /usr/bin/python3 \"$4\" --verify-sample \"$2\" && /usr/bin/python3 \"$4\" --verify-trainer-sample \"$3\" && /usr/bin/python3 \"$4\" --corpus \"$5\""
          sh $<TARGET_FILE:dppf_checkpoint_sample> ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_sample.safetensors
          ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_trainer_sample.safetensors ${PROJECT_SOURCE_DIR}/tools/read_checkpoint.py
          ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus)
set_tests_properties(checkpoint_python_reader PROPERTIES LABELS reliability SKIP_RETURN_CODE 77)

# The fuzz corpus, replayed with the ordinary compiler (no libFuzzer needed).
dppf_add_test(test_checkpoint_corpus test_checkpoint_corpus.cpp LABELS reliability)
target_compile_definitions(test_checkpoint_corpus PRIVATE DPPF_FUZZ_CORPUS_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus")
target_include_directories(test_checkpoint_corpus PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# libFuzzer on the reader for a bounded time (scripts/fuzz.sh builds it with clang, ASan and
# UBSan; skipped when no clang with libFuzzer is installed). Label `fuzz`; select or exclude
# with ctest -L fuzz / -LE fuzz. Longer runs: scripts/fuzz.sh 3600.
set(DPPF_FUZZ_SECONDS 30 CACHE STRING "Seconds the fuzz_safetensors CTest entry fuzzes for")
if(NOT CMAKE_CXX_FLAGS MATCHES "-fsanitize")  # the fuzzer has its own sanitizers: run it once
add_test(NAME fuzz_safetensors
  COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/fuzz.sh ${DPPF_FUZZ_SECONDS} ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
math(EXPR _dppf_fuzz_timeout "${DPPF_FUZZ_SECONDS} + 300")
set_tests_properties(fuzz_safetensors PROPERTIES LABELS "reliability;fuzz" SKIP_RETURN_CODE 77
  TIMEOUT ${_dppf_fuzz_timeout})
endif()

# Checkpoints of optimizer states and trainers: resume bit for bit, collective failure.
dppf_add_test(test_checkpoint test_checkpoint.cpp LABELS reliability)

# The same over MPI processes (tests/mpi.cmake: mpiexec, one CTest test per process count).
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_checkpoint_mpi test_checkpoint_mpi.cpp NP 3 1 LABELS reliability)
