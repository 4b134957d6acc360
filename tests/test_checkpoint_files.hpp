#pragma once
// Helpers for the checkpoint tests: a temporary directory removed at the end of a test, and
// hand-made safetensors files (a header string and data bytes).

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dppf_test {

struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("dppf-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

// 8-byte little-endian length of `header`, the header as given (no padding), then `data`.
inline std::vector<std::byte> safetensors_bytes(const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::byte> out;
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<std::byte>((header.size() >> (8 * b)) & 0xFF));
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (auto d : data) out.push_back(static_cast<std::byte>(d));
  return out;
}

}  // namespace dppf_test
