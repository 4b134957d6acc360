// gradient_buckets: data parallelism's gradient average overlapped with the backward pass. On
// thread_group groups of M = 2, 3, 4 with fresh random layouts, gradients and bucket caps (a
// boundary inside a parameter, between parameters, one bucket, one per parameter), reported in
// reverse or shuffled order (each rank its own): every element bit for bit the one-buffer
// all_reduce's and within rounding of an independent double-precision mean. Buckets start as
// soon as they are complete; bad use raises a clear error; a silent or failing rank makes every
// rank raise at finish within the timeout; the trainer with data_parallel{.gradients_averaged}
// after the buckets gives the same parameters, bit for bit, as data_parallel's own all-reduce.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dppf/dppf.hpp>

#include "support.hpp"

using dppf::reduce_op;
using dppf_test::check_throws_with;

namespace {

std::uint64_t fresh_seed() {
  static const std::uint64_t base = std::random_device{}();
  static std::atomic<std::uint64_t> k{0};
  return base * 1000003 + k++;
}

dppf::parameter_layout random_layout(std::mt19937_64& rng, std::size_t segments, std::size_t max_size) {
  std::vector<std::pair<std::string, std::size_t>> sizes;
  for (std::size_t k = 0; k < segments; ++k)
    sizes.emplace_back(std::to_string(k) + "p", std::uniform_int_distribution<std::size_t>(1, max_size)(rng));
  return dppf::parameter_layout::from_sizes(sizes);
}

// The order a rank reports its segments in: ranges from the last segment back (as a backward
// pass does, several segments at once now and then), or shuffled single segments.
std::vector<std::pair<std::size_t, std::size_t>> report_order(std::size_t segments, bool shuffled, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::pair<std::size_t, std::size_t>> out;
  if (shuffled) {
    for (std::size_t k = 0; k < segments; ++k) out.emplace_back(k, k + 1);
    std::shuffle(out.begin(), out.end(), rng);
    return out;
  }
  std::size_t last = segments;
  while (last > 0) {
    const std::size_t n = std::min(last, std::uniform_int_distribution<std::size_t>(1, 3)(rng));
    out.emplace_back(last - n, last);
    last -= n;
  }
  return out;
}

struct bucket_case {
  dppf::parameter_layout layout;
  dppf::gradient_bucket_options options;
  std::string what;
};

// The layouts and caps each group size is tried with, fresh every run.
std::vector<bucket_case> bucket_cases(std::mt19937_64& rng) {
  std::vector<bucket_case> cases;
  const auto cap = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 3; ++trial) {
    auto l = random_layout(rng, cap(1, 8), 300);
    const std::size_t n = l.total();
    cases.push_back({l, {.bucket_bytes = 4 * cap(1, n), .first_bucket_bytes = 4 * cap(1, n)}, "random caps (boundaries inside parameters)"});
    cases.push_back({l, {.bucket_bytes = 4 * n, .first_bucket_bytes = 4 * n + 4 * cap(0, 5)}, "one bucket"});
    cases.push_back({l, {.bucket_bytes = 4, .first_bucket_bytes = 4}, "one element per bucket"});
    cases.push_back({l, {.bucket_bytes = 4 * cap(1, n) + 1, .first_bucket_bytes = 4 * cap(1, n) + 3}, "caps not a multiple of the element size"});
    cases.push_back({l, {}, "the defaults (25 MiB, 1 MiB first)"});
  }
  // Equal segments and a cap of one segment: every boundary between parameters, one bucket each.
  const std::size_t s = cap(1, 200), k = cap(2, 7);
  std::vector<std::pair<std::string, std::size_t>> equal;
  for (std::size_t i = 0; i < k; ++i) equal.emplace_back(std::to_string(i) + "w", s);
  const auto el = dppf::parameter_layout::from_sizes(equal);
  cases.push_back({el, {.bucket_bytes = 4 * s, .first_bucket_bytes = 4 * s}, "one bucket per parameter"});
  cases.push_back({el, {.bucket_bytes = 4 * 2 * s, .first_bucket_bytes = 4 * s}, "two parameters per bucket, one first"});
  return cases;
}

// What one rank saw: its averaged gradients, the blocking all_reduce's, and any error.
struct rank_result {
  std::vector<float> bucketed, blocking;
  std::string error;
};

}  // namespace

