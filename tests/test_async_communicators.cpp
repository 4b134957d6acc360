// Asynchronous communicators (async_communicator): start_all_reduce on thread_group,
// single_communicator and counting_communicator. Results against the blocking all_reduce (bit
// for bit) and an independent double-precision loop, with fresh random inputs on every run;
// several outstanding handles; mismatched arguments, an aborting rank and a timeout raising at
// wait on every rank, within a bounded time; a handle destroyed without wait.

#include <dppf/async_communicator.hpp>
#include <dppf/communicators/counting.hpp>
#include <dppf/communicators/single.hpp>
#include <dppf/communicators/thread_group.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using dppf::reduce_op;
using dppf_test::check_throws_with;

namespace {

// Exactly the communicator concept, nothing more: a 0.2 custom communicator.
struct plain_communicator {
  using memory_space = dppf::host_space;
  int rank() const { return 0; }
  int size() const { return 1; }
  void all_reduce(std::span<const float>, std::span<float>, reduce_op) {}
  void all_reduce(std::span<float>, reduce_op) {}
  double all_reduce(double v, reduce_op) { return v; }
  std::vector<double> all_gather(double v) { return {v}; }
  void broadcast(std::span<float>, int) {}
  void barrier() {}
};

static_assert(dppf::communicator<plain_communicator>);
static_assert(!dppf::async_communicator<plain_communicator>);
static_assert(dppf::async_communicator<dppf::thread_communicator>);
static_assert(dppf::async_communicator<dppf::single_communicator>);
static_assert(dppf::async_communicator<dppf::counting_communicator<dppf::thread_communicator>>);
static_assert(dppf::communicator<dppf::counting_communicator<plain_communicator>>);
static_assert(!dppf::async_communicator<dppf::counting_communicator<plain_communicator>>);

std::uint64_t fresh_seed() {
  static const std::uint64_t base = std::random_device{}();
  static std::atomic<std::uint64_t> k{0};
  return base * 1000003 + k++;
}

dppf::thread_group bounded_group(int m, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return dppf::thread_group(m, {.timeout = timeout});
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// The reduction thread_group promises: ranks added in rank order in double, avg times 1/M in
// double, one rounding to T.
template <class T>
std::vector<T> reference(const std::vector<std::vector<T>>& in, reduce_op op) {
  const std::size_t m = in.size(), n = in[0].size();
  std::vector<T> r(n);
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::size_t k = 0; k < m; ++k) acc += static_cast<double>(in[k][i]);
    if (op == reduce_op::avg) acc *= 1.0 / static_cast<double>(m);
    r[i] = static_cast<T>(acc);
  }
  return r;
}

template <class T>
void check_thread_group_matches_blocking(int m, std::size_t n, reduce_op op, bool in_place) {
  const std::uint64_t seed = fresh_seed();
  INFO("M = " << m << ", n = " << n << ", op = " << dppf::to_string(op) << ", in place = " << in_place << ", seed = " << seed);
  std::vector<std::vector<T>> in;
  for (int r = 0; r < m; ++r) in.push_back(dppf_test::random_vector<T>(n, seed + static_cast<std::uint64_t>(r)));
  const std::vector<T> expected = reference(in, op);
  std::vector<std::vector<T>> async_out(static_cast<std::size_t>(m)), blocking_out(static_cast<std::size_t>(m));
  bounded_group(m).run([&](dppf::thread_communicator c) {
    const auto r = static_cast<std::size_t>(c.rank());
    std::vector<T> a = in[r], b(n);
    if (in_place) {
      auto h = c.start_all_reduce(std::span<T>(a), op);
      h.wait();
    } else {
      std::vector<T> out(n, T(-7));
      auto h = c.start_all_reduce(std::span<const T>(in[r]), std::span<T>(out), op);
      h.wait();
      a = out;
    }
    c.all_reduce(std::span<const T>(in[r]), std::span<T>(b), op);
    async_out[r] = a;
    blocking_out[r] = b;
  });
  for (int r = 0; r < m; ++r) {
    INFO("rank " << r);
    CHECK(same_bits(async_out[static_cast<std::size_t>(r)], blocking_out[static_cast<std::size_t>(r)]));
    CHECK(same_bits(async_out[static_cast<std::size_t>(r)], expected));
  }
}

}  // namespace

TEST_CASE("thread_group start_all_reduce equals the blocking all_reduce bit for bit") {
  for (int m : {1, 2, 3, 4})
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{5001}})
      for (reduce_op op : {reduce_op::sum, reduce_op::avg})
        for (bool in_place : {false, true}) {
          check_thread_group_matches_blocking<float>(m, n, op, in_place);
          check_thread_group_matches_blocking<double>(m, n, op, in_place);
        }
}

