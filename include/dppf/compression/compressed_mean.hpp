#pragma once
// dppf::compressed_mean: the mean of every worker's parameters, sent as 16-bit differences from a
// reference every rank holds bit for bit, with error feedback, over an exchange_communicator.
//
// With M ranks, N parameters, chunk c = ceil(N / M) (rank j owns elements [j c, (j + 1) c)):
//   1. d_i = (x_i - r) + e_i, q_i = Q(d_i), e_i <- d_i - deq(q_i)          (every rank, in T)
//   2. all_to_all: rank j receives chunk j of every q_i
//   3. m = T(sum_i deq(q_i) / M) + g_j (sum in double), w = Q(m), g_j <- m - deq(w)  (owner j)
//   4. all_gather of the owners' w: every rank holds every chunk
//   5. x_bar = r + deq(w), then r <- x_bar                              (every rank, same bits)
// r starts as the exact mean of the parameters: x itself when every rank holds the same
// parameters (a run's start: one seed, or a broadcast), found with a 16-byte fingerprint per
// rank (same_on_every_rank), else one full-precision all-reduce (a sync's worth of traffic).
// e_i and g_j are the residuals: what a sync failed to send is sent by the next one, so the
// quantization error does not accumulate over syncs. Q rounds to nearest even with saturation
// (half_formats.hpp).
//
// Wire bytes per rank: (M - 1) c 2 for the all-to-all + (M - 1) c 2 for the all-gather, about
// 4 N (M - 1) / M: half of the fp32 ring all-reduce's 8 N (M - 1) / M.
// Memory: r and e (N elements of T each), g and its scratch copy (c elements of T each), 2 M c + c
// words of scratch.
// A mean that is not finite (a worker sent an infinity or a NaN) is written to the output but
// not kept as the reference; every residual is cleared (on every rank alike: they all hold the
// same mean), so the next sync starts again from the last finite reference.
// Host memory only (the exchange collectives are host collectives); the elementwise math is the
// functors of quantize.hpp, written for host and device.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
#include "../exchange_communicator.hpp"
#include "half_formats.hpp"
#include "precision.hpp"
#include "quantize.hpp"

namespace dppf {

struct compressed_mean_options {
  sync_precision precision = sync_precision::bf16;  ///< bf16 or fp16 (full is the plain all-reduce)
  /// Carry each sync's quantization residuals into the next. Off only to measure what it buys:
  /// the mean then drifts by the rounding of every sync.
  bool error_feedback = true;
};

template <parameter_value T>
class compressed_mean {
 public:
  /// The state for `params` (N elements) on comm's group; r = the exact mean of the parameters.
  /// Collective: one all-gather of fingerprints, then an all-reduce unless every rank holds the
  /// same parameters (their mean is then each rank's own, exactly).
  template <exchange_communicator C>
  compressed_mean(C& comm, std::span<const T> params, compressed_mean_options options) : options_(options) {
    if (options.precision != sync_precision::bf16 && options.precision != sync_precision::fp16)
      detail::throw_invalid(std::string("compressed_mean: precision ") + to_string(options.precision) +
                            " is not a compressed format (bf16 or fp16)");
    lay_out(params.size(), comm.size());
    if (same_on_every_rank(comm, params))
      std::copy(params.begin(), params.end(), reference_span().begin());
    else
      comm.all_reduce(params, reference_span(), reduce_op::avg);
    membership_ = membership_of(comm);
  }

  /// Starts the state again over comm's current members from `mean`, their exact mean, which
  /// every rank holds bit for bit: r = mean, every residual zero, the chunks of comm.size() ranks.
  /// No communication. A mean that is not finite is no reference: the state stays invalid.
  template <communicator C>
  void restart(const C& comm, std::span<const T> mean) {
    lay_out(mean.size(), comm.size());
    std::copy(mean.begin(), mean.end(), reference_span().begin());
    if (std::all_of(mean.begin(), mean.end(), [](T v) { return std::isfinite(v); }))
      membership_ = membership_of(comm);
    else
      membership_.reset();
  }

  /// Whether this state was built over comm's current members (always, unless its members can
  /// change: changing_membership) and not invalidated since. The chunks and the reference belong
  /// to one set of members: over another, build the state again.
  template <communicator C>
  bool built_for(const C& comm) const noexcept {
    return membership_ == membership_of(comm);
  }
  /// Marks the state as built for no members (built_for() is false from now on): a newcomer's
  /// reference was not the members'.
  void invalidate() noexcept { membership_.reset(); }

