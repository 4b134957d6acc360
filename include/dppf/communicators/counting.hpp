#pragma once
// counting<C>: a communicator decorator that records every collective and the bytes it moved,
// so tests and the trainer's report can show communication exactly as promised.

#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <utility>
#include <vector>

#include "../buffer.hpp"
#include "../async_communicator.hpp"
#include "../communicator.hpp"
#include "../exchange_communicator.hpp"

namespace dppf {

/// What a counting communicator saw. Bytes are payload bytes this rank contributed (the
/// "algorithm bytes" of nccl-tests: N * sizeof(T) for an all-reduce of N values). Wire bytes are
/// what this rank sends as the bandwidth-optimal algorithm moves them (the ring Gloo and NCCL run
/// for large buffers): an all-reduce of N values 2 (M - 1) / M N sizeof(T), an all-to-all of n
/// words (M - 1) / M n 2, an all-gather of n words per rank (M - 1) n 2, a broadcast N sizeof(T)
/// (a pipelined chain), a scalar collective its payload.
struct communication_counts {
  std::uint64_t buffer_all_reduces = 0;
  std::uint64_t scalar_all_reduces = 0;
  std::uint64_t all_gathers = 0;
  std::uint64_t broadcasts = 0;
  std::uint64_t barriers = 0;
  std::uint64_t async_buffer_all_reduces = 0;  // started with start_all_reduce (not in buffer_all_reduces)
  std::uint64_t all_to_alls = 0;         // of 16-bit words (exchange_communicator), blocking or started
  std::uint64_t buffer_all_gathers = 0;  // of 16-bit words (exchange_communicator), blocking or started
  std::uint64_t exchanged_words = 0;     // words this rank put into all-to-alls and all-gathers
  std::uint64_t buffer_values = 0;  // elements all-reduced or broadcast
  std::uint64_t bytes = 0;          // all payload bytes, scalars included
  std::uint64_t wire_bytes = 0;     // bytes this rank sends on the wire (see above)

  std::uint64_t collectives() const noexcept {
    return buffer_all_reduces + scalar_all_reduces + all_gathers + broadcasts + barriers + async_buffer_all_reduces + all_to_alls +
           buffer_all_gathers;
  }
};

template <communicator C>
class counting_communicator {
 public:
  using memory_space = typename C::memory_space;

  explicit counting_communicator(C inner) : inner_(std::move(inner)) {}

  int rank() const { return inner_.rank(); }
  int size() const { return inner_.size(); }
  std::int64_t membership() const
    requires changing_membership<C>
  {
    return inner_.membership();
  }

  template <class In, class Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    inner_.all_reduce(in, std::forward<Out>(out), op);
    record_buffer(in);
  }
  template <parameter_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    inner_.all_reduce(inout, op);
    record_buffer(inout);
  }
  double all_reduce(double v, reduce_op op) {
    const double r = inner_.all_reduce(v, op);
    ++counts_.scalar_all_reduces;
    counts_.bytes += sizeof(double);
    counts_.wire_bytes += sizeof(double);
    return r;
  }
  std::vector<double> all_gather(double v) {
    auto r = inner_.all_gather(v);
    ++counts_.all_gathers;
    counts_.bytes += sizeof(double);
    counts_.wire_bytes += sizeof(double);
    return r;
  }
  template <parameter_buffer B>
  void broadcast(B&& b, int root) {
    inner_.broadcast(b, root);
    ++counts_.broadcasts;
    counts_.buffer_values += std::ranges::size(b);
    counts_.bytes += std::ranges::size(b) * sizeof(std::ranges::range_value_t<B>);
    counts_.wire_bytes += std::ranges::size(b) * sizeof(std::ranges::range_value_t<B>);
  }
  void barrier() {
    inner_.barrier();
    ++counts_.barriers;
  }

  /// Asynchronous all-reduces, when C has them; counted (with their bytes) when started.
  template <class In, class Out>
    requires async_communicator<C>
  auto start_all_reduce(const In& in, Out&& out, reduce_op op) {
    auto h = inner_.start_all_reduce(in, std::forward<Out>(out), op);
    record_async(in);
    return h;
  }
  template <parameter_buffer B>
    requires async_communicator<C>
  auto start_all_reduce(B&& inout, reduce_op op) {
    auto h = inner_.start_all_reduce(inout, op);
    record_async(inout);
    return h;
  }

  /// The exchange collectives, when C has them; counted (with their wire bytes) once they returned.
  template <class X = C>
    requires exchange_communicator<X>
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    inner_.all_to_all(in, out);
    ++counts_.all_to_alls;
    record_words(in.size(), in.size() - in.size() / static_cast<std::size_t>(size()));
  }
  template <class X = C>
    requires exchange_communicator<X>
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    inner_.all_gather(in, out);
    ++counts_.buffer_all_gathers;
    record_words(in.size(), in.size() * static_cast<std::size_t>(size() - 1));
  }

  /// Started exchanges, when C has them; counted like the blocking ones, when started.
  template <class X = C>
    requires async_exchange_communicator<X>
  auto start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    auto h = inner_.start_all_to_all(in, out);
    ++counts_.all_to_alls;
    record_words(in.size(), in.size() - in.size() / static_cast<std::size_t>(size()));
    return h;
  }
  template <class X = C>
    requires async_exchange_communicator<X>
  auto start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    auto h = inner_.start_all_gather(in, out);
    ++counts_.buffer_all_gathers;
    record_words(in.size(), in.size() * static_cast<std::size_t>(size() - 1));
    return h;
  }

  const communication_counts& counts() const noexcept { return counts_; }
  void reset() noexcept { counts_ = {}; }
  C& inner() noexcept { return inner_; }
  const C& inner() const noexcept { return inner_; }

 private:
  template <class B>
  void record_buffer(const B& b) {
    ++counts_.buffer_all_reduces;
    record_values(b);
  }
  template <class B>
  void record_async(const B& b) {
    ++counts_.async_buffer_all_reduces;
    record_values(b);
  }
  template <class B>
  void record_values(const B& b) {
    const std::uint64_t n = std::ranges::size(b), m = static_cast<std::uint64_t>(size());
    counts_.buffer_values += n;
    counts_.bytes += n * sizeof(std::ranges::range_value_t<B>);
    counts_.wire_bytes += 2 * (m - 1) * n * sizeof(std::ranges::range_value_t<B>) / m;
  }
  void record_words(std::size_t words, std::size_t sent) {
    counts_.exchanged_words += words;
    counts_.bytes += words * sizeof(std::uint16_t);
    counts_.wire_bytes += sent * sizeof(std::uint16_t);
  }

  C inner_;
  communication_counts counts_;
};

/// The 0.1 spelling.
template <class C>
using counting [[deprecated("dppf 0.2 renamed it dppf::counting_communicator; see CHANGELOG.md")]] = counting_communicator<C>;

}  // namespace dppf
