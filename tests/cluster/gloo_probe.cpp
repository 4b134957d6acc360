// One rank of a Gloo group across emulated hosts (scripts/cluster.sh gloo sets RANK, WORLD_SIZE
// and DPPF_GLOO_ADDR). DPPF_GLOO_STORE is file:<dir> or redis:<host>:<port>, DPPF_GLOO_PREFIX the
// run's prefix. Mode "sum": one all-reduce of 2^18 floats, each rank r contributing r + 1 + i % 7,
// checked exactly (small integers add exactly in float). Mode "loop": all-reduces for up to 60 s,
// so a fault can be injected mid-run; exits 3 with the error when a collective raises.
#include <dppf/communicators/gloo.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "sum";
  const char* rank_s = std::getenv("RANK");
  const char* size_s = std::getenv("WORLD_SIZE");
  const char* addr = std::getenv("DPPF_GLOO_ADDR");
  const char* store_s = std::getenv("DPPF_GLOO_STORE");
  const char* prefix = std::getenv("DPPF_GLOO_PREFIX");
  if (!rank_s || !size_s || !addr || !store_s || !prefix) {
    std::fprintf(stderr, "gloo_probe: set RANK, WORLD_SIZE, DPPF_GLOO_ADDR, DPPF_GLOO_STORE, DPPF_GLOO_PREFIX\n");
    return 2;
  }
  const int rank = std::atoi(rank_s), size = std::atoi(size_s);
  dppf::gloo_store store{.file_dir = {}, .redis_host = {}, .redis_port = 6379, .prefix = prefix};
  const std::string spec = store_s;
  if (spec.rfind("file:", 0) == 0) {
    store.file_dir = spec.substr(5);
  } else if (spec.rfind("redis:", 0) == 0) {
    const auto colon = spec.rfind(':');
    store.redis_host = spec.substr(6, colon - 6);
    store.redis_port = std::atoi(spec.c_str() + colon + 1);
  }
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("DPPF_GLOO_TIMEOUT_MS") ? std::getenv("DPPF_GLOO_TIMEOUT_MS") : "3000"));
  try {
    dppf::gloo_communicator comm(store, rank, size, {.timeout = timeout, .address = addr, .iface = {}, .check_arguments = true});
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