TEST_CASE("thread_group start_all_reduce: several outstanding handles, waited in any order") {
  const int m = 3;
  const std::size_t n = 3000;
  const std::uint64_t seed = fresh_seed();
  INFO("seed = " << seed);
  std::vector<std::vector<std::vector<float>>> in(3);  // in[k][r]
  for (std::size_t k = 0; k < 3; ++k)
    for (int r = 0; r < m; ++r) in[k].push_back(dppf_test::random_vector<float>(n, seed + 10 * k + static_cast<std::uint64_t>(r)));
  std::vector<std::vector<std::vector<float>>> got(3, std::vector<std::vector<float>>(m));
  std::atomic<int> tested_true_before_wait{0};
  bounded_group(m).run([&](dppf::thread_communicator c) {
    const auto r = static_cast<std::size_t>(c.rank());
    std::vector<float> a = in[0][r], b(n), c2 = in[2][r];
    auto h0 = c.start_all_reduce(std::span<float>(a), reduce_op::avg);
    auto h1 = c.start_all_reduce(std::span<const float>(in[1][r]), std::span<float>(b), reduce_op::sum);
    auto h2 = c.start_all_reduce(std::span<float>(c2), reduce_op::sum);
    // A blocking collective between start and wait does not disturb them.
    CHECK(c.all_reduce(1.0, reduce_op::sum) == m);
    // Every rank started all three before the barrier, so all three are complete after it.
    c.barrier();
    if (h1.test()) ++tested_true_before_wait;
    h2.wait();
    h1.wait();
    h0.wait();
    got[0][r] = a;
    got[1][r] = b;
    got[2][r] = c2;
  });
  CHECK(tested_true_before_wait == m);
  const reduce_op ops[3] = {reduce_op::avg, reduce_op::sum, reduce_op::sum};
  for (std::size_t k = 0; k < 3; ++k) {
    const std::vector<float> expected = reference(in[k], ops[k]);
    for (int r = 0; r < m; ++r) {
      INFO("handle " << k << ", rank " << r);
      CHECK(same_bits(got[k][static_cast<std::size_t>(r)], expected));
    }
  }
}

TEST_CASE("thread_group start_all_reduce: mismatched or rejected arguments raise at wait on every rank") {
  const int m = 3;
  std::atomic<int> raised{0};
  bounded_group(m).run([&](dppf::thread_communicator c) {
    // Sizes differ on rank 1: every rank's wait raises invalid_argument_error naming the sizes.
    std::vector<float> x(c.rank() == 1 ? 11 : 10, 1.0f);
    auto h = c.start_all_reduce(std::span<float>(x), reduce_op::sum);
    check_throws_with<dppf::invalid_argument_error>([&] { h.wait(); }, "buffer sizes differ across ranks");
    CHECK(x[0] == 1.0f);  // nothing written
    // Rank 2 passes an op a buffer does not support: it learns why, the others that it did.
    std::vector<float> y(5, 2.0f), out(5, 0.0f);
    auto g = c.start_all_reduce(std::span<const float>(y), std::span<float>(out), c.rank() == 2 ? reduce_op::max : reduce_op::sum);
    if (c.rank() == 2)
      check_throws_with<dppf::invalid_argument_error>([&] { g.wait(); }, "supports sum and avg");
    else
      check_throws_with<dppf::communication_error>([&] { g.wait(); }, "rank 2 rejected its arguments");
    CHECK(out[0] == 0.0f);
    ++raised;
    // The group is still usable.
    std::vector<float> z(4, 1.0f);
    c.start_all_reduce(std::span<float>(z), reduce_op::sum).wait();
    CHECK(z[3] == static_cast<float>(m));
  });
  CHECK(raised == m);
}

TEST_CASE("thread_group start_all_reduce: a rank that aborts makes the others' wait raise") {
  const int m = 4;
  std::atomic<int> started{0}, others_raised{0};
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(bounded_group(m).run([&](dppf::thread_communicator c) {
    if (c.rank() == 0) {
      while (started < m - 1) std::this_thread::yield();
      throw std::runtime_error("rank 0 fails before its start");
    }
    std::vector<float> x(100, 1.0f);
    auto h = c.start_all_reduce(std::span<float>(x), reduce_op::sum);
    ++started;
    try {
      // rank 0 never starts it: false, or the abort's error if it came already
      CHECK_FALSE(h.test());
      h.wait();
    } catch (const dppf::communication_error& e) {
      CHECK(std::string(e.what()).find("rank 0 failed") != std::string::npos);
      ++others_raised;
    }
    CHECK(x[0] == 1.0f);
  }), "rank 0 fails before its start", std::runtime_error);
  CHECK(others_raised == m - 1);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // far below the 20 s timeout
}

