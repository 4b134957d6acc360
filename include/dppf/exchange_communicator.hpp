#pragma once
// The exchange communicator concept: a communicator that also moves buffers of raw 16-bit words
// (std::uint16_t, host memory) with an all-to-all and an all-gather, the two collectives a
// compressed sync is built from (compression/compressed_mean.hpp). A refinement: every
// `communicator` written against 0.2 stays valid as it is.
//
// With M ranks, every rank passes buffers of the same sizes (the ranks agree on it, as for every
// buffer collective: a mismatch or a bad argument raises invalid_argument_error on every rank):
// * all_to_all(in, out): in and out hold M blocks of c words; block j of rank i's out is block i
//   of rank j's in. in.size() == out.size() must be a multiple of M.
// * all_gather(in, out): out holds M blocks of in.size() words; block j is rank j's in.
// in and out must not overlap.
//
// The asynchronous exchange communicator refines both: start_all_to_all(in, out) and
// start_all_gather(in, out) start the same exchanges and return a handle with the contract of
// async_communicator.hpp (in and out belong to the collective until wait() returned or threw;
// errors surface at test() / wait()). An overlapped compressed sync runs on them.

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "async_communicator.hpp"
#include "communicator.hpp"

namespace dppf {

template <class C>
concept exchange_communicator =
    communicator<C> && requires(C& c, std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
      c.all_to_all(in, out);
      c.all_gather(in, out);
    };

template <class C>
concept async_exchange_communicator =
    exchange_communicator<C> && async_communicator<C> &&
    requires(C& c, std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
      { c.start_all_to_all(in, out) } -> collective_handle;
      { c.start_all_gather(in, out) } -> collective_handle;
    };

namespace detail {

/// This rank's own problem with an all_to_all's or a buffer all_gather's sizes ("" if none), found
/// before the argument agreement so that the other ranks learn of it there.
inline std::string exchange_problem(const char* who, bool all_to_all, std::size_t n_in, std::size_t n_out, int size,
                                    const void* in, const void* out) {
  const auto m = static_cast<std::size_t>(size);
  if (all_to_all && n_in != n_out)
    return std::string(who) + ": the output has " + std::to_string(n_out) + " words, expected " + std::to_string(n_in) +
           " (the input's size)";
  if (all_to_all && n_in % m != 0)
    return std::string(who) + ": " + std::to_string(n_in) + " words is not a multiple of the group size " + std::to_string(size);
  if (!all_to_all && n_out != n_in * m)
    return std::string(who) + ": the output has " + std::to_string(n_out) + " words, expected " + std::to_string(n_in * m) +
           " (group size " + std::to_string(size) + " x the input's " + std::to_string(n_in) + ")";
  const auto a = reinterpret_cast<std::uintptr_t>(in), b = reinterpret_cast<std::uintptr_t>(out);
  if (n_in != 0 && n_out != 0 && a < b + 2 * n_out && b < a + 2 * n_in) return std::string(who) + ": the input and output buffers overlap";
  return {};
}

/// A 128-bit fingerprint of a buffer's bytes, as 8 words: two independent 64-bit multiply-rotate
/// lanes over its 8-byte words (the tail zero-padded), with the length mixed in. Not
/// cryptographic: it tells buffers apart that differ by chance, not by design.
template <class T>
std::array<std::uint16_t, 8> fingerprint(std::span<const T> x) noexcept {
  const auto* bytes = reinterpret_cast<const unsigned char*>(x.data());
  const std::size_t size = x.size_bytes();
  std::uint64_t a = 0x243f6a8885a308d3ull ^ size, b = 0x13198a2e03707344ull + size;
  const auto mix = [&](std::uint64_t w) {
    a = std::rotl((a ^ w) * 0x9e3779b97f4a7c15ull, 31);
    b = std::rotl((b + w) * 0xc2b2ae3d27d4eb4full, 27) ^ (b >> 33);
  };
  std::size_t at = 0;
  for (; at + 8 <= size; at += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes + at, 8);
    mix(w);
  }
  if (at < size) {
    std::uint64_t w = 0;
    std::memcpy(&w, bytes + at, size - at);
    mix(w);
  }
  // A final avalanche (splitmix64's), so that every input bit reaches every output bit.
  const auto finalize = [](std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  a = finalize(a ^ std::rotl(b, 17));
  b = finalize(b ^ a);
  std::array<std::uint16_t, 8> out;
  for (int k = 0; k < 4; ++k) {
    out[static_cast<std::size_t>(k)] = static_cast<std::uint16_t>(a >> (16 * k));
    out[static_cast<std::size_t>(k) + 4] = static_cast<std::uint16_t>(b >> (16 * k));
  }
  return out;
}

}  // namespace detail

/// Whether every rank holds the same bytes in x (x.size() agreed by the caller). Collective: one
/// all-gather of a 16-byte fingerprint per rank (detail::fingerprint), the same answer on every
/// rank. Buffers that differ are told apart unless their fingerprints collide (about 2^-128 for
/// buffers that differ by chance).
template <exchange_communicator C, class T>
bool same_on_every_rank(C& comm, std::span<const T> x) {
  const std::array<std::uint16_t, 8> mine = detail::fingerprint(x);
  std::vector<std::uint16_t> all(mine.size() * static_cast<std::size_t>(comm.size()));
  comm.all_gather(std::span<const std::uint16_t>(mine), std::span<std::uint16_t>(all));
  for (std::size_t k = 0; k < all.size(); ++k)
    if (all[k] != all[k % mine.size()]) return false;
  return true;
}

}  // namespace dppf
