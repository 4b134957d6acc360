// Philox4x32-10 against Random123's published known-answer vectors (kat_vectors, philox4x32 10),
// and the (seed, stream, index) fills: identical on host and host_parallel at any thread count.
#include <doctest/doctest.h>

#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/random/directions.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "support.hpp"

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors") {
  struct kat {
    dppf::philox_block counter;
    dppf::philox_key key;
    dppf::philox_block expected;
  };
  const kat vectors[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const auto& v : vectors) {
    const auto got = dppf::philox4x32_10(v.counter, v.key);
    for (int w = 0; w < 4; ++w) CHECK(got.v[w] == v.expected.v[w]);
  }
  // Usable in constant expressions (no hidden state).
  static_assert(dppf::philox4x32_10({{0, 0, 0, 0}}, {{0, 0}}).v[0] == 0x6627e8d5u);
}

TEST_CASE("random_bits keys Philox by seed and counts by (index, stream)") {
  const dppf::random_key key{0x0123456789abcdefull, 0xfedcba9876543210ull};
  const std::uint64_t index = 0x1122334455667788ull;
  const auto expected = dppf::philox4x32_10({{0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}},
                                            {{0x89abcdefu, 0x01234567u}});
  CHECK(dppf::random_bits(key, index) == expected);
}

TEST_CASE("uniform_at, normal_at and rademacher_at follow from the Philox bits") {
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const dppf::random_key key{7, 3};
    const auto b = dppf::random_bits(key, i);
    const auto m1 = ((std::uint64_t{b.v[0]} << 32) | b.v[1]) >> 11;
    const auto m2 = ((std::uint64_t{b.v[2]} << 32) | b.v[3]) >> 11;
    const double u1 = (static_cast<double>(m1) + 0.5) / 9007199254740992.0;
    const double u2 = (static_cast<double>(m2) + 0.5) / 9007199254740992.0;
    CHECK(dppf::uniform_at(key, i) == u1);
    CHECK(u1 > 0.0);
    CHECK(u1 < 1.0);
    CHECK(dppf::normal_at(key, i) == std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
    CHECK(dppf::rademacher_at(key, i) == ((b.v[0] & 1u) ? 1.0 : -1.0));
  }
}

TEST_CASE("random fills have the moments of their distributions") {
  // 2^18 draws: the standard error of a mean is 1/512 of the standard deviation; 6 of them bound it.
  const std::size_t n = std::size_t{1} << 18;
  dppf::host_executor ex;
  std::vector<double> x(n);
  const double tol = 6.0 / std::sqrt(static_cast<double>(n));
  dppf::fill_normal(ex, x, {42, 0});
  double m = 0, m2 = 0;
  for (double v : x) m += v, m2 += v * v;
  CHECK(std::abs(m / n) < tol);
  CHECK(std::abs(m2 / n - 1.0) < tol * std::sqrt(2.0));
  dppf::fill_uniform(ex, x, {42, 1}, -1.0, 3.0);
  m = 0;
  for (double v : x) {
    m += v;
    CHECK_MESSAGE((v > -1.0 && v < 3.0), v);
  }
  CHECK(std::abs(m / n - 1.0) < tol * 4.0 / std::sqrt(12.0));
  dppf::fill_rademacher(ex, x, {42, 2});
  m = 0;
  for (double v : x) {
    m += v;
    CHECK_MESSAGE((v == 1.0 || v == -1.0), v);
  }
  CHECK(std::abs(m / n) < tol);
  // Different streams and seeds are different sequences.
  std::vector<double> a(64), b(64), c(64);
  dppf::fill_normal(ex, a, {42, 0});
  dppf::fill_normal(ex, b, {42, 1});
  dppf::fill_normal(ex, c, {43, 0});
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 64; ++i) same_ab += a[i] == b[i], same_ac += a[i] == c[i];
  CHECK(same_ab == 0);
  CHECK(same_ac == 0);
}

TEST_CASE("random fills are identical on host and host_parallel for every thread count") {
  // Above host_parallel's serial threshold, so the parallel blocks really split the range.
  const std::size_t n = 100003;
  const dppf::random_key key{2024, 5};
  std::vector<double> ud(n), nd(n), rd(n);
  std::vector<float> uf(n), nf(n), rf(n);
  dppf::host_executor seq;
  dppf::fill_uniform(seq, ud, key, -2.0, 2.0);
  dppf::fill_normal(seq, nd, key, 1.0, 0.5);
  dppf::fill_rademacher(seq, rd, key);
  dppf::fill_uniform(seq, uf, key);
  dppf::fill_normal(seq, nf, key);
  dppf::fill_rademacher(seq, rf, key);
  // The sequential fill is element i = f(key, i), checked directly.
  for (std::size_t i = 0; i < n; i += 97) {
    CHECK(ud[i] == -2.0 + 4.0 * dppf::uniform_at(key, i));
    CHECK(nd[i] == 1.0 + 0.5 * dppf::normal_at(key, i));
    CHECK(nf[i] == static_cast<float>(dppf::normal_at(key, i)));
  }
  for (int threads : {1, 2, 3, 4, 7}) {
    CAPTURE(threads);
    dppf::host_parallel_executor par{threads};
    std::vector<double> ud2(n), nd2(n), rd2(n);
    std::vector<float> uf2(n), nf2(n), rf2(n);
    dppf::fill_uniform(par, ud2, key, -2.0, 2.0);
    dppf::fill_normal(par, nd2, key, 1.0, 0.5);
    dppf::fill_rademacher(par, rd2, key);
    dppf::fill_uniform(par, uf2, key);
    dppf::fill_normal(par, nf2, key);
    dppf::fill_rademacher(par, rf2, key);
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < n; ++i)
      mismatches += std::bit_cast<std::uint64_t>(ud[i]) != std::bit_cast<std::uint64_t>(ud2[i]) ||
                    std::bit_cast<std::uint64_t>(nd[i]) != std::bit_cast<std::uint64_t>(nd2[i]) ||
                    std::bit_cast<std::uint64_t>(rd[i]) != std::bit_cast<std::uint64_t>(rd2[i]) ||
                    std::bit_cast<std::uint32_t>(uf[i]) != std::bit_cast<std::uint32_t>(uf2[i]) ||
                    std::bit_cast<std::uint32_t>(nf[i]) != std::bit_cast<std::uint32_t>(nf2[i]) ||
                    std::bit_cast<std::uint32_t>(rf[i]) != std::bit_cast<std::uint32_t>(rf2[i]);
    CHECK(mismatches == 0);
  }
}
