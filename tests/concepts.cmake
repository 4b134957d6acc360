# tests/test_concepts.cpp: archetypes that satisfy exactly each concept, run through every
# algorithm that accepts it; one validate() per options aggregate; buffer aliasing.
dppf_add_test(test_concepts test_concepts.cpp LABELS core concepts)

# tests/concepts/*.cpp: types that miss one member, rejected at the call with the concept's name,
# with g++ and clang (tests/concepts/compile_fail.cmake: each case must compile once the member is
# restored, fail without it, and the message must match). The name must stand alone and be
# followed by < or a quote, so a path (dppf/executor.hpp) or another name (thrust_executor<)
# cannot match.
# Each case and the regular expressions its message must match (all of them).
set(_dppf_concept_cases executor_without_synchronize executor_float_only optimizer_without_set_lr
                        consensus_without_sync schedule_without_step_argument state_element_mismatch)
set(_expect_executor_without_synchronize "(^|[^/a-z_])(dppf::)?executor[<'\"]")
set(_expect_executor_float_only "(^|[^/a-z_])(dppf::)?executor[<'\"]")
set(_expect_optimizer_without_set_lr "(^|[^/a-z_])(dppf::)?local_optimizer[<'\"]")
set(_expect_consensus_without_sync "(^|[^/a-z_])(dppf::)?consensus[<'\"]")
set(_expect_schedule_without_step_argument "(^|[^/a-z_])(dppf::)?lr_schedule[<'\"]")
# Both element types, in g++'s or clang's spelling of the instantiation (no ';' in a CMake list),
# and the explanation.
set(_expect_state_element_mismatch "require_state_element<float, double>|State = float. Param = double"
                                   "element type differs")
set(_dppf_concept_compilers "gxx=${CMAKE_CXX_COMPILER}")
find_program(DPPF_CLANGXX NAMES clang++-14 clang++)
if(DPPF_CLANGXX)
  list(APPEND _dppf_concept_compilers "clang=${DPPF_CLANGXX}")
else()
  message(STATUS "dppf: clang++ not found, concept diagnostics are checked with ${CMAKE_CXX_COMPILER} only")
endif()
foreach(_name IN LISTS _dppf_concept_cases)
  foreach(_compiler IN LISTS _dppf_concept_compilers)
    string(REPLACE "=" ";" _c "${_compiler}")
    list(GET _c 0 _tag)
    list(GET _c 1 _cxx)
    add_test(NAME concepts:${_name}:${_tag}
             COMMAND ${CMAKE_COMMAND} -DCXX=${_cxx} -DINCLUDE_DIR=${PROJECT_SOURCE_DIR}/include
                     -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/concepts/${_name}.cpp "-DEXPECT=${_expect_${_name}}"
                     -P ${CMAKE_CURRENT_SOURCE_DIR}/concepts/compile_fail.cmake)
    set_tests_properties(concepts:${_name}:${_tag} PROPERTIES LABELS concepts)
  endforeach()
endforeach()