  /// mean <- x_bar (see the file comment) and r <- x_bar when it is finite. Collective; returns
  /// whether the mean is finite (the same answer on every rank).
  template <exchange_communicator C>
  bool operator()(C& comm, std::span<const T> x, std::span<T> mean) {
    check(comm, x, mean);
    quantize_sent(x);
    comm.all_to_all(sent(), received());
    reduce_owned(comm.rank());
    comm.all_gather(owned(), gathered());
    return commit(comm.rank(), x, mean);
  }

  /// The same mean in three calls, so that the exchanges run while the caller computes (an
  /// overlapped sync): start() quantizes x and starts the all-to-all; gather() waits for it,
  /// reduces this rank's chunk and starts the all-gather; finish() waits for that (after
  /// gather() if it was not called) and writes the mean as operator() does, the same bits.
  /// Every rank makes the same calls in the same order. Between start() and finish() x must not
  /// change and this object must be left alone; the state changes only when finish() returns,
  /// so a sync that raises (at any of the three, or at in_flight::test()) leaves it as it was.
  template <async_exchange_communicator C>
  class in_flight {
    using exchange_handle = decltype(std::declval<C&>().start_all_to_all(std::span<const std::uint16_t>{}, std::span<std::uint16_t>{}));
    using gather_handle = decltype(std::declval<C&>().start_all_gather(std::span<const std::uint16_t>{}, std::span<std::uint16_t>{}));

   public:
    /// test() on the collective in progress (true once it is done); raises its error.
    bool test() { return gather_ ? gather_->test() : exchange_->test(); }
    bool gathering() const noexcept { return gather_.has_value(); }

   private:
    friend class compressed_mean;
    explicit in_flight(exchange_handle h) : exchange_(std::move(h)) {}
    std::optional<exchange_handle> exchange_;
    std::optional<gather_handle> gather_;
  };

  template <async_exchange_communicator C>
  in_flight<C> start(C& comm, std::span<const T> x) {
    check(comm, x, x);
    quantize_sent(x);
    return in_flight<C>(comm.start_all_to_all(sent(), received()));
  }

  template <async_exchange_communicator C>
  void gather(C& comm, in_flight<C>& f) {
    detail::require(!f.gather_, "compressed_mean::gather: the all-gather was already started");
    f.exchange_->wait();
    f.exchange_.reset();
    reduce_owned(comm.rank());
    f.gather_.emplace(comm.start_all_gather(owned(), gathered()));
  }

  template <async_exchange_communicator C>
  bool finish(C& comm, in_flight<C>& f, std::span<const T> x, std::span<T> mean) {
    check(comm, x, mean);
    if (!f.gather_) gather(comm, f);
    f.gather_->wait();
    f.gather_.reset();
    return commit(comm.rank(), x, mean);
  }

  const compressed_mean_options& options() const noexcept { return options_; }
  /// r: the last finite mean (every rank holds the same bits).
  std::span<const T> reference() const noexcept { return {values_.data(), n_}; }
  /// e_i: what this rank's last sync did not send.
  std::span<const T> residual() const noexcept { return {values_.data() + n_, n_}; }
  /// g: what this rank, as owner of its chunk of the mean, did not send.
  std::span<const T> owner_residual() const noexcept { return {values_.data() + 2 * n_, chunk_}; }
  /// What a checkpoint keeps, as one buffer "values": r, e and g (N + N + c elements, this
  /// rank's). Restoring it resumes the compressed syncs bit for bit.
  template <class F>
  void for_each_buffer(F&& f) {
    f("values", values_);
  }
  /// Bytes of state and scratch this object holds.
  std::size_t memory_bytes() const noexcept {
    return (values_.size() + owner_pending_.size()) * sizeof(T) + words_.size() * sizeof(std::uint16_t);
  }

 private:
  // N elements over m ranks: chunks, zeroed state and scratch.
  void lay_out(std::size_t n, int ranks) {
    n_ = n;
    const std::size_t m = static_cast<std::size_t>(ranks);
    chunk_ = (n_ + m - 1) / m;
    values_.assign(2 * n_ + chunk_, T(0));
    owner_pending_.assign(chunk_, T(0));
    words_.assign(2 * m * chunk_ + chunk_, 0);
  }
  std::span<T> reference_span() noexcept { return {values_.data(), n_}; }
  // The words: sent (M c), received (M c), owned (c); the all-gather lands in sent's place.
  std::span<std::uint16_t> sent() noexcept { return block(0); }
  std::span<std::uint16_t> received() noexcept { return block(1); }
  std::span<std::uint16_t> gathered() noexcept { return block(0); }
  std::span<std::uint16_t> owned() noexcept { return {words_.data() + words_.size() - chunk_, chunk_}; }
  std::span<std::uint16_t> block(std::size_t k) noexcept {
    const std::size_t mc = (words_.size() - chunk_) / 2;
    return {words_.data() + k * mc, mc};
  }

