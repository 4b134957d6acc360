// Core concepts: parameter buffers, layouts, the host executors and their algorithms, and the
// in-process communicators (single, threads, counting).

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include <dppf/dppf.hpp>

#include "support.hpp"

using dppf_test::check_throws_with;
using dppf_test::random_vector;

// ---------------------------------------------------------------------------------------------
// Buffers and layouts

static_assert(dppf::parameter_buffer<std::vector<float>>);
static_assert(dppf::parameter_buffer<std::vector<double>>);
static_assert(dppf::parameter_buffer<std::span<float>>);
static_assert(dppf::parameter_buffer<std::span<const double>>);
static_assert(dppf::parameter_buffer<dppf::device_span<float>>);
static_assert(!dppf::parameter_buffer<std::vector<int>>);
static_assert(dppf::host_buffer<std::vector<float>&>);
static_assert(dppf::device_buffer<dppf::device_span<float>>);
static_assert(!dppf::host_buffer<dppf::device_span<float>>);
static_assert(std::same_as<dppf::memory_space_t<dppf::device_span<const float>>, dppf::device_space>);
static_assert(std::same_as<dppf::view_t<std::vector<float>&>, std::span<float>>);
static_assert(std::same_as<dppf::view_t<const std::vector<float>&>, std::span<const float>>);
static_assert(dppf::executor<dppf::host_executor>);
static_assert(dppf::executor<dppf::host_parallel_executor>);
static_assert(!dppf::runs_on<dppf::host_executor, dppf::device_span<float>>);
static_assert(dppf::communicator<dppf::single_communicator>);
static_assert(dppf::communicator<dppf::thread_communicator>);
static_assert(dppf::communicator<dppf::counting_communicator<dppf::thread_communicator>>);

TEST_CASE("device_span is a sized contiguous view tagged with device memory") {
  float storage[5] = {};
  dppf::device_span<float> s{storage, 5};
  CHECK(s.size() == 5);
  CHECK(s.data() == storage);
  CHECK(s.subspan(2, 3).data() == storage + 2);
  CHECK(s.subspan(2, 3).size() == 3);
  dppf::device_span<const float> c = s;
  CHECK(c.data() == storage);
  CHECK(dppf::view(s).size() == 5);
}

TEST_CASE("parameter_layout validates ordered, non-overlapping, covering segments") {
  const auto layout = dppf::parameter_layout::from_sizes({{"w1", 6}, {"b1", 3}, {"w2", 4}});
  CHECK(layout.size() == 3);
  CHECK(layout.total() == 13);
  CHECK(layout[1].offset == 6);
  CHECK(layout[2].name == "w2");
  CHECK_NOTHROW(layout.require_covers(13, "params"));
  check_throws_with<std::invalid_argument>([&] { layout.require_covers(12, "params"); }, "params has 12 elements but the layout covers 13");

  check_throws_with<std::invalid_argument>([] { dppf::parameter_layout({{"a", 0, 4}, {"b", 3, 2}}); }, "segment 1 ('b') starts at 3, overlapping");
  check_throws_with<std::invalid_argument>([] { dppf::parameter_layout({{"a", 0, 4}, {"b", 5, 2}}); }, "leaving a gap after 4");
  check_throws_with<std::invalid_argument>([] { dppf::parameter_layout({{"a", 1, 4}}); }, "segment 0 ('a') starts at 1");
  check_throws_with<std::invalid_argument>([] { dppf::parameter_layout({{"a", 0, 0}}); }, "segment 0 ('a') is empty");
  check_throws_with<std::invalid_argument>([] { dppf::parameter_layout({{"a", 0, 4}, {"b", 2, 2}}); }, "overlapping");
}

// ---------------------------------------------------------------------------------------------
// Executors: every primitive against a plain double-precision loop, every element.

namespace {

struct sequential_1 : dppf::host_executor {};
struct parallel_default : dppf::host_parallel_executor {};
struct parallel_3 : dppf::host_parallel_executor {
  parallel_3() : dppf::host_parallel_executor{3} {}
};

template <class T>
struct axpby_fn {
  T a, b;
  void operator()(T& y, const T& x, const T& z, T& w) const {
    y = a * x + b * y + z;
    w = y - x;
  }
};

struct weighted_fn {
  template <class T>
  double operator()(std::size_t i, const T& x, const T& y) const {
    return static_cast<double>(i % 5) * static_cast<double>(x) * static_cast<double>(y);
  }
};

}  // namespace

