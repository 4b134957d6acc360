// Compressed sync (dppf/compression/, trainer_options::sync_precision): the bf16 and fp16 codecs
// against an independent table of every value (bit patterns, ties, subnormals, overflow); the
// compressed mean against an independent replay of quantize -> reduce -> dequantize with error
// feedback, every element, M = 2, 3, 4 over thread_group; the exchange collectives and their
// counts; a named convex problem over 1000 syncs (bounded drift with error feedback, not
// without); wire bytes against the fp32 ring; full = today's bits; errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "compression_reference.hpp"
#include "support.hpp"

using dppf_test::check_throws_with;

namespace {

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

template <class Format>
void check_codec(const dppf_test::reference_format& ref) {
  // Every word decodes to the table's value, and every non-NaN word encodes back to itself.
  for (std::uint32_t w = 0; w <= 0xFFFF; ++w) {
    const auto word = static_cast<std::uint16_t>(w);
    const double want = ref.decode(word);
    const float got = Format::decode(word);
    CAPTURE(w);
    if (std::isnan(want)) {
      REQUIRE(std::isnan(got));
      CHECK(Format::encode(got) == ((word & 0x8000) | ref.quiet_nan()));
      continue;
    }
    REQUIRE(static_cast<double>(got) == want);
    REQUIRE(std::signbit(got) == std::signbit(want));
    REQUIRE(Format::encode(got) == word);
  }
  // Every midpoint between neighbours (exact in fp32): a tie, to the even word.
  for (std::size_t w = 0; w + 1 < ref.values.size(); ++w) {
    const double mid = 0.5 * (ref.values[w] + ref.values[w + 1]);
    const float f = static_cast<float>(mid);
    if (static_cast<double>(f) != mid) continue;
    CAPTURE(w);
    const std::uint16_t even = static_cast<std::uint16_t>(w % 2 == 0 ? w : w + 1);
    REQUIRE(Format::encode(f) == even);
    REQUIRE(Format::encode(-f) == (even | 0x8000));
    REQUIRE(ref.encode(f) == even);
    // Just off the tie, the nearer neighbour.
    REQUIRE(Format::encode(std::nextafter(f, 0.0f)) == w);
    REQUIRE(Format::encode(std::nextafter(f, std::numeric_limits<float>::infinity())) == w + 1);
  }
  // Fresh random fp32 bit patterns (all exponents: subnormals, overflow, infinities, NaNs).
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  std::mt19937_64 gen(seed);
  for (int k = 0; k < 300000; ++k) {
    const float x = float_of(static_cast<std::uint32_t>(gen()));
    CAPTURE(bits_of(x));
    REQUIRE(Format::encode(x) == ref.encode(x));
  }
}

}  // namespace