TEST_CASE("gradient buckets: the buckets tile the buffer from its end within the caps") {
  std::mt19937_64 rng(fresh_seed());
  dppf::single_communicator comm;
  for (const auto& c : bucket_cases(rng)) {
    INFO(c.what << ", " << c.layout.total() << " elements");
    dppf::gradient_buckets buckets(comm, c.layout, c.options);
    std::size_t end = c.layout.total();
    for (std::size_t b = 0; b < buckets.bucket_count(); ++b) {
      const auto [lo, hi] = buckets.bucket_range(b);
      const std::size_t cap = (b == 0 ? c.options.first_bucket_bytes : c.options.bucket_bytes) / sizeof(float);
      CHECK(hi == end);
      CHECK(lo < hi);
      CHECK(hi - lo <= cap);
      if (lo > 0) CHECK(hi - lo == cap);  // only the last (lowest) bucket may be short
      end = lo;
    }
    CHECK(end == 0);
  }
}

TEST_CASE("gradient buckets: the bucketed average equals the one-buffer all-reduce bit for bit") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (int m : {2, 3, 4}) {
    for (const auto& c : bucket_cases(rng)) {
      for (const bool shuffled : {false, true}) {
        INFO("M = " << m << ", " << c.what << ", " << c.layout.size() << " segments, " << c.layout.total()
                    << " elements, shuffled " << shuffled);
        const std::size_t n = c.layout.total();
        std::vector<std::vector<float>> grads(static_cast<std::size_t>(m));
        for (int r = 0; r < m; ++r) grads[static_cast<std::size_t>(r)] = dppf_test::random_vector<float>(n, rng(), 3.0);
        std::vector<rank_result> out(static_cast<std::size_t>(m));
        const std::uint64_t order_seed = rng();
        dppf::thread_group(m, {.timeout = std::chrono::seconds(20)}).run([&](auto comm) {
          const auto r = static_cast<std::size_t>(comm.rank());
          rank_result& res = out[r];
          res.blocking.resize(n);
          comm.all_reduce(std::span<const float>(grads[r]), res.blocking, reduce_op::avg);
          // As a backward pass does: each segment written just before it is reported, so a bucket
          // started early would average the placeholder.
          res.bucketed.assign(n, 1e30f);
          dppf::gradient_buckets buckets(comm, c.layout, c.options);
          buckets.begin(res.bucketed);
          for (const auto& [first, last] : report_order(c.layout.size(), shuffled, order_seed + r)) {
            const std::size_t lo = c.layout[first].offset, hi = c.layout[last - 1].offset + c.layout[last - 1].size;
            std::copy(grads[r].begin() + static_cast<std::ptrdiff_t>(lo), grads[r].begin() + static_cast<std::ptrdiff_t>(hi),
                      res.bucketed.begin() + static_cast<std::ptrdiff_t>(lo));
            buckets.ready(first, last);
          }
          buckets.finish();
        });
        std::size_t differ = 0, far = 0;
        for (std::size_t i = 0; i < n; ++i) {
          double mean = 0.0;
          for (int r = 0; r < m; ++r) mean += static_cast<double>(grads[static_cast<std::size_t>(r)][i]);
          mean /= m;
          for (const auto& res : out) {
            if (std::memcmp(&res.bucketed[i], &res.blocking[i], sizeof(float)) != 0) ++differ;
            if (std::abs(static_cast<double>(res.bucketed[i]) - mean) > 1e-6 * (1.0 + std::abs(mean))) ++far;
          }
        }
        CHECK(differ == 0);
        CHECK(far == 0);
      }
    }
  }
}

TEST_CASE("gradient buckets: a bucket starts as soon as its segments are reported, in bucket order") {
  // Segments of 4 elements, buckets of 4 (bucket b = segment 3 - b): each report of the last
  // unreported segment starts exactly one more all-reduce; one reported early starts nothing.
  dppf::counting_communicator<dppf::single_communicator> comm{dppf::single_communicator{}};
  const auto layout = dppf::parameter_layout::from_sizes({{"a", 4}, {"b", 4}, {"c", 4}, {"d", 4}});
  dppf::gradient_buckets buckets(comm, layout, {.bucket_bytes = 16, .first_bucket_bytes = 16});
  std::vector<float> g(16, 1.0f);
  const auto started = [&] { return comm.counts().async_buffer_all_reduces; };
  buckets.begin(g);
  CHECK(buckets.in_pass());
  buckets.ready(1);  // b: bucket 2, but buckets 0 and 1 come first
  CHECK(started() == 0);
  buckets.ready(3);  // d: bucket 0
  CHECK(started() == 1);
  buckets.ready(2);  // c: bucket 1, then bucket 2 (b) is complete too
  CHECK(started() == 3);
  buckets.ready(0);
  CHECK(started() == 4);
  buckets.finish();
  CHECK_FALSE(buckets.in_pass());
  CHECK(comm.counts().bytes == 16 * sizeof(float));
  // A second pass reuses the buckets.
  buckets.begin(g);
  buckets.ready(0, 4);
  buckets.finish();
  CHECK(started() == 8);
}