#define DPPF_HOST_EXECUTORS dppf::host_executor, dppf::host_parallel_executor, parallel_3

TEST_CASE_TEMPLATE("executor transform of four buffers matches a double loop", E, DPPF_HOST_EXECUTORS) {
  const E ex{};
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000003}}) {
    CAPTURE(n);
    auto x = random_vector<float>(n, 1 + n), z = random_vector<float>(n, 2 + n);
    auto y = random_vector<float>(n, 3 + n);
    std::vector<float> w(n, 7.0f);
    const auto y0 = y;
    ex.transform(axpby_fn<float>{0.5f, -2.0f}, std::span<float>(y), std::span<const float>(x), std::span<const float>(z), std::span<float>(w));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const float expect_y = 0.5f * x[i] + -2.0f * y0[i] + z[i];
      bad += (y[i] != expect_y) + (w[i] != expect_y - x[i]);
    }
    CHECK(bad == 0);
  }
}

TEST_CASE_TEMPLATE("executor reductions accumulate in double and match a double loop", E, DPPF_HOST_EXECUTORS) {
  const E ex{};
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000003}}) {
    CAPTURE(n);
    const auto x = random_vector<float>(n, 11 + n), y = random_vector<float>(n, 12 + n);
    double s = 0, d = 0, q = 0, wsum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      s += x[i];
      d += double(x[i]) * y[i];
      q += double(x[i]) * x[i];
      wsum += double(i % 5) * x[i] * double(y[i]);
    }
    // Different summation orders of n doubles: the error bound is n * eps * sum|terms|.
    const double tol = 1e-12 * (1.0 + double(n));
    CHECK(dppf::sum(ex, x) == doctest::Approx(s).epsilon(tol).scale(1.0));
    CHECK(dppf::dot(ex, x, y) == doctest::Approx(d).epsilon(tol).scale(1.0));
    CHECK(dppf::squared_norm(ex, x) == doctest::Approx(q).epsilon(tol));
    CHECK(ex.transform_reduce_indexed(weighted_fn{}, std::span<const float>(x), std::span<const float>(y)) ==
          doctest::Approx(wsum).epsilon(tol).scale(1.0));
  }
}

TEST_CASE("host and host_parallel reductions are bitwise identical for every thread count") {
  const auto x = random_vector<double>(3'000'017, 99), y = random_vector<double>(3'000'017, 98);
  const double reference = dppf::dot(dppf::host_executor{}, x, y);
  for (int t : {1, 2, 3, 4, 7}) {
    CAPTURE(t);
    const double got = dppf::dot(dppf::host_parallel_executor{t}, x, y);
    CHECK(std::memcmp(&got, &reference, sizeof got) == 0);
  }
  // Run to run, the same.
  CHECK(dppf::dot(dppf::host_parallel_executor{}, x, y) == reference);
}

