# Reliability (issue 8): the safetensors reader/writer, checkpoints, the fuzz corpus replay and
# an independent Python reader of files dppf writes.
dppf_add_test(test_safetensors test_safetensors.cpp LABELS reliability)

# An independent reader (Python with json and numpy) checks a file dppf wrote, bit for bit.
# Skipped (exit 77) when /usr/bin/python3 or numpy is missing.
add_executable(dppf_checkpoint_sample test_checkpoint_sample.cpp)
target_link_libraries(dppf_checkpoint_sample PRIVATE dppf::core dppf_warnings)
add_test(NAME checkpoint_python_reader
  COMMAND sh -c "[ -x /usr/bin/python3 ] || exit 77; \"$1\" \"$2\" && /usr/bin/python3 \"$3\" --verify-sample \"$2\""
          sh $<TARGET_FILE:dppf_checkpoint_sample> ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_sample.safetensors
          ${PROJECT_SOURCE_DIR}/tools/read_checkpoint.py)
set_tests_properties(checkpoint_python_reader PROPERTIES LABELS reliability SKIP_RETURN_CODE 77)
