# Host benchmarks (issue 7): optimizer steps, sharpness primitives and every consensus rule's local
# passes on host and host_parallel, each against the triad bandwidth measured in the same process.
dppf_add_benchmark(dppf_bench_host host.cpp NO_MAIN
                   SMOKE --benchmark_filter=/65536/ --benchmark_min_time=0.001)
