# GPU benchmarks, built only when dppf::cuda exists. A smoke run (label "gpu;bench") is skipped
# (exit code 77) on machines without a GPU; scripts/gpu-check.sh runs them at full size.
if(NOT TARGET dppf::cuda)
  return()
endif()
add_executable(bench_gpu gpu/bench_gpu.cu)
target_link_libraries(bench_gpu PRIVATE dppf::cuda)
target_compile_options(bench_gpu PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
if(DPPF_BUILD_TESTS)
  add_test(NAME bench.bench_gpu COMMAND bench_gpu --n 100003 --reps 2)
  set_tests_properties(bench.bench_gpu PROPERTIES LABELS "gpu;bench" SKIP_RETURN_CODE 77)
endif()