TEST_CASE("compressed sync: bf16 rounds to nearest even, saturates, keeps infinities and NaNs") {
  check_codec<dppf::bf16_format>(dppf_test::reference_bf16());
  using F = dppf::bf16_format;
  CHECK(F::encode(1.0f) == 0x3F80);
  CHECK(F::encode(1.0f + 0x1p-8f) == 0x3F80);         // tie, even below
  CHECK(F::encode(1.0f + 3 * 0x1p-8f) == 0x3F82);     // tie, even above
  CHECK(F::encode(std::numeric_limits<float>::max()) == 0x7F7F);   // would round to inf: saturates
  CHECK(F::encode(-std::numeric_limits<float>::max()) == 0xFF7F);
  CHECK(F::encode(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(F::encode(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(F::encode(std::numeric_limits<float>::quiet_NaN()) == 0x7FC0);
  CHECK(F::encode(std::numeric_limits<float>::denorm_min()) == 0x0000);  // below half a bf16 subnormal
  CHECK(F::encode(0x1p-133f) == 0x0001);  // the smallest bf16 subnormal
  CHECK(F::encode(-0.0f) == 0x8000);
}

TEST_CASE("compressed sync: a double beyond float's range rounds to the infinity or FLT_MAX the hardware gives") {
  constexpr float inf = std::numeric_limits<float>::infinity(), top = std::numeric_limits<float>::max();
  const double half_ulp = std::ldexp(1.0, 103);  // half of FLT_MAX's ulp
  CHECK(dppf::nearest_float(1e300) == inf);
  CHECK(dppf::nearest_float(-1e300) == -inf);
  CHECK(dppf::nearest_float(static_cast<double>(top) + half_ulp) == inf);           // the tie: to even, infinity
  CHECK(dppf::nearest_float(static_cast<double>(top) + 0.5 * half_ulp) == top);     // below the tie
  CHECK(dppf::nearest_float(-(static_cast<double>(top) + 0.5 * half_ulp)) == -top);
  CHECK(std::isnan(dppf::nearest_float(std::numeric_limits<double>::quiet_NaN())));
  CHECK(dppf::nearest_float(std::numeric_limits<double>::infinity()) == inf);
  // in range it is the plain conversion, on fresh random doubles (rounding to nearest even)
  std::mt19937_64 gen(dppf_test::compression_seed());
  std::uniform_real_distribution<double> u(-3.0e38, 3.0e38);
  for (int i = 0; i < 10000; ++i) {
    const double x = u(gen) * std::ldexp(1.0, -static_cast<int>(gen() % 200));
    CHECK(dppf::nearest_float(x) == static_cast<float>(x));
  }
  // The owner's step with a sum whose mean overflows float: an infinite word, not undefined behaviour.
  float residual = 0.0f;
  std::uint16_t word = 0;
  dppf::quantize_mean_fn<dppf::bf16_format>{0.5, true}(1e300, residual, word);
  CHECK(word == 0x7F80);
  // A double parameter's difference beyond float's range: the same.
  double e = 0.0;
  dppf::quantize_difference_fn<dppf::bf16_format>{true}(1e300, 0.0, e, word);
  CHECK(word == 0x7F80);
}

TEST_CASE("compressed sync: fp16 rounds to nearest even, subnormals, saturates at 65504") {
  check_codec<dppf::fp16_format>(dppf_test::reference_fp16());
  using F = dppf::fp16_format;
  CHECK(F::encode(65504.0f) == 0x7BFF);
  CHECK(F::encode(65519.0f) == 0x7BFF);
  CHECK(F::encode(65520.0f) == 0x7BFF);  // the tie IEEE rounds to inf: saturates
  CHECK(F::encode(1e10f) == 0x7BFF);
  CHECK(F::encode(-1e10f) == 0xFBFF);
  CHECK(F::encode(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(F::encode(std::numeric_limits<float>::quiet_NaN()) == 0x7E00);
  CHECK(F::encode(0x1p-24f) == 0x0001);          // smallest subnormal
  CHECK(F::encode(0x1p-25f) == 0x0000);          // tie between 0 and it: 0
  CHECK(F::encode(0x1.8p-25f) == 0x0001);
  CHECK(F::encode(3 * 0x1p-25f) == 0x0002);      // tie between 1 and 2 units: 2
  CHECK(F::encode(0x1p-14f) == 0x0400);          // smallest normal
  CHECK(F::encode(0x1p-14f - 0x1p-25f) == 0x0400);  // tie 0x3FF / 0x400: even
  CHECK(F::decode(0x0001) == 0x1p-24f);
  CHECK(F::decode(0x3C00) == 1.0f);
}

namespace {

// How the mean is taken: operator() (blocking), or start / gather / finish (what an overlapped
// sync does), or start / finish (gather left to finish, as at d = 1).
enum class staging { blocking, three_calls, two_calls };

template <class T>
void check_compressed_mean(dppf::sync_precision precision, const dppf_test::reference_format& format, int m, std::size_t n,
                           staging how = staging::blocking) {
  const std::uint64_t seed = dppf_test::compression_seed();
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(static_cast<int>(how));
  INFO("seed = " << seed);
  constexpr int syncs = 6;
  // x[s][i]: rank i's parameters at sync s: a common walk plus each rank's own spread, so the
  // differences from the reference are small against the parameters (what compression exploits).
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  std::vector<std::vector<std::vector<T>>> x(syncs + 1, std::vector<std::vector<T>>(static_cast<std::size_t>(m), std::vector<T>(n)));
  std::vector<double> base(n);
  for (auto& b : base) b = 10.0 * normal(gen);
  for (int s = 0; s <= syncs; ++s)
    for (int i = 0; i < m; ++i)
      for (std::size_t k = 0; k < n; ++k) {
        const double spread = k % 17 == 3 ? 1e5 : 1e-2;  // some past fp16's range: saturation + feedback
        x[static_cast<std::size_t>(s)][static_cast<std::size_t>(i)][k] = static_cast<T>(base[k] + 0.1 * s + spread * normal(gen));
      }
  // r0: the thread_group's exact mean (sum in double in rank order, times 1/M, rounded to T).
  std::vector<T> r0(n);
  for (std::size_t k = 0; k < n; ++k) {
    double sum = 0.0;
    for (int i = 0; i < m; ++i) sum += static_cast<double>(x[0][static_cast<std::size_t>(i)][k]);
    r0[k] = static_cast<T>(sum * (1.0 / m));
  }
  dppf_test::compressed_sync_reference<T> ref(format, static_cast<std::size_t>(m), r0);
  std::vector<std::vector<T>> want(syncs);
  for (int s = 0; s < syncs; ++s) want[static_cast<std::size_t>(s)] = ref.sync(x[static_cast<std::size_t>(s) + 1]);

  std::vector<std::vector<std::vector<T>>> got(syncs, std::vector<std::vector<T>>(static_cast<std::size_t>(m)));
  std::vector<std::vector<T>> residual(static_cast<std::size_t>(m)), owner(static_cast<std::size_t>(m)), reference(static_cast<std::size_t>(m));
  dppf::thread_group group(m, {.timeout = std::chrono::seconds(60)});
  group.run([&](dppf::thread_communicator comm) {
    const auto i = static_cast<std::size_t>(comm.rank());
    dppf::counting_communicator<dppf::thread_communicator> counted(comm);
    dppf::compressed_mean<T> cm(counted, std::span<const T>(x[0][i]), {.precision = precision});
    for (int s = 0; s < syncs; ++s) {
      std::vector<T> mean(n, T(-1));
      const std::span<const T> xs(x[static_cast<std::size_t>(s) + 1][i]);
      if (how == staging::blocking) {
        CHECK(cm(counted, xs, std::span<T>(mean)));
      } else {
        auto flight = cm.start(counted, xs);
        if (how == staging::three_calls) {
          CHECK_FALSE(flight.gathering());
          cm.gather(counted, flight);
          CHECK(flight.gathering());
        }
        CHECK(cm.finish(counted, flight, xs, std::span<T>(mean)));
      }
      got[static_cast<std::size_t>(s)][i] = mean;
    }
    residual[i].assign(cm.residual().begin(), cm.residual().end());
    owner[i].assign(cm.owner_residual().begin(), cm.owner_residual().end());
    reference[i].assign(cm.reference().begin(), cm.reference().end());
    // The ranks start apart: the fingerprints' all-gather and one all-reduce for r0, then an
    // all-to-all and an all-gather per sync.
    CHECK(counted.counts().buffer_all_reduces == 1);
    CHECK(counted.counts().all_to_alls == syncs);
    CHECK(counted.counts().buffer_all_gathers == syncs + 1);
  });
  const std::size_t chunk = (n + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
  for (int s = 0; s < syncs; ++s)
    for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i)
      for (std::size_t k = 0; k < n; ++k) {
        CAPTURE(s);
        CAPTURE(i);
        CAPTURE(k);
        REQUIRE(got[static_cast<std::size_t>(s)][i][k] == want[static_cast<std::size_t>(s)][k]);
      }
  for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i) {
    CHECK(reference[i] == ref.reference);
    CHECK(residual[i] == ref.residual[i]);
    REQUIRE(owner[i].size() == chunk);
    for (std::size_t t = 0; t < chunk; ++t) CHECK(owner[i][t] == ref.owner_residual[i][t]);
  }
  // The compressed mean is the true mean up to about one rounding of the differences.
  const auto& last = x[syncs];
  double worst = 0.0;
  for (std::size_t k = 0; k < n; ++k) {
    if (k % 17 == 3) continue;  // saturated elements carry their excess over several syncs
    double sum = 0.0;
    for (int i = 0; i < m; ++i) sum += static_cast<double>(last[static_cast<std::size_t>(i)][k]);
    worst = std::max(worst, std::fabs(static_cast<double>(want[syncs - 1][k]) - sum / m));
  }
  CHECK(worst < 0.05);
}

}  // namespace

TEST_CASE("compressed sync: the mean equals an independent replay with error feedback, every element") {
  for (int m : {2, 3, 4})
    for (std::size_t n : {std::size_t{1}, std::size_t{5}, std::size_t{1001}}) {
      check_compressed_mean<float>(dppf::sync_precision::bf16, dppf_test::reference_bf16(), m, n);
      check_compressed_mean<float>(dppf::sync_precision::fp16, dppf_test::reference_fp16(), m, n);
      check_compressed_mean<double>(dppf::sync_precision::bf16, dppf_test::reference_bf16(), m, n);
      check_compressed_mean<float>(dppf::sync_precision::bf16, dppf_test::reference_bf16(), m, n, staging::three_calls);
      check_compressed_mean<float>(dppf::sync_precision::fp16, dppf_test::reference_fp16(), m, n, staging::two_calls);
      check_compressed_mean<double>(dppf::sync_precision::bf16, dppf_test::reference_bf16(), m, n, staging::three_calls);
    }
}

TEST_CASE("compressed sync: the fingerprint tells apart buffers one bit, one element or the length apart") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  std::mt19937_64 gen(seed);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{33}}) {
    CAPTURE(n);
    const std::vector<float> x = dppf_test::random_vector<float>(n, seed + n);
    const auto base = dppf::detail::fingerprint(std::span<const float>(x));
    CHECK(dppf::detail::fingerprint(std::span<const float>(std::vector<float>(x))) == base);
    // Every bit of every element, flipped alone, changes it (the tail word included).
    for (std::size_t k = 0; k < n; ++k)
      for (int bit = 0; bit < 32; ++bit) {
        std::vector<float> y = x;
        std::uint32_t w;
        std::memcpy(&w, &y[k], 4);
        w ^= std::uint32_t{1} << bit;
        std::memcpy(&y[k], &w, 4);
        CHECK(dppf::detail::fingerprint(std::span<const float>(y)) != base);
      }
    // A zero appended (what the tail is padded with) changes it too: the length is mixed in.
    std::vector<float> longer = x;
    longer.push_back(0.0f);
    CHECK(dppf::detail::fingerprint(std::span<const float>(longer)) != base);
  }
  // Random buffers of one length do not collide in any of the 8 words' 16 bits more often than
  // chance: 2000 fingerprints, each word's values spread (a constant word would be a dead lane).
  std::vector<std::array<std::uint16_t, 8>> seen;
  for (int t = 0; t < 2000; ++t)
    seen.push_back(dppf::detail::fingerprint(std::span<const float>(dppf_test::random_vector<float>(64, gen()))));
  for (std::size_t w = 0; w < 8; ++w) {
    std::vector<std::uint16_t> words;
    for (const auto& f : seen) words.push_back(f[w]);
    std::sort(words.begin(), words.end());
    const auto distinct = static_cast<std::size_t>(std::unique(words.begin(), words.end()) - words.begin());
    CHECK(distinct > 1900);  // 2000 draws of 65536 values: about 1970 distinct expected
  }
}

TEST_CASE("compressed sync: the reference starts as the parameters when every rank holds them, else as their exact mean") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  constexpr int m = 3;  // x + x + x rounds: a mean all-reduce would not give x back exactly
  constexpr std::size_t n = 1001;
  const std::vector<float> common = dppf_test::random_vector<float>(n, seed);
  std::mt19937_64 gen(seed + 1);
  const std::size_t at = std::uniform_int_distribution<std::size_t>(0, n - 1)(gen);
  const int odd_rank = std::uniform_int_distribution<int>(0, m - 1)(gen);
  for (bool apart : {false, true}) {
    CAPTURE(apart);
    std::vector<std::vector<float>> x(m, common);
    if (apart) x[static_cast<std::size_t>(odd_rank)][at] = std::nextafter(common[at], 1e30f);  // one ulp on one rank
    std::vector<std::vector<float>> reference(m);
    std::vector<dppf::communication_counts> counts(m);
    dppf::thread_group group(m, {.timeout = std::chrono::seconds(60)});
    group.run([&](dppf::thread_communicator comm) {
      const auto i = static_cast<std::size_t>(comm.rank());
      dppf::counting_communicator counted(comm);
      dppf::compressed_mean<float> cm(counted, std::span<const float>(x[i]), {});
      reference[i].assign(cm.reference().begin(), cm.reference().end());
      counts[i] = counted.counts();
    });
    for (std::size_t i = 0; i < m; ++i) {
      CAPTURE(i);
      CHECK(counts[i].buffer_all_gathers == 1);
      CHECK(counts[i].buffer_all_reduces == (apart ? 1u : 0u));
      std::size_t wrong = 0;
      for (std::size_t k = 0; k < n; ++k) {
        double sum = 0.0;
        for (std::size_t j = 0; j < m; ++j) sum += static_cast<double>(x[j][k]);
        const float want = apart ? static_cast<float>(sum * (1.0 / m)) : common[k];
        wrong += std::memcmp(&reference[i][k], &want, sizeof(float)) != 0;
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("compressed sync: a non-finite worker gives a non-finite mean on every rank and keeps the reference") {
  dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x = dppf_test::random_vector<float>(10, 7);
    dppf::compressed_mean<float> cm(comm, std::span<const float>(x), {.precision = dppf::sync_precision::bf16});
    const std::vector<float> r0(cm.reference().begin(), cm.reference().end());
    std::vector<float> y = x, mean(10);
    for (auto& v : y) v += 0.01f;
    if (comm.rank() == 1) y[4] = std::numeric_limits<float>::quiet_NaN();
    CHECK_FALSE(cm(comm, std::span<const float>(y), std::span<float>(mean)));
    CHECK(std::isnan(mean[4]));
    CHECK(std::vector<float>(cm.reference().begin(), cm.reference().end()) == r0);
    for (float e : cm.residual()) CHECK(e == 0.0f);
    for (float e : cm.owner_residual()) CHECK(e == 0.0f);
  });
}

namespace {

// thread_communicator whose exchange collectives raise (on every rank, before any data moves) at
// the listed calls: a sync that fails half-way, after its all-to-all or before it.
struct exchange_failing_at : dppf::thread_communicator {
  int fail_all_to_all = -1, fail_all_gather = -1;
  int all_to_alls = 0, all_gathers = 0;
  using dppf::thread_communicator::all_gather;
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    if (all_to_alls++ == fail_all_to_all) throw dppf::communication_error("injected all_to_all failure");
    dppf::thread_communicator::all_to_all(in, out);
  }
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    if (all_gathers++ == fail_all_gather) throw dppf::communication_error("injected all_gather failure");
    dppf::thread_communicator::all_gather(in, out);
  }
};

}  // namespace

TEST_CASE("compressed sync: a sync whose exchange raises leaves the residuals and reference as they were") {
  // Each run: 6 syncs of fresh random parameters; the faulty run's sync 2 raises in its
  // all-to-all or in its all-gather, and is then repeated with the same input. Its means and
  // final state must be the fault-free run's bit for bit: the failed sync changed nothing.
  constexpr std::size_t m = 3, syncs = 6, n = 257;
  constexpr int failed = 2;
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  std::vector<std::vector<std::vector<float>>> x(syncs + 1, std::vector<std::vector<float>>(m));
  for (std::size_t s = 0; s <= syncs; ++s)
    for (std::size_t i = 0; i < m; ++i) x[s][i] = dppf_test::random_vector<float>(n, seed + 31 * s + i);
  const auto run = [&](int fail_a2a, int fail_gather) {
    std::vector<std::vector<float>> out(m);  // every mean, then r, e and g, concatenated
    std::vector<int> raised(m, 0);
    dppf::thread_group group(static_cast<int>(m), {.timeout = std::chrono::seconds(60)});
    group.run([&](dppf::thread_communicator comm) {
      const auto i = static_cast<std::size_t>(comm.rank());
      exchange_failing_at faulty{comm, fail_a2a, fail_gather};
      dppf::compressed_mean<float> cm(faulty, std::span<const float>(x[0][i]), {.precision = dppf::sync_precision::bf16});
      for (std::size_t s = 1; s <= syncs; ++s) {
        std::vector<float> mean(n, -1.0f);
        const auto sync = [&] { return cm(faulty, std::span<const float>(x[s][i]), std::span<float>(mean)); };
        bool finite = false;  // outside CHECK, which would catch the injected error itself
        try {
          finite = sync();
        } catch (const dppf::communication_error& e) {
          CHECK(std::string(e.what()).find("injected") != std::string::npos);
          ++raised[i];
          finite = sync();  // the same sync again, on the unchanged state
        }
        CHECK(finite);
        out[i].insert(out[i].end(), mean.begin(), mean.end());
      }
      for (auto part : {cm.reference(), cm.residual(), cm.owner_residual()}) out[i].insert(out[i].end(), part.begin(), part.end());
    });
    return std::pair{out, raised};
  };
  const auto [clean, none] = run(-1, -1);
  for (int r : none) CHECK(r == 0);
  for (const auto& faults : {std::pair{failed - 1, -1}, std::pair{-1, failed - 1}}) {
    const int a2a = faults.first, gather = faults.second;  // not a structured binding: CAPTURE's lambda (clang 14)
    CAPTURE(a2a);
    CAPTURE(gather);
    const auto [faulty, raised] = run(a2a, gather);
    for (std::size_t i = 0; i < m; ++i) {
      CHECK(raised[i] == 1);
      REQUIRE(faulty[i].size() == clean[i].size());
      for (std::size_t k = 0; k < clean[i].size(); ++k) {
        CAPTURE(i);
        CAPTURE(k);
        REQUIRE(std::memcmp(&faulty[i][k], &clean[i][k], sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("compressed sync: all_to_all and all_gather of words on thread_group, single and counting, blocking and started") {
  for (const bool started : {false, true})
  for (int m : {1, 2, 3, 4}) {
    CAPTURE(m);
    CAPTURE(started);
    const std::size_t block = 5;
    dppf::thread_group group(m, {.timeout = std::chrono::seconds(60)});
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::uint16_t>(comm.rank());
      dppf::counting_communicator<dppf::thread_communicator> c(comm);
      std::vector<std::uint16_t> in(block * static_cast<std::size_t>(m)), out(in.size());
      for (std::size_t k = 0; k < in.size(); ++k) in[k] = static_cast<std::uint16_t>(1000 * r + k);
      std::vector<std::uint16_t> mine(block), all(block * static_cast<std::size_t>(m));
      for (std::size_t t = 0; t < block; ++t) mine[t] = static_cast<std::uint16_t>(100 * r + t);
      if (started) {  // both outstanding at once, waited in the reverse order
        auto a = c.start_all_to_all(in, out);
        auto b = c.start_all_gather(mine, all);
        b.wait();
        a.wait();
      } else {
        c.all_to_all(in, out);
        c.all_gather(mine, all);
      }
      for (std::size_t j = 0; j < static_cast<std::size_t>(m); ++j)
        for (std::size_t t = 0; t < block; ++t) CHECK(out[j * block + t] == 1000 * j + r * block + t);
      for (std::size_t j = 0; j < static_cast<std::size_t>(m); ++j)
        for (std::size_t t = 0; t < block; ++t) CHECK(all[j * block + t] == 100 * j + t);
      const auto mm = static_cast<std::uint64_t>(m);
      CHECK(c.counts().all_to_alls == 1);
      CHECK(c.counts().buffer_all_gathers == 1);
      CHECK(c.counts().exchanged_words == block * mm + block);
      CHECK(c.counts().wire_bytes == 2 * (block * (mm - 1)) + 2 * block * (mm - 1));
    });
  }
  dppf::single_communicator one;
  std::vector<std::uint16_t> in{1, 2, 3}, out(3);
  one.all_to_all(in, out);
  CHECK(out == in);
  std::vector<std::uint16_t> out2(3);
  one.start_all_gather(in, out2).wait();
  CHECK(out2 == in);
  volatile std::size_t two = 2;  // opaque to the optimizer, which would warn about the copy the check prevents
  std::vector<std::uint16_t> wrong(two);
  check_throws_with<dppf::invalid_argument_error>([&] { one.all_gather(in, wrong); }, "expected 3");
  static_assert(dppf::exchange_communicator<dppf::thread_communicator>);
  static_assert(dppf::exchange_communicator<dppf::single_communicator>);
  static_assert(dppf::exchange_communicator<dppf::counting_communicator<dppf::thread_communicator>>);
  static_assert(dppf::async_exchange_communicator<dppf::thread_communicator>);
  static_assert(dppf::async_exchange_communicator<dppf::single_communicator>);
  static_assert(dppf::async_exchange_communicator<dppf::counting_communicator<dppf::thread_communicator>>);
}

TEST_CASE("compressed sync: bad exchange arguments raise on every rank, no hang") {
  dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
  std::vector<int> raised(3, 0);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    // Rank 1 passes 7 words (not a multiple of 3): it raises invalid_argument, the others learn of it.
    std::vector<std::uint16_t> in(r == 1 ? 7 : 6), out(in.size());
    try {
      comm.all_to_all(in, out);
    } catch (const dppf::invalid_argument_error& e) {
      raised[r] = 1;
      CHECK(std::string(e.what()).find("not a multiple of the group size 3") != std::string::npos);
    } catch (const dppf::communication_error& e) {
      raised[r] = 2;
      CHECK(std::string(e.what()).find("rank 1 rejected its arguments") != std::string::npos);
    }
    // Sizes that differ across ranks (each valid alone): every rank names the mismatch.
    std::vector<std::uint16_t> mine(r == 2 ? 4 : 3), all(mine.size() * 3);
    check_throws_with<dppf::invalid_argument_error>([&] { comm.all_gather(mine, all); }, "buffer sizes differ across ranks");
    // Started: the same complaint, raised by wait() on every rank.
    std::vector<std::uint16_t> bad_in(r == 0 ? 5 : 6), bad_out(bad_in.size());
    auto h = comm.start_all_to_all(bad_in, bad_out);
    std::string what;
    try {
      h.wait();
    } catch (const dppf::invalid_argument_error& e) {
      what = std::string("invalid: ") + e.what();
    } catch (const dppf::communication_error& e) {
      what = std::string("communication: ") + e.what();
    }
    CAPTURE(what);
    CHECK(what.find(r == 0 ? "invalid: " : "communication: ") == 0);
    CHECK(what.find(r == 0 ? "not a multiple of the group size 3" : "rank 0 rejected its arguments") != std::string::npos);
    // The group still works afterwards.
    std::vector<std::uint16_t> ok_in(3, static_cast<std::uint16_t>(r)), ok_out(3);
    comm.all_to_all(ok_in, ok_out);
    CHECK(ok_out == std::vector<std::uint16_t>{0, 1, 2});
    comm.start_all_to_all(ok_in, ok_out).wait();
    CHECK(ok_out == std::vector<std::uint16_t>{0, 1, 2});
  });
  CHECK(raised == std::vector<int>{2, 1, 2});
}

namespace {

// The named convex problem, a random quadratic with its own minimiser per worker: worker i
// minimizes f_i(x) = sum_k (1/2 h_k x_k^2 + g_ik x_k), curvatures h_k log-spaced in [1e-4, 1]
// (flat directions, where a bias of the mean accumulates), g_ik ~ N(0, 1) with zero mean over the
// workers (minimiser -g_i / h for worker i, 0 for their mean). LocalSGD (tau = 4, lr = 0.5) from
// x = 0: near its fixed point each worker still sends about -lr tau g_i per sync. Returns rank
// 0's parameters after every sync (after LocalSGD's sync every worker holds the mean).
struct quadratic_run {
  std::vector<std::vector<float>> means;  // after every sync
  std::vector<dppf::trainer_stats> stats;
  std::vector<dppf::communication_counts> counts;
};

// g_ik: N(0, 1) less their mean over the workers.
std::vector<std::vector<double>> linear_terms(int m, std::size_t n, std::uint64_t seed) {
  std::vector<std::vector<double>> b(static_cast<std::size_t>(m));
  for (int i = 0; i < m; ++i) b[static_cast<std::size_t>(i)] = dppf_test::random_vector<double>(n, seed + static_cast<std::uint64_t>(i));
  for (std::size_t k = 0; k < n; ++k) {
    double mean = 0.0;
    for (int i = 0; i < m; ++i) mean += b[static_cast<std::size_t>(i)][k] / m;
    for (int i = 0; i < m; ++i) b[static_cast<std::size_t>(i)][k] -= mean;
  }
  return b;
}

quadratic_run run_quadratic(int m, std::size_t n, int syncs, dppf::trainer_options options, std::uint64_t seed) {
  std::vector<double> h(n);
  for (std::size_t k = 0; k < n; ++k) h[k] = std::pow(10.0, -4.0 * static_cast<double>(k) / static_cast<double>(n - 1));
  const std::vector<std::vector<double>> b = linear_terms(m, n, seed);
  quadratic_run out;
  out.means.resize(static_cast<std::size_t>(syncs));
  out.stats.resize(static_cast<std::size_t>(m));
  out.counts.resize(static_cast<std::size_t>(m));
  options.tau = 4;
  dppf::thread_group group(m, {.timeout = std::chrono::seconds(120)});
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> x(n, 0.0f), g(n);
    dppf::trainer tr{dppf::sgd{{.lr = 0.5}}, dppf::local_sgd{}, comm, dppf::host_executor{}, options};
    for (int s = 0; s < syncs; ++s) {
      for (int t = 0; t < 4; ++t) {
        for (std::size_t k = 0; k < n; ++k) g[k] = static_cast<float>(h[k] * static_cast<double>(x[k]) + b[r][k]);
        tr.step(x, g);
      }
      if (r == 0) out.means[static_cast<std::size_t>(s)] = x;
    }
    out.stats[r] = tr.stats();
    out.counts[r] = tr.comm().counts();
  });
  return out;
}

double max_deviation(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) d = std::max(d, std::fabs(static_cast<double>(a[k]) - b[k]));
  return d;
}

}  // namespace