TEST_CASE("gradient buckets: bad use raises a clear error") {
  dppf::single_communicator comm;
  const auto layout = dppf::parameter_layout::from_sizes({{"w", 6}, {"b", 2}, {"v", 5}});
  std::vector<float> g(13, 1.0f), short_g(12, 1.0f);
  check_throws_with<dppf::invalid_argument_error>([&] { (void)dppf::gradient_buckets(comm, dppf::parameter_layout{}); }, "no segments");
  check_throws_with<dppf::invalid_argument_error>([&] { (void)dppf::gradient_buckets(comm, layout, {.bucket_bytes = 3}); }, "bucket_bytes");
  check_throws_with<dppf::invalid_argument_error>([&] { (void)dppf::gradient_buckets(comm, layout, {.first_bucket_bytes = 0}); },
                                                  "first_bucket_bytes");
  dppf::gradient_buckets buckets(comm, layout, {.bucket_bytes = 12, .first_bucket_bytes = 8});
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.ready(0); }, "no pass in progress");
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.finish(); }, "no pass in progress");
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.begin(short_g); }, "has 12 elements but the layout covers 13");
  buckets.begin(g);
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.begin(g); }, "previous pass was not finished");
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.ready(3); }, "[3, 4) are not a non-empty range");
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.ready(2, 2); }, "[2, 2)");
  buckets.ready(2);
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.ready(2); }, "segment 2 ('v') was reported ready twice");
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.ready(1, 3); }, "segment 2 ('v') was reported ready twice");
  buckets.ready(0);  // 'b' never reported
  check_throws_with<dppf::invalid_argument_error>([&] { buckets.finish(); }, "segment 1 ('b') was never reported ready (1 of 3");
  CHECK_FALSE(buckets.in_pass());
  buckets.begin(g);  // a failed pass ended: the next one starts clean
  buckets.ready(0, 3);
  buckets.finish();
}

TEST_CASE("gradient buckets: a missing report on every rank raises on every rank, no hang") {
  const auto layout = dppf::parameter_layout::from_sizes({{"w", 7}, {"b", 3}});
  std::vector<std::string> errors(3);
  dppf::thread_group(3, {.timeout = std::chrono::seconds(20)}).run([&](auto comm) {
    std::vector<float> g(10, static_cast<float>(comm.rank()));
    dppf::gradient_buckets buckets(comm, layout, {.bucket_bytes = 8, .first_bucket_bytes = 8});
    buckets.begin(g);
    buckets.ready(1);
    try {
      buckets.finish();
    } catch (const dppf::invalid_argument_error& e) {
      errors[static_cast<std::size_t>(comm.rank())] = e.what();
    }
  });
  for (const auto& e : errors) CHECK(e.find("segment 0 ('w') was never reported") != std::string::npos);
}

TEST_CASE("gradient buckets: a silent rank makes every rank raise at finish within the timeout") {
  // Rank 2 reports its last segment only after the group's timeout: the others' finish raises
  // (one timeout_error, the rest communication_error), and so does rank 2's.
  using clock = std::chrono::steady_clock;
  const auto timeout = std::chrono::milliseconds(400);
  const auto layout = dppf::parameter_layout::from_sizes({{"w", 50}, {"b", 10}});
  std::vector<std::string> errors(3);
  std::vector<double> seconds(3, -1.0);
  dppf::thread_group(3, {.timeout = timeout}).run([&](auto comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> g(60, 1.0f);
    dppf::gradient_buckets buckets(comm, layout, {.bucket_bytes = 40, .first_bucket_bytes = 40});
    const auto t0 = clock::now();
    buckets.begin(g);
    buckets.ready(1);
    if (r == 2) std::this_thread::sleep_for(timeout * 3);
    buckets.ready(0);
    try {
      buckets.finish();
    } catch (const dppf::communication_error& e) {
      errors[r] = e.what();
    }
    seconds[r] = std::chrono::duration<double>(clock::now() - t0).count();
  });
  for (std::size_t r = 0; r < 3; ++r) {
    INFO("rank " << r << ": " << errors[r]);
    CHECK_FALSE(errors[r].empty());
    CHECK(seconds[r] >= 0.0);
    CHECK(seconds[r] < 1.2 + 5.0);  // rank 2 sleeps 1.2 s; the others wait one 0.4 s timeout
  }
  CHECK(errors[0].find("timed out") != std::string::npos);
}

