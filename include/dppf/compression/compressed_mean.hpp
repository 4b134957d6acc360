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
// r starts as the exact mean of the parameters (one full-precision all-reduce when the state is
// built). e_i and g_j are the residuals: what a sync failed to send is sent by the next one, so
// the quantization error does not accumulate over syncs. Q rounds to nearest even with
// saturation (half_formats.hpp).
//
// Wire bytes per rank: (M - 1) c 2 for the all-to-all + (M - 1) c 2 for the all-gather, about
// 4 N (M - 1) / M: half of the fp32 ring all-reduce's 8 N (M - 1) / M.
// Memory: r and e (N elements of T each), g (c elements of T), 2 M c + c words of scratch.
// A mean that is not finite (a worker sent an infinity or a NaN) is written to the output but
// not kept as the reference; every residual is cleared (on every rank alike: they all hold the
// same mean), so the next sync starts again from the last finite reference.
// Host memory only (the exchange collectives are host collectives); the elementwise math is the
// functors of quantize.hpp, written for host and device.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
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
  /// Collective (one all-reduce).
  template <exchange_communicator C>
  compressed_mean(C& comm, std::span<const T> params, compressed_mean_options options) : options_(options) {
    if (options.precision != sync_precision::bf16 && options.precision != sync_precision::fp16)
      detail::throw_invalid(std::string("compressed_mean: precision ") + to_string(options.precision) +
                            " is not a compressed format (bf16 or fp16)");
    n_ = params.size();
    const std::size_t m = static_cast<std::size_t>(comm.size());
    chunk_ = (n_ + m - 1) / m;
    values_.assign(2 * n_ + chunk_, T(0));
    words_.assign(2 * m * chunk_ + chunk_, 0);
    comm.all_reduce(params, reference_span(), reduce_op::avg);
  }

  /// mean <- x_bar (see the file comment) and r <- x_bar when it is finite. Collective; returns
  /// whether the mean is finite (the same answer on every rank).
  template <exchange_communicator C>
  bool operator()(C& comm, std::span<const T> x, std::span<T> mean) {
    detail::require_same_size(x.size(), n_, "compressed_mean: parameters");
    detail::require_same_size(mean.size(), n_, "compressed_mean: output");
    detail::require(static_cast<std::size_t>(comm.size()) * chunk_ * 2 + chunk_ == words_.size(),
                    "compressed_mean: the group size differs from the one the state was built for");
    return options_.precision == sync_precision::bf16 ? run<bf16_format>(comm, x, mean) : run<fp16_format>(comm, x, mean);
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
  std::size_t memory_bytes() const noexcept { return values_.size() * sizeof(T) + words_.size() * sizeof(std::uint16_t); }

 private:
  std::span<T> reference_span() noexcept { return {values_.data(), n_}; }
  template <class Format, class C>
  bool run(C& comm, std::span<const T> x, std::span<T> mean) {
    const std::size_t n = x.size(), m = static_cast<std::size_t>(comm.size()), rank = static_cast<std::size_t>(comm.rank());
    T* const reference = values_.data();
    T* const residual = reference + n;
    T* const owner_residual = residual + n;
    std::uint16_t* const sent = words_.data();
    std::uint16_t* const received = sent + m * chunk_;
    std::uint16_t* const owned = received + m * chunk_;
    // The residuals change only once both collectives have succeeded: a sync that raises (a
    // timeout, a peer lost) leaves the state as it was, so the next sync sends what this one
    // failed to. Each pass below therefore quantizes with a copy of its residual, and the last
    // pass recomputes the same words to update them (deterministic, so the same bits).
    const quantize_difference_fn<Format> quantize{options_.error_feedback};
    for (std::size_t k = 0; k < n; ++k) {
      T e = residual[k];
      quantize(x[k], reference[k], e, sent[k]);
    }
    std::fill(sent + n, sent + m * chunk_, std::uint16_t{0});
    comm.all_to_all(std::span<const std::uint16_t>(sent, m * chunk_), std::span<std::uint16_t>(received, m * chunk_));

    const quantize_mean_fn<Format> owner{1.0 / static_cast<double>(m), options_.error_feedback};
    const std::size_t begin = rank * chunk_, mine = begin < n ? std::min(chunk_, n - begin) : 0;
    const auto owner_sum = [&](std::size_t t) {
      double sum = 0.0;
      for (std::size_t j = 0; j < m; ++j) sum += static_cast<double>(Format::decode(received[j * chunk_ + t]));
      return sum;
    };
    for (std::size_t t = 0; t < chunk_; ++t) {
      T g = owner_residual[t];
      if (t < mine)
        owner(owner_sum(t), g, owned[t]);
      else
        owned[t] = 0;  // padding past N
    }
    comm.all_gather(std::span<const std::uint16_t>(owned, chunk_), std::span<std::uint16_t>(sent, m * chunk_));

    // Both collectives succeeded: commit the residuals (x[k] is read before mean[k] is written,
    // so x and mean may be one buffer), then the mean and the reference.
    std::uint16_t word;
    for (std::size_t t = 0; t < mine; ++t) owner(owner_sum(t), owner_residual[t], word);
    const dequantize_onto_fn<Format> dequantize;
    bool finite = true;
    for (std::size_t k = 0; k < n; ++k) {
      quantize(x[k], reference[k], residual[k], word);
      dequantize(reference[k], sent[k], mean[k]);
      finite = finite && std::isfinite(mean[k]);
    }
    if (finite)
      std::copy(mean.begin(), mean.end(), reference);
    else
      std::fill(residual, owner_residual + chunk_, T(0));  // e and g, adjacent
    return finite;
  }

  compressed_mean_options options_;
  std::size_t n_ = 0, chunk_ = 0;
  std::vector<T> values_;              // r (N), e (N), g (c)
  std::vector<std::uint16_t> words_;   // sent (M c), received (M c), owned (c)
};

}  // namespace dppf