TEST_CASE("compressed sync: on a quadratic, 1000 syncs stay within a fixed bound of the full run; without error feedback they do not") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  constexpr int m = 4, syncs = 1000;
  constexpr std::size_t n = 64;
  const auto full = run_quadratic(m, n, syncs, {}, seed);
  const auto ef = run_quadratic(m, n, syncs, {.sync_precision = dppf::sync_precision::bf16}, seed);
  const auto no_ef = run_quadratic(m, n, syncs, {.sync_precision = dppf::sync_precision::bf16, .sync_error_feedback = false}, seed);
  // The differences a worker sends: near the fixed point x = 0, its local progress in one sync,
  // lr tau g_i, at its largest.
  double step = 0.0;
  for (const auto& g : linear_terms(m, n, seed))
    for (double v : g) step = std::max(step, 0.5 * 4 * std::fabs(v));
  double first_half = 0.0, second_half = 0.0, control = 0.0;
  for (int s = 0; s < syncs; ++s) {
    const double d = max_deviation(ef.means[static_cast<std::size_t>(s)], full.means[static_cast<std::size_t>(s)]);
    (s < syncs / 2 ? first_half : second_half) = std::max(s < syncs / 2 ? first_half : second_half, d);
    control = std::max(control, max_deviation(no_ef.means[static_cast<std::size_t>(s)], full.means[static_cast<std::size_t>(s)]));
  }
  MESSAGE("largest difference sent " << step << ", deviation with error feedback " << first_half << " / " << second_half
                                   << " (syncs 1-500 / 501-1000), without " << control);
  const double bound = 4.0 * 0x1p-8 * step;  // a few bf16 roundings of the largest difference sent
  CHECK(first_half <= bound);
  CHECK(second_half <= bound);
  CHECK(control > bound);
  // The control is past the bound late in the run too, not only in a transient.
  double control_late = 0.0;
  for (int s = syncs / 2; s < syncs; ++s)
    control_late = std::max(control_late, max_deviation(no_ef.means[static_cast<std::size_t>(s)], full.means[static_cast<std::size_t>(s)]));
  CHECK(control_late > bound);
}

