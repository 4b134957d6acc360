# The 0.1 spellings kept for one release: a program written with them compiles, runs and gets the
# right numbers (aliases.run), and each old name warns, naming its 0.2 replacement
# (aliases.warn: compiled with -Werror=deprecated-declarations, must fail with those messages).
add_executable(aliases_old_names aliases/old_names.cpp)
target_link_libraries(aliases_old_names PRIVATE dppf::core)
target_compile_options(aliases_old_names PRIVATE -Wno-deprecated-declarations)
add_test(NAME aliases.run COMMAND aliases_old_names)
set_tests_properties(aliases.run PROPERTIES LABELS core PASS_REGULAR_EXPRESSION "0.1 names: ok")

# clang 14 does not diagnose uses of a deprecated alias template (dppf::counting<C>): there it
# is left out of the expected messages, g++ checks it.
set(_renamed thread_group thread_communicator host_executor single_communicator counting_communicator
    host_parallel_executor)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(REMOVE_ITEM _renamed counting_communicator)
endif()
list(TRANSFORM _renamed PREPEND "renamed it dppf::")
list(JOIN _renamed ".*" _expected)
add_test(NAME aliases.warn
         COMMAND ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -Werror=deprecated-declarations
                 -I${PROJECT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/aliases/old_names.cpp)
set_tests_properties(aliases.warn PROPERTIES LABELS core PASS_REGULAR_EXPRESSION "${_expected}")
