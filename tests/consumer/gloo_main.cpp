// A consumer of dppf::gloo: a group of one over a FileStore, which needs Gloo and hiredis to
// compile and link.
#include <dppf/communicators/gloo.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

int main() {
  const auto dir = std::filesystem::temp_directory_path() / ("dppf-gloo-consumer-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  int rc = 1;
  {
    dppf::gloo_communicator comm({.file_dir = dir.string(), .redis_host = {}, .redis_port = 6379, .prefix = "consumer"}, 0, 1,
                                 {.timeout = std::chrono::seconds(10), .address = "127.0.0.1", .iface = {}, .check_arguments = true});
    std::vector<float> x{1.0f, 2.0f}, y(2);
    comm.all_reduce(std::span<const float>(x), std::span<float>(y), dppf::reduce_op::avg);
    if (y == x && comm.all_reduce(2.5, dppf::reduce_op::sum) == 2.5) rc = 0;
  }
  std::filesystem::remove_all(dir);
  std::printf("gloo consumer: %s\n", rc == 0 ? "ok" : "wrong result");
  return rc;
}