TEST_CASE("compressed sync: wire bytes per rank are at most 0.55 of the fp32 ring's") {
  for (int m : {2, 3, 4}) {
    CAPTURE(m);
    constexpr std::size_t n = 10000;
    constexpr int syncs = 3;
    const auto full = run_quadratic(m, n, syncs, {}, 11);
    const auto bf16 = run_quadratic(m, n, syncs, {.sync_precision = dppf::sync_precision::bf16}, 11);
    const double ring = 2.0 * (m - 1) / m * n * sizeof(float);  // the fp32 ring all-reduce per sync
    for (int r = 0; r < m; ++r) {
      const auto& c = bf16.counts[static_cast<std::size_t>(r)];
      CHECK(c.all_to_alls == syncs);
      // The workers start from the same parameters: the reference is set by the fingerprints'
      // all-gather (8 words a rank), no full-precision all-reduce; then only the exchanges and
      // the distance pass's scalar gathers.
      CHECK(c.buffer_all_gathers == syncs + 1);
      CHECK(c.buffer_all_reduces == 0);
      const double fingerprints = 2.0 * 8.0 * (m - 1);
      const double per_sync = (static_cast<double>(c.wire_bytes) - fingerprints) / syncs;
      CHECK(per_sync <= 0.55 * ring);
      const std::size_t chunk = (n + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
      const double exchange = 2.0 * 2.0 * static_cast<double>(m - 1) * static_cast<double>(chunk);
      CHECK(per_sync == doctest::Approx(exchange + 8.0 * (static_cast<double>(c.scalar_all_reduces + c.all_gathers) / syncs)));
      CHECK(static_cast<double>(full.counts[static_cast<std::size_t>(r)].wire_bytes) / syncs >= ring);
      CHECK(bf16.stats[static_cast<std::size_t>(r)].wire_bytes == c.wire_bytes);
    }
  }
}

TEST_CASE("compressed sync: sync_precision = full is today's trainer, bit for bit") {
  for (auto rule : {0, 1}) {
    const std::uint64_t seed = dppf_test::compression_seed();
    INFO("seed = " << seed);
    std::vector<std::vector<float>> a(3), b(3);
    for (int variant = 0; variant < 2; ++variant) {
      dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
      group.run([&](dppf::thread_communicator comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        std::vector<float> x = dppf_test::random_vector<float>(33, seed + r), g(33);
        dppf::trainer_options o{.tau = 3};
        if (variant == 1) o.sync_precision = dppf::sync_precision::full;
        auto body = [&](auto consensus) {
          dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, consensus, comm, dppf::host_executor{}, o};
          for (int t = 0; t < 12; ++t) {
            for (std::size_t k = 0; k < 33; ++k) g[k] = x[k] - static_cast<float>(r);
            tr.step(x, g);
          }
          CHECK(tr.comm().counts().all_to_alls == 0);
          CHECK(tr.comm().counts().buffer_all_reduces == 4);
        };
        if (rule == 0)
          body(dppf::local_sgd{});
        else
          body(dppf::pull_push{{.alpha = 0.3, .lambda = 0.05}});
        (variant == 0 ? a : b)[r] = x;
      });
    }
    CHECK(a == b);
  }
}

