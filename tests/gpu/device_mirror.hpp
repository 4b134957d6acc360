#pragma once
// Moves test data between std::vector and a GPU executor's device buffers, on its stream.

#include <dppf/device_array.cuh>

#include <vector>

namespace dppf_gpu_test {

struct device_mirror {
  template <class E, class T>
  static dppf::device_array<T> upload(const E& ex, const std::vector<T>& v) {
    return dppf::to_device(v, ex.stream());
  }
  template <class E, class B>
  static auto download(const E& ex, const B& b) {
    return dppf::to_host(b, ex.stream());
  }
};

}  // namespace dppf_gpu_test
