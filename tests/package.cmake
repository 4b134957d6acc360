# The package as consumers see it (label `package`):
#   package.install                 cmake --install of this build tree into a fresh prefix (fixture)
#   package.consumer.installed      tests/consumer/installed: find_package(dppf 0.2 CONFIG REQUIRED
#                                   COMPONENTS mpi) against that prefix; builds and runs its tests
#   package.consumer.subproject     tests/consumer/subproject: dppf through FetchContent(SOURCE_DIR)
#   package.request.*               wrong requests (unknown or unbuilt component, incompatible
#                                   version) fail at configure time with a message that says why
option(DPPF_TEST_PACKAGE "Test the installed package with consumer projects" ON)
if(NOT DPPF_TEST_PACKAGE OR NOT DPPF_INSTALL)
  return()
endif()

set(_pkg_dir ${CMAKE_CURRENT_BINARY_DIR}/package)
set(_pkg_prefix ${_pkg_dir}/prefix)
set(_pkg_src ${CMAKE_CURRENT_SOURCE_DIR}/consumer)
if(TARGET dppf::mpi)
  set(_pkg_mpi ON)
else()
  set(_pkg_mpi OFF)
endif()
if(TARGET dppf::gloo)
  set(_pkg_gloo ON)
else()
  set(_pkg_gloo OFF)
endif()
# The consumers use this build's compiler, without this build's flags (sanitizers included).
set(_pkg_options -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release
                 -DDPPF_CONSUMER_MPI=${_pkg_mpi} -DDPPF_CONSUMER_GLOO=${_pkg_gloo} -DDPPF_CONSUMER_VERSION=${PROJECT_VERSION})

add_test(NAME package.install
         COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${PROJECT_BINARY_DIR} -DPREFIX=${_pkg_prefix} -DCONFIG=$<CONFIG>
                 -P ${_pkg_src}/install.cmake)
set_tests_properties(package.install PROPERTIES FIXTURES_SETUP dppf_installed)

add_test(NAME package.consumer.installed
         COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${_pkg_src}/installed ${_pkg_dir}/installed
                 --build-generator ${CMAKE_GENERATOR}
                 --build-options ${_pkg_options} -DCMAKE_PREFIX_PATH=${_pkg_prefix}
                                 -DDPPF_CONSUMER_PREFIX=${_pkg_prefix}
                 --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
set_tests_properties(package.consumer.installed PROPERTIES FIXTURES_REQUIRED dppf_installed)

add_test(NAME package.consumer.subproject
         COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${_pkg_src}/subproject ${_pkg_dir}/subproject
                 --build-generator ${CMAKE_GENERATOR}
                 --build-options ${_pkg_options} -DDPPF_SOURCE_DIR=${PROJECT_SOURCE_DIR}
                 --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)

# dppf_package_request_test(<name> <regex> [VERSION <v>] COMPONENTS <c...> [ARGS <cmake args...>])
function(dppf_package_request_test name expect)
  cmake_parse_arguments(ARG "" "VERSION" "COMPONENTS;ARGS" ${ARGN})
  list(JOIN ARG_COMPONENTS " " components)
  set(args -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_PREFIX_PATH=${_pkg_prefix}
           -DDPPF_REQUEST_VERSION=${ARG_VERSION} "-DDPPF_REQUEST_COMPONENTS=${components}" ${ARG_ARGS})
  list(JOIN args "|" args)
  add_test(NAME package.request.${name}
           COMMAND ${CMAKE_COMMAND} -DSOURCE=${_pkg_src}/request -DBINARY=${_pkg_dir}/request-${name}
                   "-DEXPECT=${expect}" "-DARGS=${args}" -P ${_pkg_src}/expect_failure.cmake)
  set_tests_properties(package.request.${name} PROPERTIES FIXTURES_REQUIRED dppf_installed)
endfunction()

dppf_package_request_test(unknown_component "Component 'bogus' is not available: dppf was installed without it"
                          VERSION 0.2 COMPONENTS core bogus)
foreach(_comp cuda nccl mpi gloo)
  if(NOT TARGET dppf::${_comp})
    dppf_package_request_test(unbuilt_${_comp} "Component '${_comp}' is not available: dppf was installed without it"
                              COMPONENTS ${_comp})
  endif()
endforeach()
if(TARGET dppf::mpi)
  # Installed with MPI, used on a machine without it: the mpi component says what it misses.
  dppf_package_request_test(mpi_dependency_missing "Component 'mpi' is not available: it needs MPI COMPONENTS CXX, which was not found"
                            COMPONENTS mpi ARGS -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON)
endif()
if(TARGET dppf::gloo)
  dppf_package_request_test(gloo_dependency_missing "Component 'gloo' is not available: it needs Gloo CONFIG, which was not found"
                            COMPONENTS gloo ARGS -DCMAKE_DISABLE_FIND_PACKAGE_Gloo=ON)
endif()
math(EXPR _next_minor "${PROJECT_VERSION_MINOR} + 1")
math(EXPR _next_major "${PROJECT_VERSION_MAJOR} + 1")
dppf_package_request_test(newer_minor "compatible with requested version \"${PROJECT_VERSION_MAJOR}.${_next_minor}\""
                          VERSION ${PROJECT_VERSION_MAJOR}.${_next_minor} COMPONENTS core)
dppf_package_request_test(other_major "compatible with requested version \"${_next_major}.0\""
                          VERSION ${_next_major}.0 COMPONENTS core)

get_property(_pkg_tests DIRECTORY PROPERTY TESTS)
list(FILTER _pkg_tests INCLUDE REGEX "^package\\.")
set_tests_properties(${_pkg_tests} PROPERTIES LABELS package TIMEOUT 600)
