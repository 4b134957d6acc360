# The Gloo communicator (label gloo): in-process groups of threads, one rank each, meeting in a
# FileStore and connected over loopback TCP. Without Gloo: no tests, and its header is left out.
if(NOT TARGET dppf::gloo)
  message(STATUS "dppf: Gloo not found, no Gloo tests")
  dppf_header_test_skip(dppf/communicators/gloo.hpp "Gloo not found")
  dppf_umbrella_exclude(dppf/communicators/gloo.hpp "needs Gloo")
  return()
endif()
# Its own entry point, not in the umbrella: it needs Gloo and hiredis.
dppf_header_test_requires(dppf/communicators/gloo.hpp dppf::gloo)
dppf_umbrella_exclude(dppf/communicators/gloo.hpp "needs Gloo (dppf::gloo)")
dppf_add_test(test_gloo test_gloo.cpp LIBS dppf::gloo LABELS gloo)
set_tests_properties(test_gloo PROPERTIES TIMEOUT 120)
# start_all_reduce over Gloo: the communication thread and its own context.
dppf_add_test(test_gloo_async test_gloo_async.cpp LIBS dppf::gloo LABELS gloo)
set_tests_properties(test_gloo_async PROPERTIES TIMEOUT 180)
