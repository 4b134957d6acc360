#pragma once
// What the Gloo tests share: a fresh FileStore directory and prefix for every group a test
// makes, so groups of tests running in parallel never meet in one store, and a group of ranks
// on threads over loopback.

#include <dppf/communicators/gloo.hpp>

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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

inline dppf::gloo_options gloo_loopback(std::chrono::milliseconds timeout) {
  return {.timeout = timeout, .address = "127.0.0.1", .iface = {}, .check_arguments = true};
}

/// Each rank's communicator built and f run on its own thread, in a fresh store named after
/// `test`; each rank's exception (or null).
inline std::vector<std::exception_ptr> run_gloo_ranks(const std::string& test, int m,
                                                      const std::function<void(dppf::gloo_communicator&)>& f,
                                                      const dppf::gloo_options& options) {
  const dppf::gloo_store store = fresh_gloo_store(test);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(m));
  std::vector<std::thread> ranks;
  for (int r = 0; r < m; ++r)
    ranks.emplace_back([&, r] {
      try {
        dppf::gloo_communicator comm(store, r, m, options);
        f(comm);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : ranks) t.join();
  std::filesystem::remove_all(store.file_dir);
  return errors;
}

inline std::string message_of(const std::exception_ptr& e) {
  if (!e) return "(none)";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "(not a std::exception)";
}

inline void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (std::size_t r = 0; r < errors.size(); ++r)
    if (errors[r]) FAIL("rank " << r << " threw: " << message_of(errors[r]));
}

}  // namespace dppf_test