  template <class C>
  void check(C& comm, std::span<const T> x, std::span<const T> mean) const {
    detail::require_same_size(x.size(), n_, "compressed_mean: parameters");
    detail::require_same_size(mean.size(), n_, "compressed_mean: output");
    detail::require(static_cast<std::size_t>(comm.size()) * chunk_ * 2 + chunk_ == words_.size(),
                    "compressed_mean: the group size differs from the one the state was built for");
  }

  // The format's functor types, chosen at run time from the options.
  template <class F>
  decltype(auto) with_format(F&& f) const {
    return options_.precision == sync_precision::bf16 ? f(bf16_format{}) : f(fp16_format{});
  }

  // The residuals change only once both collectives have succeeded (commit): a sync that raises
  // (a timeout, a peer lost) leaves the state as it was, so the next sync sends what this one
  // failed to. The workers' quantization therefore runs on a copy of each residual and commit
  // recomputes the same words to update e (deterministic, so the same bits; a copy of e would
  // cost N more elements); the owner's g, c elements, is kept in a scratch copy until commit.
  void quantize_sent(std::span<const T> x) {
    with_format([&]<class Format>(Format) {
      const quantize_difference_fn<Format> quantize{options_.error_feedback};
      const T* reference = values_.data();
      const T* residual = reference + n_;
      std::uint16_t* out = sent().data();
      for (std::size_t k = 0; k < n_; ++k) {
        T e = residual[k];
        quantize(x[k], reference[k], e, out[k]);
      }
      std::fill(out + n_, out + sent().size(), std::uint16_t{0});
      return 0;
    });
  }

  std::size_t owned_count(int rank) const noexcept {
    const std::size_t begin = static_cast<std::size_t>(rank) * chunk_;
    return begin < n_ ? std::min(chunk_, n_ - begin) : 0;
  }

  void reduce_owned(int rank) {
    with_format([&]<class Format>(Format) {
      const std::size_t m = received().size() / chunk_, mine = owned_count(rank);
      const quantize_mean_fn<Format> owner{1.0 / static_cast<double>(m), options_.error_feedback};
      // The owner's residuals go to a scratch copy, committed once both collectives succeeded.
      std::copy_n(values_.data() + 2 * n_, chunk_, owner_pending_.data());
      T* const g = owner_pending_.data();
      std::uint16_t* out = owned().data();
      const std::uint16_t* in = received().data();
      // By blocks: each element's sum over the ranks (in double, in rank order), then its
      // quantization; two loops without inner control flow, so both vectorize.
      constexpr std::size_t block = 256;
      double sum[block];
      for (std::size_t b = 0; b < mine; b += block) {
        const std::size_t len = std::min(block, mine - b);
        std::fill_n(sum, len, 0.0);
        for (std::size_t j = 0; j < m; ++j)
          for (std::size_t t = 0; t < len; ++t) sum[t] += static_cast<double>(Format::decode(in[j * chunk_ + b + t]));
        for (std::size_t t = 0; t < len; ++t) owner(sum[t], g[b + t], out[b + t]);
      }
      std::fill(out + mine, out + chunk_, std::uint16_t{0});  // padding past N
      return 0;
    });
  }

  // Both collectives succeeded: commit the residuals (x[k] is read before mean[k] is written, so
  // x and mean may be one buffer), then the mean and the reference.
  bool commit(int rank, std::span<const T> x, std::span<T> mean) {
    return with_format([&]<class Format>(Format) {
      T* const reference = values_.data();
      T* const residual = reference + n_;
      T* const owner_residual = residual + n_;
      const quantize_difference_fn<Format> quantize{options_.error_feedback};
      const dequantize_onto_fn<Format> dequantize;
      const std::uint16_t* all = gathered().data();
      std::uint16_t word;
      std::copy_n(owner_pending_.data(), owned_count(rank), owner_residual);
      bool finite = true;
      for (std::size_t k = 0; k < n_; ++k) {
        quantize(x[k], reference[k], residual[k], word);
        dequantize(reference[k], all[k], mean[k]);
        finite &= std::isfinite(mean[k]);  // not &&: no branch, so the loop vectorizes
      }
      if (finite)
        std::copy(mean.begin(), mean.end(), reference);
      else
        std::fill(residual, owner_residual + chunk_, T(0));  // e and g, adjacent
      return finite;
    });
  }

  compressed_mean_options options_;
  std::size_t n_ = 0, chunk_ = 0;
  std::vector<T> values_;              // r (N), e (N), g (c)
  std::vector<T> owner_pending_;       // g as this sync's reduction left it (c), until commit
  std::vector<std::uint16_t> words_;   // sent (M c), received (M c), owned (c)
  std::optional<std::int64_t> membership_;  // comm's membership() when built; none once invalidated
};

}  // namespace dppf
