#pragma once
// dppf version and feature macros (the only macros in the public API).

#define DPPF_VERSION_MAJOR 0
#define DPPF_VERSION_MINOR 1
#define DPPF_VERSION_PATCH 0
#define DPPF_VERSION (DPPF_VERSION_MAJOR * 10000 + DPPF_VERSION_MINOR * 100 + DPPF_VERSION_PATCH)

namespace dppf {
inline constexpr int version_major = DPPF_VERSION_MAJOR;
inline constexpr int version_minor = DPPF_VERSION_MINOR;
inline constexpr int version_patch = DPPF_VERSION_PATCH;
}  // namespace dppf
