// One rank of a Gloo group across emulated hosts running only asynchronous all-reduces
// (start_all_reduce, 2^18 floats, each rank r contributing r + 1 + i % 7, checked exactly), each
// overlapped with 20 ms of local computation, for up to 60 s, so a fault hits one in flight.
// When wait() raises it prints "rank R: <message>" (as gloo_probe does, for gloo_cluster.sh) and
// "rank R: <type> at wait after T ms", lets the communicator and the handle go (the teardown must
// not hang on the failed or the healthy context), prints "rank R: torn down in T ms" and exits 3.
// Settings as gloo_probe.cpp.
#include <dppf/communicators/gloo.hpp>

#include "common/gloo_env.hpp"

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace {
using clock_type = std::chrono::steady_clock;
long ms_since(clock_type::time_point t) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t).count());
}
}  // namespace

int main() {
  int rank = -1;
  std::string failure;
  clock_type::time_point teardown;
  try {
    const example_gloo::launch l = example_gloo::from_flags_and_environment({});
    rank = l.rank;
    const int size = l.size;
    dppf::gloo_communicator comm(l.store, rank, size, l.options);
    const std::size_t n = std::size_t{1} << 18;
    std::vector<float> x(n);
    std::vector<double> local(4096, 1.0);
    const auto start = clock_type::now();
    long iterations = 0;
    while (clock_type::now() - start < std::chrono::seconds(60)) {
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank + 1 + static_cast<int>(i % 7));
      auto h = comm.start_all_reduce(std::span<float>(x), dppf::reduce_op::sum);
      const auto compute_until = clock_type::now() + std::chrono::milliseconds(20);
      while (clock_type::now() < compute_until)  // local work while the reduction runs
        for (auto& v : local) v = v * 0.999 + 0.001;
      const auto waited = clock_type::now();
      try {
        h.wait();
      } catch (const dppf::timeout_error& e) {
        failure = e.what() + ("\nrank " + std::to_string(rank) + ": timeout_error");
      } catch (const dppf::communication_error& e) {
        failure = e.what() + ("\nrank " + std::to_string(rank) + ": communication_error");
      }
      if (!failure.empty()) {
        std::fprintf(stderr, "rank %d: %s at wait after %ld ms\n", rank, failure.c_str(), ms_since(waited));
        teardown = clock_type::now();
        break;  // the handle and the communicator go here
      }
      for (std::size_t i = 0; i < n; ++i) {
        const double expected = size * (size + 1) / 2.0 + size * static_cast<double>(i % 7);
        if (x[i] != expected) {
          std::fprintf(stderr, "rank %d: element %zu is %g, expected %g\n", rank, i, double(x[i]), expected);
          return 1;
        }
      }
      ++iterations;
    }
    if (failure.empty()) std::printf("rank %d: ok (%ld asynchronous all-reduces)\n", rank, iterations);
  } catch (const std::exception& e) {  // bad settings, or a failure outside wait()
    std::fprintf(stderr, "gloo_async_probe rank %d: %s\n", rank, e.what());
    return 4;
  }
  if (failure.empty()) return 0;
  std::fprintf(stderr, "rank %d: torn down in %ld ms\n", rank, ms_since(teardown));
  return 3;
}
