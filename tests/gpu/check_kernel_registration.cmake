# Every kernel a CUDA executable registers on the host has device code in its fat binary.
#
#   cmake -DEXE=<executable> -DOBJCOPY=<objcopy> -DWORK=<scratch dir> -P check_kernel_registration.cmake
#
# nvcc's host stubs register each __global__ function by its mangled name (a string in .rodata);
# the device code (.nv_fatbin) holds the same names. A name registered but absent from the device
# code fails only at run time, at the launch ("invalid device function"): the class of nvcc bug
# that cv-qualified kernel template arguments ran into (detail/cuda_kernels.cuh). This reads both
# sides of the binary, so CI finds such a mismatch without a GPU. When the fat binary is
# compressed (no readable names in it) the check prints "SKIPPED" (CTest: skipped).
cmake_policy(VERSION 3.25)
foreach(v EXE OBJCOPY WORK)
  if(NOT ${v})
    message(FATAL_ERROR "check_kernel_registration: -D${v}= is required")
  endif()
endforeach()
file(MAKE_DIRECTORY ${WORK})
get_filename_component(name ${EXE} NAME)
set(host_bin ${WORK}/${name}.rodata)
set(dev_bin ${WORK}/${name}.nv_fatbin)
execute_process(COMMAND ${OBJCOPY} -O binary --only-section=.rodata ${EXE} ${host_bin} RESULT_VARIABLE rc1)
execute_process(COMMAND ${OBJCOPY} -O binary --only-section=.nv_fatbin ${EXE} ${dev_bin} RESULT_VARIABLE rc2)
if(NOT rc1 EQUAL 0 OR NOT rc2 EQUAL 0 OR NOT EXISTS ${dev_bin})
  message(FATAL_ERROR "check_kernel_registration: objcopy could not read the sections of ${EXE}")
endif()

file(STRINGS ${host_bin} host_names REGEX "^_Z[A-Za-z0-9_]+$")
file(STRINGS ${dev_bin} dev_strings REGEX "^(\\.text\\.)?_Z[A-Za-z0-9_]+$")
set(dev_names "")
set(kernels 0)
foreach(s IN LISTS dev_strings)
  if(s MATCHES "^\\.text\\.(.*)$")
    list(APPEND dev_names ${CMAKE_MATCH_1})
    math(EXPR kernels "${kernels} + 1")
  else()
    list(APPEND dev_names ${s})
  endif()
endforeach()
list(REMOVE_DUPLICATES dev_names)
list(REMOVE_DUPLICATES host_names)
set(missing "")
foreach(h IN LISTS host_names)
  if(NOT h IN_LIST dev_names)
    list(APPEND missing ${h})
  endif()
endforeach()
list(LENGTH host_names nh)
if(missing AND kernels EQUAL 0)
  message("SKIPPED: no readable kernel names in the fat binary of ${name} (compressed?)")
  return()
endif()
if(missing)
  list(JOIN missing "\n  " text)
  message(FATAL_ERROR "${name}: registered on the host but absent from the device code (launches would fail):\n  ${text}")
endif()
message(STATUS "${name}: all ${nh} names registered on the host have device code (${kernels} kernels)")
