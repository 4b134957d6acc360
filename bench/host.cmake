# Host benchmarks: optimizer steps, sharpness primitives and every consensus rule's local
# passes on host and host_parallel, each against the triad bandwidth measured in the same process.
dppf_add_benchmark(dppf_bench_host host.cpp NO_MAIN
                   SMOKE --benchmark_filter=/65536/ --benchmark_min_time=0.001)

# The same benchmarks compiled with -fno-math-errno, which changes no computed value (only
# whether sqrt may set errno) and lets g++ vectorize AdamW's square root: with the default
# -fmath-errno every sqrtf keeps a scalar branch to the libm call, and AdamW's step becomes
# compute-bound. docs/performance.md shows both.
dppf_add_benchmark(dppf_bench_host_no_math_errno host.cpp NO_MAIN
                   SMOKE --benchmark_filter=^adamw/.*/65536/ --benchmark_min_time=0.001)
target_compile_options(dppf_bench_host_no_math_errno PRIVATE -fno-math-errno)
target_compile_definitions(dppf_bench_host_no_math_errno PRIVATE DPPF_BENCH_FLAGS="-fno-math-errno")
