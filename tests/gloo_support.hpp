#pragma once
// What the Gloo tests share: a fresh FileStore directory and prefix for every group a test
// makes, so groups of tests running in parallel never meet in one store.

#include <dppf/communicators/gloo.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

namespace dppf_test {

inline dppf::gloo_store fresh_gloo_store(const std::string& test) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("dppf-" + test + "-" + std::to_string(::getpid()) + "-" + std::to_string(n));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return {.file_dir = dir.string(), .redis_host = {}, .redis_port = 6379, .prefix = "run" + std::to_string(n)};
}

}  // namespace dppf_test
