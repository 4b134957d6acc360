# cmake -DSOURCE=<project> -DBINARY=<dir> -DEXPECT=<regex> -DARGS=<a|b|...> -P expect_failure.cmake
cmake_policy(VERSION 3.25)
# Configures a project that must FAIL, with output matching EXPECT (a wrong request to
# find_package(dppf) must fail cleanly and say why).
file(REMOVE_RECURSE ${BINARY})
string(REPLACE "|" ";" ARGS "${ARGS}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${BINARY} ${ARGS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}\n${err}")
# CMake wraps long messages: compare with all whitespace runs as one space.
string(REGEX REPLACE "[ \t\r\n]+" " " flat "${all}")
if(rc EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE} succeeded, but it must fail:\n${all}")
endif()
if(NOT flat MATCHES "${EXPECT}")
  message(FATAL_ERROR "configuring ${SOURCE} failed without the expected message (${EXPECT}):\n${all}")
endif()
message(STATUS "failed as expected:\n${err}")
