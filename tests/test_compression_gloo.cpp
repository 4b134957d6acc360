// Compressed sync over gloo_communicator (all-to-all, Gloo's or pairwise, and gloo::allgather of 16-bit words):
// groups of threads, one rank each, over loopback TCP. The exchange collectives against
// closed-form blocks, bad arguments raise on every rank, the compressed mean against the
// independent replay of compression_reference.hpp, every element, M = 2, 3, 4.
#include <doctest/doctest.h>

#include <dppf/communicators/gloo.hpp>
#include <dppf/compression.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "compression_reference.hpp"
#include "gloo_support.hpp"
#include "support.hpp"

namespace {

static_assert(dppf::exchange_communicator<dppf::gloo_communicator>);
static_assert(dppf::async_exchange_communicator<dppf::gloo_communicator>);

// Runs f(comm) on m threads, one rank each; fails the test with any rank's exception.
void run_gloo_group(int m, const std::function<void(dppf::gloo_communicator&)>& f) {
  dppf_test::require_no_errors(dppf_test::run_gloo_ranks("compression", m, f, dppf_test::gloo_loopback(std::chrono::seconds(30))));
}

}  // namespace

TEST_CASE("compressed sync over Gloo: all_to_all, all_gather and their errors on every rank") {
  // Blocks of 6 words go through Gloo's alltoall, blocks of 8195 (16 KiB and more) pairwise.
  for (std::size_t block : {std::size_t{6}, std::size_t{8195}})
  for (int m : {1, 2, 3, 4}) {
    CAPTURE(m);
    CAPTURE(block);
    run_gloo_group(m, [&, block](dppf::gloo_communicator& comm) {
      const auto r = static_cast<std::size_t>(comm.rank()), mm = static_cast<std::size_t>(m);
      std::vector<std::uint16_t> in(block * mm), out(in.size());
      for (std::size_t k = 0; k < in.size(); ++k) in[k] = static_cast<std::uint16_t>(1000 * r + k);
      comm.all_to_all(in, out);
      std::size_t wrong = 0;
      for (std::size_t j = 0; j < mm; ++j)
        for (std::size_t t = 0; t < block; ++t) wrong += out[j * block + t] != static_cast<std::uint16_t>(1000 * j + r * block + t);
      CHECK(wrong == 0);
      std::vector<std::uint16_t> mine(block, static_cast<std::uint16_t>(r)), all(block * mm);
      comm.all_gather(mine, all);
      wrong = 0;
      for (std::size_t k = 0; k < all.size(); ++k) wrong += all[k] != k / block;
      CHECK(wrong == 0);
      // Started, both outstanding at once: the same results.
      std::vector<std::uint16_t> out2(out.size()), all2(all.size());
      auto exchanging = comm.start_all_to_all(in, out2);
      auto gathering = comm.start_all_gather(mine, all2);
      gathering.wait();
      exchanging.wait();
      CHECK(out2 == out);
      CHECK(all2 == all);
      if (m == 1) return;
      // A started exchange's bad argument raises at wait, on every rank.
      std::vector<std::uint16_t> odd(r == 0 ? mm + 1 : mm), odd_out(odd.size());
      auto bad = comm.start_all_to_all(odd, odd_out);
      if (r == 0)
        dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { bad.wait(); }, "start_all_to_all");
      else
        dppf_test::check_throws_with<dppf::communication_error>([&] { bad.wait(); }, "rank 0 rejected");
      // Rank 0's output is too short: it raises invalid_argument, the others communication_error.
      std::vector<std::uint16_t> short_out(r == 0 ? all.size() - 1 : all.size());
      if (r == 0)
        dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { comm.all_gather(mine, short_out); }, "expected");
      else
        dppf_test::check_throws_with<dppf::communication_error>([&] { comm.all_gather(mine, short_out); }, "rank 0 rejected");
      // Sizes that differ across ranks: every rank names the mismatch.
      std::vector<std::uint16_t> a(mm * (r == 1 ? 2 : 1)), b(a.size());
      dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { comm.all_to_all(a, b); }, "buffer sizes differ");
    });
  }
}

