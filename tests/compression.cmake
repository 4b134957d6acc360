# Compressed sync (trainer_options::sync_precision): the bf16 / fp16 codecs against a table of
# every value, the compressed mean against an independent replay, the exchange collectives, the
# convex problem over 1000 syncs, wire bytes, full = today's bits, errors.
dppf_add_test(test_compression test_compression.cpp LABELS consensus)
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)
dppf_add_mpi_test(test_compression_mpi test_compression_mpi.cpp NP 2 3 4 LABELS consensus)
if(TARGET dppf::gloo)
  dppf_add_test(test_compression_gloo test_compression_gloo.cpp LIBS dppf::gloo LABELS gloo)
  set_tests_properties(test_compression_gloo PROPERTIES TIMEOUT 120)
endif()