TEST_CASE("compressed sync: DPPF with bf16 stays close to its full-precision run") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  std::vector<std::vector<float>> runs[2];
  for (int variant = 0; variant < 2; ++variant) {
    runs[variant].resize(4);
    dppf::thread_group group(4, {.timeout = std::chrono::seconds(60)});
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<float> x(50, 1.0f), g(50);
      const auto target = dppf_test::random_vector<float>(50, seed + r);
      dppf::trainer_options o{.tau = 4};
      if (variant == 1) o.sync_precision = dppf::sync_precision::fp16;
      dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{{.alpha = 0.3, .lambda = 0.01}}, comm, dppf::host_executor{}, o};
      for (int t = 0; t < 400; ++t) {
        for (std::size_t k = 0; k < 50; ++k) g[k] = x[k] - target[k];
        tr.step(x, g);
      }
      runs[variant][r] = x;
      if (variant == 1) CHECK(tr.comm().counts().all_to_alls == 100);
    });
  }
  double worst = 0.0;
  for (std::size_t r = 0; r < 4; ++r) worst = std::max(worst, max_deviation(runs[0][r], runs[1][r]));
  CHECK(worst < 1e-2);
  CHECK(worst > 0.0);  // it did compress
}

TEST_CASE("compressed sync: bad options and rules that cannot compress are refused by name") {
  dppf::single_communicator one;
  check_throws_with<dppf::invalid_argument_error>(
      [&] {
        dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, one, dppf::host_executor{},
                         {.sync_precision = static_cast<dppf::sync_precision>(7)}};
      },
      "sync_precision");
  check_throws_with<dppf::invalid_argument_error>(
      [&] {
        dppf::trainer tr{dppf::sgd{}, dppf::grawa{}, one, dppf::host_executor{}, {.sync_precision = dppf::sync_precision::bf16}};
      },
      "leader and grawa cannot");
  check_throws_with<dppf::invalid_argument_error>(
      [&] {
        dppf::trainer tr{dppf::sgd{}, dppf::data_parallel{}, one, dppf::host_executor{}, {.sync_precision = dppf::sync_precision::fp16}};
      },
      "averages gradients");
  // A communicator with blocking exchanges only: compressed, yes; compressed and overlapped, no.
  struct no_started_exchanges : dppf::single_communicator {
    void start_all_to_all(std::span<const std::uint16_t>, std::span<std::uint16_t>) = delete;
    void start_all_gather(std::span<const std::uint16_t>, std::span<std::uint16_t>) = delete;
  };
  static_assert(dppf::exchange_communicator<no_started_exchanges> && dppf::async_communicator<no_started_exchanges>);
  static_assert(!dppf::async_exchange_communicator<no_started_exchanges>);
  dppf::trainer blocking{dppf::sgd{}, dppf::local_sgd{}, no_started_exchanges{}, dppf::host_executor{},
                         {.tau = 4, .sync_precision = dppf::sync_precision::bf16}};
  CHECK(blocking.options().sync_precision == dppf::sync_precision::bf16);
  check_throws_with<dppf::invalid_argument_error>(
      [&] {
        dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, no_started_exchanges{}, dppf::host_executor{},
                         {.tau = 4, .overlap_steps = 2, .sync_precision = dppf::sync_precision::bf16}};
      },
      "needs a communicator that can start its exchanges");
  std::vector<float> x(4, 1.0f);
  check_throws_with<dppf::invalid_argument_error>(
      [&] { dppf::compressed_mean<float> cm(one, std::span<const float>(x), {.precision = dppf::sync_precision::full}); },
      "not a compressed format");
}

