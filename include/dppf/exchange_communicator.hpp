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

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

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

}  // namespace detail

}  // namespace dppf