TEST_CASE("thread_group start_all_reduce: a timeout raises timeout_error, the others communication_error") {
  const auto timeout = std::chrono::milliseconds(200);
  std::atomic<bool> rank0_done{false};
  std::atomic<int> timeouts{0}, later{0};
  const auto t0 = std::chrono::steady_clock::now();
  auto group = bounded_group(2, timeout);
  group.run([&](dppf::thread_communicator c) {
    if (c.rank() == 0) {
      std::vector<float> x(10, 1.0f);
      auto h = c.start_all_reduce(std::span<float>(x), reduce_op::sum);
      try {
        h.wait();
      } catch (const dppf::timeout_error& e) {
        CHECK(std::string(e.what()).find("1 of 2 ranks had started it") != std::string::npos);
        ++timeouts;
      }
      CHECK(x[0] == 1.0f);
      rank0_done = true;
    } else {
      while (!rank0_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::vector<float> x(10, 1.0f);
      try {
        c.start_all_reduce(std::span<float>(x), reduce_op::sum).wait();
      } catch (const dppf::communication_error& e) {
        CHECK(std::string(e.what()).find("timed out") != std::string::npos);
        ++later;
      }
    }
  });
  CHECK(timeouts == 1);
  CHECK(later == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("thread_group start_all_reduce: a handle destroyed without wait waits for the result") {
  const int m = 3;
  std::vector<std::vector<double>> got(m);
  bounded_group(m).run([&](dppf::thread_communicator c) {
    if (c.rank() == 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the others' destructors must wait
    std::vector<double> x(3000, static_cast<double>(c.rank() + 1));
    { auto h = c.start_all_reduce(std::span<double>(x), reduce_op::sum); }
    got[static_cast<std::size_t>(c.rank())] = x;
  });
  for (const auto& x : got)
    for (double v : x) REQUIRE(v == 6.0);
}

TEST_CASE("single_communicator start_all_reduce: the identity, errors at wait") {
  dppf::single_communicator c;
  const auto in = dppf_test::random_vector<float>(100, fresh_seed());
  std::vector<float> out(100, 0.0f);
  auto h = c.start_all_reduce(std::span<const float>(in), std::span<float>(out), reduce_op::avg);
  CHECK(h.test());
  h.wait();
  CHECK(same_bits(out, in));
  std::vector<float> short_out(99);
  auto bad = c.start_all_reduce(std::span<const float>(in), std::span<float>(short_out), reduce_op::sum);  // no throw here
  check_throws_with<dppf::invalid_argument_error>([&] { bad.wait(); }, "single::all_reduce output");
  auto bad_op = c.start_all_reduce(std::span<float>(out), reduce_op::min);
  check_throws_with<dppf::invalid_argument_error>([&] { (void)bad_op.test(); }, "supports sum and avg");
}

TEST_CASE("counting_communicator counts asynchronous all-reduces and their bytes") {
  const int m = 2;
  bounded_group(m).run([&](dppf::thread_communicator tc) {
    dppf::counting_communicator<dppf::thread_communicator> c(tc);
    std::vector<float> x(100, 1.0f), out(100);
    std::vector<double> y(30, 2.0);
    auto h1 = c.start_all_reduce(std::span<const float>(x), std::span<float>(out), reduce_op::sum);
    auto h2 = c.start_all_reduce(std::span<double>(y), reduce_op::avg);
    h1.wait();
    h2.wait();
    CHECK(out[99] == 2.0f);
    CHECK(y[0] == 2.0);
    const auto& k = c.counts();
    CHECK(k.async_buffer_all_reduces == 2);
    CHECK(k.buffer_all_reduces == 0);
    CHECK(k.buffer_values == 130);
    CHECK(k.bytes == 100 * sizeof(float) + 30 * sizeof(double));
    CHECK(k.collectives() == 2);
  });
  dppf::counting_communicator<dppf::single_communicator> s(dppf::single_communicator{});
  std::vector<float> z(8, 1.0f);
  s.start_all_reduce(std::span<float>(z), reduce_op::sum).wait();
  CHECK(s.counts().async_buffer_all_reduces == 1);
  CHECK(s.counts().bytes == 8 * sizeof(float));
}