// ----- checkpoints -------------------------------------------------------------------------------

namespace {

// Three workers on f_r(x) = |x - r|^2 / 2 with a step-dependent drift, so that every sync sends
// something new; steps [from, to) of a run with sync_precision p. `load`: the files to restore
// first (after `own_steps` steps of a different run of its own, so the load meets a live
// workspace when own_steps > 0); `save_at`: the step after which to save into `files`.
struct compressed_run {
  dppf::sync_precision precision = dppf::sync_precision::bf16;
  std::vector<dppf::safetensors>* load = nullptr;
  int own_steps = 0;
  int save_at = -1;
  std::vector<dppf::safetensors>* save = nullptr;
  std::vector<std::string>* errors = nullptr;
};

std::vector<std::vector<float>> run_compressed(const compressed_run& c, std::uint64_t seed, int to) {
  constexpr std::size_t n = 41;
  std::vector<std::vector<float>> out(3);
  dppf::thread_group group(3, {.timeout = std::chrono::seconds(60)});
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> x = dppf_test::random_vector<float>(n, seed + r), g(n);
    dppf::trainer tr{dppf::sgd{{.lr = 0.1, .momentum = 0.5}}, dppf::pull_push{{.alpha = 0.3, .lambda = 0.02}}, comm,
                     dppf::host_executor{}, {.tau = 3, .sync_precision = c.precision}};
    const auto grad = [&](int t) {
      for (std::size_t k = 0; k < n; ++k) g[k] = x[k] - static_cast<float>(r) + 0.01f * static_cast<float>(t % 7);
    };
    int t = 0;
    if (c.load) {
      for (int k = 0; k < c.own_steps; ++k) {
        grad(k + 100);
        tr.step(x, g);
      }
      try {
        dppf::load_trainer((*c.load)[r], tr, x);
      } catch (const dppf::checkpoint_error& e) {
        (*c.errors)[r] = e.what();
        return;
      }
      t = static_cast<int>(tr.steps());
    }
    for (; t < to; ++t) {
      grad(t);
      tr.step(x, g);
      if (t + 1 == c.save_at) (*c.save)[r] = dppf::save_trainer(tr, x);
    }
    out[r] = x;
  });
  return out;
}

}  // namespace