TEST_CASE("compressed sync over Gloo: the mean equals the independent replay, every element") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  // n = 257: Gloo's alltoall; n = 40001: chunks of 10001 words or more, the pairwise exchange.
  for (std::size_t n : {std::size_t{257}, std::size_t{40001}})
  for (int m : {2, 3, 4}) {
    CAPTURE(m);
    CAPTURE(n);
    constexpr int syncs = 4;
    std::vector<std::vector<std::vector<float>>> x(syncs + 1);
    for (int s = 0; s <= syncs; ++s)
      for (int i = 0; i < m; ++i) {
        auto v = dppf_test::random_vector<float>(n, seed + 100u * static_cast<std::uint64_t>(s) + static_cast<std::uint64_t>(i), 0.03);
        for (std::size_t k = 0; k < n; ++k) v[k] += static_cast<float>(k % 7) - 3.0f;
        x[static_cast<std::size_t>(s)].push_back(v);
      }
    std::vector<std::vector<float>> r0(static_cast<std::size_t>(m)), means(static_cast<std::size_t>(m) * syncs);
    std::vector<std::vector<float>> residual(static_cast<std::size_t>(m));
    run_gloo_group(m, [&](dppf::gloo_communicator& comm) {
      const auto i = static_cast<std::size_t>(comm.rank());
      dppf::compressed_mean<float> cm(comm, std::span<const float>(x[0][i]), {.precision = dppf::sync_precision::fp16});
      r0[i].assign(cm.reference().begin(), cm.reference().end());
      for (int s = 1; s <= syncs; ++s) {
        std::vector<float> mean(n);
        const std::span<const float> xs(x[static_cast<std::size_t>(s)][i]);
        if (s % 2 == 0) {  // started on the communication thread (an overlapped sync's way)
          auto flight = cm.start(comm, xs);
          cm.gather(comm, flight);
          CHECK(cm.finish(comm, flight, xs, std::span<float>(mean)));
        } else {
          CHECK(cm(comm, xs, std::span<float>(mean)));
        }
        means[i * syncs + static_cast<std::size_t>(s) - 1] = mean;
      }
      residual[i].assign(cm.residual().begin(), cm.residual().end());
    });
    for (int i = 1; i < m; ++i) REQUIRE(r0[static_cast<std::size_t>(i)] == r0[0]);  // Gloo's ring: the same bits everywhere
    dppf_test::compressed_sync_reference<float> ref(dppf_test::reference_fp16(), static_cast<std::size_t>(m), r0[0]);
    for (int s = 1; s <= syncs; ++s) {
      const std::vector<float> want = ref.sync(x[static_cast<std::size_t>(s)]);
      for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i) {
        CAPTURE(s);
        CAPTURE(i);
        CHECK(means[i * syncs + static_cast<std::size_t>(s) - 1] == want);
      }
    }
    for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i) CHECK(residual[i] == ref.residual[i]);
  }
}

TEST_CASE("compressed sync over Gloo: a silent peer in the pairwise all_to_all makes the others raise timeout_error") {
  using namespace std::chrono_literals;
  const auto timeout = 1500ms;
  const std::size_t block = 10000;  // 20 KB a block: the pairwise exchange
  std::vector<std::chrono::steady_clock::duration> took(3);
  dppf::gloo_options options = dppf_test::gloo_loopback(timeout);
  options.check_arguments = false;  // no agreement first: the exchange itself meets the silence
  const auto errors = dppf_test::run_gloo_ranks(
      "compression_silent", 3,
      [&](dppf::gloo_communicator& comm) {
        std::vector<std::uint16_t> in(3 * block, 7), out(in.size());
        comm.all_to_all(in, out);  // all three take part
        if (comm.rank() == 2) {
          std::this_thread::sleep_for(timeout + 1500ms);  // hung past the others' timeout
          throw std::runtime_error("rank 2 slept");
        }
        const auto start = std::chrono::steady_clock::now();
        try {
          comm.all_to_all(in, out);
        } catch (...) {
          took[static_cast<std::size_t>(comm.rank())] = std::chrono::steady_clock::now() - start;
          throw;
        }
      },
      options);
  for (std::size_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    REQUIRE(errors[r]);
    std::string what;
    bool timed_out = false;
    try {
      std::rethrow_exception(errors[r]);
    } catch (const dppf::timeout_error& e) {
      timed_out = true;
      what = e.what();
    } catch (const std::exception& e) {
      what = e.what();
    }
    INFO("message: " << what);
    CHECK(timed_out);
    CHECK(what.find("all_to_all") != std::string::npos);
    CHECK(took[r] < timeout + 1000ms);
    CHECK(took[r] >= timeout - 100ms);
  }
}
