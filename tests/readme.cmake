# readme.example: the C++ block of README.md between <!-- readme-example:begin --> and
# <!-- readme-example:end --> is compiled (strict warnings) and run; its output must contain the
# text of <!-- readme-example:expect TEXT -->. To change the example, edit README.md only.
# Run as a script (cmake -P readme.cmake -DEXE=... -DEXPECT=...) this file is the check itself.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_policy(VERSION 3.25)
  execute_process(COMMAND ${EXE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "README example output:\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the README example exited with ${rc}")
  endif()
  string(FIND "${out}" "${EXPECT}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the README example's output lacks \"${EXPECT}\"")
  endif()
  return()
endif()

set(_readme ${PROJECT_SOURCE_DIR}/README.md)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_readme})
file(READ ${_readme} _text)
string(REGEX MATCH "<!-- readme-example:begin -->[ \t\r\n]*```cpp\n(.*)```[ \t\r\n]*<!-- readme-example:end -->" _block "${_text}")
set(_code "${CMAKE_MATCH_1}")
string(REGEX MATCH "<!-- readme-example:expect ([^\n]*) -->" _expect_line "${_text}")
set(_expect "${CMAKE_MATCH_1}")
if(NOT _code OR NOT _expect)
  message(FATAL_ERROR "README.md lacks the example block (```cpp between <!-- readme-example:begin --> and "
                      "<!-- readme-example:end -->) or its <!-- readme-example:expect ... --> line")
endif()
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/readme/readme_example.cpp CONTENT "${_code}" @ONLY)
add_executable(readme_example ${CMAKE_CURRENT_BINARY_DIR}/readme/readme_example.cpp)
target_link_libraries(readme_example PRIVATE dppf::core dppf_warnings)
add_test(NAME readme.example
         COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:readme_example> "-DEXPECT=${_expect}"
                 -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(readme.example PROPERTIES LABELS readme)