TEST_CASE("gradient buckets: a rank failing mid-pass makes every other rank raise at finish") {
  const auto layout = dppf::parameter_layout::from_sizes({{"w", 30}, {"b", 5}, {"v", 20}});
  std::vector<std::string> errors(4);
  bool rethrown = false;
  try {
    dppf::thread_group(4, {.timeout = std::chrono::seconds(20)}).run([&](auto comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<float> g(55, 2.0f);
      dppf::gradient_buckets buckets(comm, layout, {.bucket_bytes = 60, .first_bucket_bytes = 40});
      buckets.begin(g);
      buckets.ready(2);
      if (r == 1) throw std::runtime_error("rank 1's backward failed");
      buckets.ready(0, 2);
      try {
        buckets.finish();
      } catch (const dppf::communication_error& e) {
        errors[r] = e.what();
      }
    });
  } catch (const std::runtime_error& e) {
    rethrown = std::string(e.what()) == "rank 1's backward failed";
  }
  CHECK(rethrown);
  for (std::size_t r : {0u, 2u, 3u}) {
    INFO("rank " << r);
    CHECK(errors[r].find("aborted") != std::string::npos);
  }
}

TEST_CASE("gradient buckets: the trainer's data_parallel step on averaged gradients matches its own all-reduce") {
  // Two trainers per rank, one averaging through data_parallel{} and one through the buckets with
  // data_parallel{.gradients_averaged = true}; momentum SGD and averaged buffers, several steps
  // of fresh gradients: the same parameters and buffers bit for bit, and the same traffic.
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const auto layout = random_layout(rng, 6, 200);
  const std::size_t n = layout.total(), steps = 5;
  const int m = 3;
  std::vector<std::vector<std::vector<float>>> grads(static_cast<std::size_t>(m));
  for (auto& per_rank : grads)
    for (std::size_t s = 0; s < steps; ++s) per_rank.push_back(dppf_test::random_vector<float>(n, rng()));
  const auto start = dppf_test::random_vector<float>(n, rng());
  std::vector<std::size_t> differ(static_cast<std::size_t>(m), 1);
  std::vector<std::uint64_t> bytes_plain(static_cast<std::size_t>(m)), bytes_bucketed(static_cast<std::size_t>(m));
  dppf::thread_group(m, {.timeout = std::chrono::seconds(20)}).run([&](auto comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const dppf::sgd opt{{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3}};
    dppf::trainer plain{opt, dppf::data_parallel{}, comm, dppf::host_executor{}};
    dppf::trainer bucketed{opt, dppf::data_parallel{.gradients_averaged = true}, comm, dppf::host_executor{}};
    dppf::gradient_buckets buckets(bucketed.comm(), layout, {.bucket_bytes = 4 * 97, .first_bucket_bytes = 4 * 31});
    std::vector<float> x1 = start, x2 = start, g(n);
    std::vector<float> b1(7, static_cast<float>(r)), b2 = b1;
    for (std::size_t s = 0; s < steps; ++s) {
      plain.step(x1, grads[r][s], 0.5, b1);
      g = grads[r][s];
      buckets.begin(g);
      for (std::size_t k = layout.size(); k-- > 0;) buckets.ready(k);
      buckets.finish();
      bucketed.step(x2, g, 0.5, b2);
    }
    differ[r] = (std::memcmp(x1.data(), x2.data(), n * sizeof(float)) != 0) + (b1 != b2);
    bytes_plain[r] = plain.stats().bytes;
    bytes_bucketed[r] = bucketed.stats().bytes;
  });
  for (std::size_t r = 0; r < differ.size(); ++r) {
    INFO("rank " << r);
    CHECK(differ[r] == 0);
    CHECK(bytes_bucketed[r] == bytes_plain[r]);
  }
}