TEST_CASE("compressed sync: a checkpoint records its reference and residuals and resumes bit for bit") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  const auto straight = run_compressed({}, seed, 24);
  std::vector<dppf::safetensors> files(3);
  const auto saved = run_compressed({.save_at = 13, .save = &files}, seed, 24);  // mid-way between syncs
  CHECK(saved == straight);  // saving changes nothing
  REQUIRE(files[0].contains("compressed.values"));
  CHECK(files[0].metadata("dppf.sync_precision") == "bf16");
  // Into a trainer without a workspace, and into one that took steps of its own.
  CHECK(run_compressed({.load = &files}, seed, 24) == straight);
  CHECK(run_compressed({.load = &files, .own_steps = 5}, seed, 24) == straight);
}

TEST_CASE("compressed sync: an uncompressed checkpoint starts compression afresh; mismatched precisions are refused") {
  const std::uint64_t seed = dppf_test::compression_seed();
  INFO("seed = " << seed);
  std::vector<dppf::safetensors> full(3), bf16(3);
  (void)run_compressed({.precision = dppf::sync_precision::full, .save_at = 12, .save = &full}, seed, 12);
  (void)run_compressed({.save_at = 12, .save = &bf16}, seed, 12);
  CHECK_FALSE(full[0].contains("compressed.values"));
  // A compressed trainer resumes a full-precision checkpoint from its parameters: built fresh or
  // rebuilt in a live workspace, the same bits.
  const auto fresh = run_compressed({.load = &full}, seed, 24);
  CHECK(run_compressed({.load = &full, .own_steps = 5}, seed, 24) == fresh);
  // Refused, on every rank, naming why.
  for (auto [precision, needle] : {std::pair{dppf::sync_precision::full, "saved with a compressed sync (bf16) and this trainer has "
                                                                          "sync_precision = full"},
                                   std::pair{dppf::sync_precision::fp16, "saved with sync_precision = bf16 and this trainer has fp16"}}) {
    std::vector<std::string> errors(3);
    (void)run_compressed({.precision = precision, .load = &bf16, .own_steps = 2, .errors = &errors}, seed, 24);
    for (const auto& e : errors) CHECK_MESSAGE(e.find(needle) != std::string::npos, e);
  }
}
