#pragma once
// dppf's version. Besides DPPF_HOST_DEVICE (config.hpp) these are the only macros of the public
// API; to test for an optional part (MPI, CUDA, Gloo) use __has_include on its header.

#define DPPF_VERSION_MAJOR 0
#define DPPF_VERSION_MINOR 2
#define DPPF_VERSION_PATCH 0
#define DPPF_VERSION (DPPF_VERSION_MAJOR * 10000 + DPPF_VERSION_MINOR * 100 + DPPF_VERSION_PATCH)

namespace dppf {
inline constexpr int version_major = DPPF_VERSION_MAJOR;
inline constexpr int version_minor = DPPF_VERSION_MINOR;
inline constexpr int version_patch = DPPF_VERSION_PATCH;
}  // namespace dppf
