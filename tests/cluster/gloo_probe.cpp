// One rank of a Gloo group across emulated hosts (scripts/cluster.sh gloo sets RANK, WORLD_SIZE
// and DPPF_GLOO_ADDR). DPPF_GLOO_STORE is file:<dir> or redis:<host>:<port>, DPPF_GLOO_PREFIX the
// run's prefix, DPPF_GLOO_TIMEOUT_MS the timeout (examples/common/gloo_env.hpp reads them all).
// Mode "sum": one all-reduce of 2^18 floats, each rank r contributing r + 1 + i % 7, checked
// exactly (small integers add exactly in float). Mode "loop": all-reduces for up to 60 s, so a
// fault can be injected mid-run; exits 3 with the error when a collective raises.
#include <dppf/communicators/gloo.hpp>

#include "common/gloo_env.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "sum";
  example_gloo::launch l;
  try {
    l = example_gloo::from_flags_and_environment({});
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "gloo_probe: %s\n", e.what());
    return 2;
  }
  const int rank = l.rank, size = l.size;
  try {
    dppf::gloo_communicator comm(l.store, rank, size, l.options);
    const std::size_t n = std::size_t{1} << 18;
    std::vector<float> x(n);
    const auto start = std::chrono::steady_clock::now();
    long iterations = 0;
    do {
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank + 1 + static_cast<int>(i % 7));
      comm.all_reduce(std::span<float>(x), dppf::reduce_op::sum);
      for (std::size_t i = 0; i < n; ++i) {
        const double expected = size * (size + 1) / 2.0 + size * static_cast<double>(i % 7);
        if (x[i] != expected) {
          std::fprintf(stderr, "rank %d: element %zu is %g, expected %g\n", rank, i, double(x[i]), expected);
          return 1;
        }
      }
      ++iterations;
    } while (mode == "loop" && std::chrono::steady_clock::now() - start < std::chrono::seconds(60));
    std::printf("rank %d: ok (%ld all-reduces)\n", rank, iterations);
  } catch (const dppf::communication_error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 4;
  }
  return 0;
}
