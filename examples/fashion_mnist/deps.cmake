# What the Fashion-MNIST example and its tests need: OpenBLAS (cblas_sgemm and
# openblas_set_num_threads) and zlib. Defines the INTERFACE target fmnist_deps and sets
# FMNIST_DEPS_FOUND (and FMNIST_DATA_FOUND) in the including scope; included by
# examples/fashion_mnist and tests/fashion_mnist.cmake.

# The Debian package dataset-fashion-mnist; what needs the real data is added only when it is there.
set(FMNIST_DATA_DIR /usr/share/datasets/fashion-mnist CACHE PATH "Directory with the Fashion-MNIST IDX .gz files")
if(EXISTS ${FMNIST_DATA_DIR}/train-images-idx3-ubyte.gz AND EXISTS ${FMNIST_DATA_DIR}/t10k-labels-idx1-ubyte.gz)
  set(FMNIST_DATA_FOUND ON)
else()
  set(FMNIST_DATA_FOUND OFF)
endif()

if(TARGET fmnist_deps)
  set(FMNIST_DEPS_FOUND ON)
  return()
endif()
set(FMNIST_DEPS_FOUND OFF)
set(FMNIST_DEPS_MISSING "")
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(FMNIST_OPENBLAS QUIET IMPORTED_TARGET GLOBAL openblas)
endif()
if(NOT FMNIST_OPENBLAS_FOUND)
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS QUIET)
  find_path(FMNIST_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas)
  unset(BLA_VENDOR)
endif()
find_package(ZLIB QUIET)

if(FMNIST_OPENBLAS_FOUND)
  set(_fmnist_blas PkgConfig::FMNIST_OPENBLAS)
elseif(BLAS_FOUND AND FMNIST_CBLAS_INCLUDE_DIR)
  add_library(fmnist_openblas INTERFACE)
  target_link_libraries(fmnist_openblas INTERFACE BLAS::BLAS)
  target_include_directories(fmnist_openblas INTERFACE ${FMNIST_CBLAS_INCLUDE_DIR})
  set(_fmnist_blas fmnist_openblas)
else()
  list(APPEND FMNIST_DEPS_MISSING "OpenBLAS (Debian: libopenblas-dev)")
endif()
if(NOT ZLIB_FOUND)
  list(APPEND FMNIST_DEPS_MISSING "zlib (Debian: zlib1g-dev)")
endif()

if(NOT FMNIST_DEPS_MISSING)
  add_library(fmnist_deps INTERFACE)
  target_link_libraries(fmnist_deps INTERFACE dppf::core ${_fmnist_blas} ZLIB::ZLIB)
  target_include_directories(fmnist_deps INTERFACE ${CMAKE_CURRENT_LIST_DIR})
  set(FMNIST_DEPS_FOUND ON)
endif()