TEST_CASE_TEMPLATE("executor algorithms fill, copy, scale and axpy", E, DPPF_HOST_EXECUTORS) {
  const E ex{};
  const std::size_t n = 100'003;
  auto x = random_vector<double>(n, 5), y = random_vector<double>(n, 6);
  const auto y0 = y;
  dppf::axpy(ex, 0.25, x, y);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += y[i] != y0[i] + 0.25 * x[i];
  CHECK(bad == 0);
  dppf::scale(ex, y, -3.0);
  for (std::size_t i = 0; i < n; ++i) bad += y[i] != (y0[i] + 0.25 * x[i]) * -3.0;
  CHECK(bad == 0);
  dppf::copy(ex, x, y);
  CHECK(y == x);
  dppf::fill(ex, y, 2.5);
  for (double v : y) bad += v != 2.5;
  CHECK(bad == 0);
  auto buf = ex.template allocate<float>(17);
  CHECK(buf.size() == 17);
  for (float v : buf) bad += v != 0.0f;
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("executor rejects buffers of different sizes and changes nothing", E, DPPF_HOST_EXECUTORS) {
  const E ex{};
  std::vector<float> a(10, 1.0f), b(11, 2.0f);
  check_throws_with<std::invalid_argument>([&] { dppf::copy(ex, b, a); }, "buffers have different sizes (11 and 10)");
  CHECK(a == std::vector<float>(10, 1.0f));
  check_throws_with<std::invalid_argument>([&] { (void)dppf::dot(ex, a, b); }, "different sizes");
}

TEST_CASE("transform_indexed passes each element's global index") {
  std::vector<double> v(200'000);
  dppf::host_parallel_executor{4}.transform_indexed([](std::size_t i, double& x) { x = static_cast<double>(i); }, std::span<double>(v));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < v.size(); ++i) bad += v[i] != static_cast<double>(i);
  CHECK(bad == 0);
}

// ---------------------------------------------------------------------------------------------
// Communicators

TEST_CASE("single communicator is the identity") {
  dppf::single_communicator c;
  std::vector<float> in = random_vector<float>(9, 1), out(9);
  c.all_reduce(in, out, dppf::reduce_op::avg);
  CHECK(out == in);
  CHECK(c.all_reduce(3.5, dppf::reduce_op::max) == 3.5);
  CHECK(c.all_gather(2.0) == std::vector<double>{2.0});
  check_throws_with<std::invalid_argument>([&] { c.all_reduce(in, dppf::reduce_op::max); }, "sum and avg only");
  check_throws_with<std::invalid_argument>([&] { c.all_reduce(in, std::span<float>(out).first(3), dppf::reduce_op::sum); }, "output has 3 elements, expected 9");
}

TEST_CASE("threads all_reduce, all_gather and broadcast match a double reference for M in 1,2,3,4,8") {
  for (int m : {1, 2, 3, 4, 8}) {
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1000003}}) {
      CAPTURE(m);
      CAPTURE(n);
      std::vector<std::vector<float>> inputs;
      for (int r = 0; r < m; ++r) inputs.push_back(random_vector<float>(n, 100 * r + n));
      std::vector<double> sum(n, 0.0);
      for (int r = 0; r < m; ++r)
        for (std::size_t i = 0; i < n; ++i) sum[i] += inputs[r][i];
      std::vector<std::vector<float>> avg_out(m, std::vector<float>(n)), sum_in_place(inputs), bcast(inputs);
      std::vector<std::vector<double>> gathered(m);
      std::vector<std::array<double, 4>> scalars(m);
      dppf::thread_group group(m);
      group.run([&](dppf::thread_communicator c) {
        const auto r = static_cast<std::size_t>(c.rank());
        c.all_reduce(inputs[r], avg_out[r], dppf::reduce_op::avg);
        c.all_reduce(sum_in_place[r], dppf::reduce_op::sum);
        c.broadcast(bcast[r], m - 1);
        gathered[r] = c.all_gather(10.0 + r);
        const double v = 1.0 + static_cast<double>(r * r);
        scalars[r] = {c.all_reduce(v, dppf::reduce_op::sum), c.all_reduce(v, dppf::reduce_op::avg),
                      c.all_reduce(v, dppf::reduce_op::min), c.all_reduce(v, dppf::reduce_op::max)};
        c.barrier();
      });
      double ssum = 0;
      for (int r = 0; r < m; ++r) ssum += 1.0 + r * r;
      std::size_t bad = 0;
      for (int r = 0; r < m; ++r) {
        for (std::size_t i = 0; i < n; ++i) {
          bad += avg_out[r][i] != static_cast<float>(sum[i] / m);
          bad += sum_in_place[r][i] != static_cast<float>(sum[i]);
          bad += bcast[r][i] != inputs[m - 1][i];
        }
        for (int j = 0; j < m; ++j) bad += gathered[r][j] != 10.0 + j;
        bad += scalars[r][0] != ssum;
        bad += scalars[r][1] != ssum / m;
        bad += scalars[r][2] != 1.0;
        bad += scalars[r][3] != 1.0 + (m - 1) * (m - 1);
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("threads all_reduce detects sizes that differ across ranks on every rank") {
  dppf::thread_group group(3);
  std::atomic<int> raised{0};
  group.run([&](dppf::thread_communicator c) {
    std::vector<float> x(c.rank() == 1 ? 5 : 4, 1.0f);
    try {
      c.all_reduce(x, dppf::reduce_op::sum);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("rank 1 has 5 elements of 4 bytes") != std::string::npos);
      ++raised;
    }
    // The group is still usable afterwards.
    std::vector<float> y(3, 1.0f);
    c.all_reduce(y, dppf::reduce_op::sum);
    CHECK(y[0] == 3.0f);
  });
  CHECK(raised == 3);
}

TEST_CASE("threads group aborts every rank when one worker throws, with no hang") {
  dppf::thread_group group(4);
  check_throws_with<std::runtime_error>(
      [&] {
        group.run([&](dppf::thread_communicator c) {
          if (c.rank() == 2) throw std::runtime_error("worker 2 exploded");
          std::vector<double> x(10, 1.0);
          for (int k = 0; k < 3; ++k) c.all_reduce(x, dppf::reduce_op::avg);
        });
      },
      "worker 2 exploded");
}

TEST_CASE("threads collective times out instead of hanging") {
  dppf::thread_group group(2, {.timeout = std::chrono::milliseconds(200)});
  std::atomic<int> timeouts{0};
  std::thread lone([&] {
    try {
      group.member(0).barrier();
    } catch (const dppf::communication_error& e) {
      CHECK(std::string(e.what()).find("timed out") != std::string::npos);
      ++timeouts;
    }
  });
  lone.join();
  CHECK(timeouts == 1);
  // Rank 1 arriving later finds the group aborted.
  check_throws_with<dppf::communication_error>([&] { group.member(1).barrier(); }, "aborted");
}

TEST_CASE("threads rejects bad arguments") {
  check_throws_with<std::invalid_argument>([] { dppf::thread_group g(0); }, "group size must be at least 1");
  dppf::thread_group g(2);
  check_throws_with<std::invalid_argument>([&] { (void)g.member(2); }, "rank 2 is outside [0, 2)");
}

TEST_CASE("counting records every collective and the bytes moved") {
  dppf::thread_group group(2);
  std::vector<dppf::communication_counts> counts(2);
  group.run([&](dppf::thread_communicator m) {
    dppf::counting_communicator<dppf::thread_communicator> c{m};
    std::vector<float> x(1000, 1.0f), y(1000);
    std::vector<double> z(10, 1.0);
    c.all_reduce(x, y, dppf::reduce_op::avg);
    c.all_reduce(z, dppf::reduce_op::sum);
    (void)c.all_reduce(1.0, dppf::reduce_op::max);
    (void)c.all_gather(1.0);
    c.broadcast(z, 0);
    c.barrier();
    counts[static_cast<std::size_t>(m.rank())] = c.counts();
  });
  for (const auto& k : counts) {
    CHECK(k.buffer_all_reduces == 2);
    CHECK(k.scalar_all_reduces == 1);
    CHECK(k.all_gathers == 1);
    CHECK(k.broadcasts == 1);
    CHECK(k.barriers == 1);
    CHECK(k.buffer_values == 1000 + 10 + 10);
    CHECK(k.bytes == 1000 * 4 + 10 * 8 + 8 + 8 + 10 * 8);
    CHECK(k.collectives() == 6);
  }
}

TEST_CASE("threads timeout is validated, and a huge timeout waits instead of overflowing") {
  check_throws_with<std::invalid_argument>([] { dppf::thread_group g(2, {.timeout = std::chrono::milliseconds(0)}); },
                                           "timeout (ms) must be > 0");
  dppf::thread_group group(2, {.timeout = std::chrono::milliseconds::max()});
  group.run([](dppf::thread_communicator c) {
    if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));  // rank 0 must wait
    CHECK(c.all_reduce(1.0, dppf::reduce_op::sum) == 2.0);
  });
}

TEST_CASE("threads all_reduce with bad arguments on one rank raises on every rank, with no hang") {
  dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
  std::atomic<int> invalid{0}, others{0};
  group.run([&](dppf::thread_communicator c) {
    std::vector<float> x(6, 1.0f), y(c.rank() == 1 ? 5 : 6);
    try {
      c.all_reduce(x, y, dppf::reduce_op::sum);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("output has 5 elements, expected 6") != std::string::npos);
      ++invalid;
    } catch (const dppf::communication_error& e) {
      CHECK(std::string(e.what()).find("rank 1 rejected its arguments") != std::string::npos);
      ++others;
    }
    std::vector<float> z(4, 1.0f);  // still in step afterwards
    c.all_reduce(z, dppf::reduce_op::sum);
    CHECK(z[0] == 3.0f);
  });
  CHECK(invalid == 1);
  CHECK(others == 2);
}
