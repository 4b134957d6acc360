# cmake -DBUILD_DIR=<dppf build> -DPREFIX=<empty prefix> [-DCONFIG=<config>] -P install.cmake
cmake_policy(VERSION 3.25)
# Installs dppf from its build tree into a fresh prefix, for the consumer tests.
file(REMOVE_RECURSE ${PREFIX})
set(config_args "")
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} ${config_args}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
foreach(f include/dppf/dppf.hpp share/cmake/dppf/dppfConfig.cmake share/cmake/dppf/dppfConfigVersion.cmake
          share/cmake/dppf/dppf-core-targets.cmake)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "the install prefix lacks ${f}")
  endif()
endforeach()
