#pragma once
// Compiler plumbing shared by every header. DPPF_HOST_DEVICE is public: write your own functors
// (a custom optimizer update, consensus rule or executor primitive) with it so they compile for
// host and device alike. DPPF_RESTRICT and DPPF_OMP are internal.

// Functors holding update math are compiled for host and device alike.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define DPPF_HOST_DEVICE __host__ __device__
#else
#define DPPF_HOST_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DPPF_RESTRICT __restrict__
#else
#define DPPF_RESTRICT
#endif

// OpenMP pragmas that vanish without -fopenmp, so consumers building without OpenMP see no
// unknown-pragma warnings (host_parallel then runs sequentially, with identical results).
#if defined(_OPENMP)
#define DPPF_OMP(directive) _Pragma(DPPF_STRINGIFY(omp directive))
#else
#define DPPF_OMP(directive)
#endif
#define DPPF_STRINGIFY(x) #x
