// dppf::gloo_communicator's choice of Gloo algorithm by size (detail::gloo_algorithm): the rule at
// its boundaries, and on both sides of each boundary the all-reduce of both algorithms (M threads over loopback,
// a FileStore in a fresh directory) against a double reference on every element, with the same
// bits on every rank.
#include <dppf/communicators/gloo.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gloo_support.hpp"
#include "support.hpp"

namespace {

using algorithm = ::gloo::AllreduceOptions::Algorithm;

dppf::gloo_store fresh_store() { return dppf_test::fresh_gloo_store("gloo-algorithm-test"); }

template <class T>
void check_all_reduce(int m, std::size_t n, bool in_place, dppf::reduce_op op) {
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(in_place);
  std::vector<std::vector<T>> inputs(static_cast<std::size_t>(m)), outputs(static_cast<std::size_t>(m));
  for (int r = 0; r < m; ++r) inputs[static_cast<std::size_t>(r)] = dppf_test::random_vector<T>(n, 4242 + 31 * r + n);
  const dppf::gloo_store store = fresh_store();
  std::vector<std::string> errors(static_cast<std::size_t>(m));
  std::vector<std::thread> pool;
  for (int r = 0; r < m; ++r)
    pool.emplace_back([&, r] {
      const auto i = static_cast<std::size_t>(r);
      try {
        dppf::gloo_communicator comm(store, r, m, {.timeout = std::chrono::seconds(20), .address = "127.0.0.1", .iface = {}, .check_arguments = true});
        if (in_place) {
          outputs[i] = inputs[i];
          comm.all_reduce(std::span<T>(outputs[i]), op);
        } else {
          outputs[i].assign(n, T(-3));
          comm.all_reduce(std::span<const T>(inputs[i]), std::span<T>(outputs[i]), op);
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : pool) t.join();
  std::filesystem::remove_all(store.file_dir);
  for (int r = 0; r < m; ++r) REQUIRE_MESSAGE(errors[static_cast<std::size_t>(r)].empty(), "rank " << r << ": " << errors[static_cast<std::size_t>(r)]);
  const double eps = std::is_same_v<T, float> ? 6e-8 : 1.2e-16;
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0.0, abs = 0.0;
    for (int r = 0; r < m; ++r) {
      sum += static_cast<double>(inputs[static_cast<std::size_t>(r)][i]);
      abs += std::fabs(static_cast<double>(inputs[static_cast<std::size_t>(r)][i]));
    }
    const double scale = op == dppf::reduce_op::avg ? 1.0 / m : 1.0;
    // at most m - 1 roundings of partial sums in either algorithm, one of the scaling
    const double bound = (m + 1) * eps * abs * scale + 1e-300;
    for (int r = 0; r < m; ++r) {
      const T got = outputs[static_cast<std::size_t>(r)][i];
      if (std::fabs(static_cast<double>(got) - sum * scale) > bound)
        FAIL("element " << i << " rank " << r << ": got " << got << ", expected " << sum * scale << " +- " << bound);
      if (std::memcmp(&got, &outputs[0][i], sizeof(T)) != 0)
        FAIL("element " << i << ": rank " << r << " has " << got << ", rank 0 " << outputs[0][i]);
    }
  }
}

}  // namespace

TEST_CASE("gloo_algorithm: bcube from M elements up to 256 KiB, ring below and above") {
  using dppf::detail::gloo_algorithm;
  const std::size_t max = dppf::detail::gloo_bcube_max_bytes;
  CHECK(max == std::size_t{256} << 10);
  for (const int m : {2, 3, 4, 8}) {
    CAPTURE(m);
    const auto mm = static_cast<std::size_t>(m);
    CHECK(gloo_algorithm(1, sizeof(double), m) == algorithm::RING);  // a scalar
    CHECK(gloo_algorithm(mm - 1, sizeof(float), m) == algorithm::RING);
    CHECK(gloo_algorithm(mm, sizeof(float), m) == algorithm::BCUBE);
    CHECK(gloo_algorithm(7, sizeof(std::int64_t), m) == (m <= 7 ? algorithm::BCUBE : algorithm::RING));  // the agreement
    CHECK(gloo_algorithm(max / sizeof(float), sizeof(float), m) == algorithm::BCUBE);
    CHECK(gloo_algorithm(max / sizeof(float) + 1, sizeof(float), m) == algorithm::RING);
    CHECK(gloo_algorithm(max / sizeof(double) + 1, sizeof(double), m) == algorithm::RING);
  }
}

TEST_CASE("gloo_communicator all_reduce on both sides of the algorithm boundaries matches a double reference, same bits on every rank") {
  const std::size_t floats = dppf::detail::gloo_bcube_max_bytes / sizeof(float);
  for (const int m : {3, 4}) {
    const auto mm = static_cast<std::size_t>(m);
    for (const std::size_t n : {mm - 1, mm, std::size_t{1000}, floats, floats + 1}) {
      check_all_reduce<float>(m, n, n % 2 == 0, dppf::reduce_op::sum);
      check_all_reduce<float>(m, n, n % 2 != 0, dppf::reduce_op::avg);
    }
    check_all_reduce<double>(m, dppf::detail::gloo_bcube_max_bytes / sizeof(double), false, dppf::reduce_op::avg);
    check_all_reduce<double>(m, dppf::detail::gloo_bcube_max_bytes / sizeof(double) + 1, true, dppf::reduce_op::sum);
  }
}
