# A stand-in for doctest's own package (doctest 2.4.9, the single header beside this file) for
# GPU machines whose image has CUDA and CMake but no doctest and nothing installable:
# scripts/gpu-check.sh configures with -Ddoctest_DIR=<this directory> when the system has none.
# Defines what tests/CMakeLists.txt uses: the INTERFACE target doctest::doctest.
if(NOT TARGET doctest::doctest)
  add_library(doctest::doctest INTERFACE IMPORTED)
  set_target_properties(doctest::doctest PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CMAKE_CURRENT_LIST_DIR}")
endif()
set(doctest_VERSION 2.4.9)
