# Try-compiles one case of tests/concepts/: with -DDPPF_COMPLETE the case must compile (the type
# is whole, so the call itself is right); without it the call must be rejected, and the
# compiler's message must match every regular expression in EXPECT (the concept's name, or both
# element types). Run by CTest through tests/concepts.cmake:
#   cmake -DCXX=<compiler> -DINCLUDE_DIR=<include> -DSOURCE=<case.cpp> "-DEXPECT=<re1>;<re2>" -P compile_fail.cmake
cmake_policy(VERSION 3.25)
set(ENV{LC_ALL} C)  # ASCII quotes in g++'s messages
set(flags -std=c++20 -fsyntax-only -I${INCLUDE_DIR})
execute_process(COMMAND ${CXX} ${flags} -DDPPF_COMPLETE ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} does not compile even with its missing member restored:\n${out}")
endif()
execute_process(COMMAND ${CXX} ${flags} ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but its type misses a member the concept requires")
endif()
foreach(re IN LISTS EXPECT)
  if(NOT out MATCHES "${re}")
    message(FATAL_ERROR "${SOURCE} was rejected, but the message does not match '${re}':\n${out}")
  endif()
endforeach()
message(STATUS "${SOURCE}: rejected as expected")
