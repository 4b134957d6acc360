#pragma once
// dppf::gradient_buckets: data parallelism's gradient average overlapped with the backward pass,
// as PyTorch's DistributedDataParallel (its Reducer) does it. The flat gradient buffer is cut,
// from its end, into buckets of at most a cap of bytes (the first one started smaller, so
// communication begins early). A backward pass produces gradients from the last layer to the
// first; as the model reports each parameter's gradient final (ready), every bucket it completes
// is started with the communicator's asynchronous all-reduce (average, in place), and the rest of
// the backward pass runs while it proceeds. finish() waits for all of them before the optimizer
// step, which then takes the averaged gradients (data_parallel{.gradients_averaged = true}).
//
// Buckets are element ranges of the flat buffer, so a boundary may fall inside a parameter; they
// are always started in the same order (bucket 0 first, the end of the buffer), whatever order
// the parameters are reported in, so every rank's all-reduces match. Each element is averaged by
// one all-reduce of the same engine, so where the engine's result for an element does not depend
// on the buffer's length (thread_group adds the ranks in rank order) the average is bit for bit
// the one-buffer all-reduce's.
//
// Errors: bad use (a segment reported twice, out of range, outside a pass, a missing one at
// finish) raises invalid_argument_error on the rank at fault. A communication error of any bucket
// (the start or the reduction; a dead or silent peer gives one within the communicator's timeout)
// is raised by finish(), after every bucket started was waited for, so no buffer is written after.

#include <algorithm>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../async_communicator.hpp"
#include "../buffer.hpp"
#include "../error.hpp"
#include "../layout.hpp"

namespace dppf {

struct gradient_bucket_options {
  std::size_t bucket_bytes = std::size_t{25} << 20;       ///< cap of every bucket (PyTorch's bucket_cap_mb = 25)
  std::size_t first_bucket_bytes = std::size_t{1} << 20;  ///< cap of bucket 0, the first started (PyTorch's 1 MiB)
};

template <class Comm, class T = float>
  requires async_communicator<Comm>
class gradient_buckets {
 public:
  using view_type = span_for<typename Comm::memory_space, T>;

  /// Buckets for gradients laid out as `layout`; `comm` must outlive this object. Throws
  /// invalid_argument_error for an empty layout or a cap smaller than one element.
  gradient_buckets(Comm& comm, parameter_layout layout, gradient_bucket_options options = {})
      : comm_(&comm), layout_(std::move(layout)) {
    detail::require(layout_.size() > 0, "gradient_buckets: the layout has no segments");
    detail::require_option(options.bucket_bytes >= sizeof(T), "gradient_buckets", "bucket_bytes", options.bucket_bytes,
                           ("must hold at least one element (" + std::to_string(sizeof(T)) + " bytes)").c_str());
    detail::require_option(options.first_bucket_bytes >= sizeof(T), "gradient_buckets", "first_bucket_bytes",
                           options.first_bucket_bytes,
                           ("must hold at least one element (" + std::to_string(sizeof(T)) + " bytes)").c_str());
    // From the end of the buffer: bucket 0 holds the gradients the backward pass produces first.
    std::size_t end = layout_.total();
    std::size_t cap = options.first_bucket_bytes / sizeof(T);
    while (end > 0) {
      const std::size_t begin = end > cap ? end - cap : 0;
      ranges_.emplace_back(begin, end);
      end = begin;
      cap = options.bucket_bytes / sizeof(T);
    }
    missing_.resize(ranges_.size());
    handles_.resize(ranges_.size());
    reported_.resize(layout_.size());
  }

  gradient_buckets(const gradient_buckets&) = delete;
  gradient_buckets& operator=(const gradient_buckets&) = delete;
  /// Waits for every bucket still in flight (a pass left unfinished by an exception).
  ~gradient_buckets() { settle(); }

  std::size_t bucket_count() const noexcept { return ranges_.size(); }
  /// Bucket b's elements [first, second); bucket 0 is started first and ends the buffer.
  std::pair<std::size_t, std::size_t> bucket_range(std::size_t b) const { return ranges_.at(b); }
  const parameter_layout& layout() const noexcept { return layout_; }
  /// True between begin() and finish().
  bool in_pass() const noexcept { return in_pass_; }

  /// A backward pass begins: `grads` (laid out as the layout says) is averaged in place, bucket by
  /// bucket, as its segments are reported ready. Until finish() returned or threw, a reported
  /// segment must not be written, and no bucket read.
  void begin(view_type grads) {
    if (in_pass_) detail::throw_invalid("gradient_buckets::begin: the previous pass was not finished (call finish())");
    layout_.require_covers(grads.size(), "gradient_buckets::begin: gradients");
    grads_ = grads;
    for (std::size_t b = 0; b < ranges_.size(); ++b) missing_[b] = ranges_[b].second - ranges_[b].first;
    reported_.assign(layout_.size(), false);
    next_ = 0;
    error_ = nullptr;
    in_pass_ = true;
  }

  /// The gradients of segments [first, last) are final: starts every bucket they complete, in
  /// bucket order. Communication errors are kept for finish().
  void ready(std::size_t first, std::size_t last) {
    if (!in_pass_) detail::throw_invalid("gradient_buckets::ready: no pass in progress (call begin(grads) first)");
    if (first >= last || last > layout_.size())
      detail::throw_invalid("gradient_buckets::ready: segments [" + std::to_string(first) + ", " + std::to_string(last) +
                            ") are not a non-empty range of the layout's " + std::to_string(layout_.size()));
    for (std::size_t k = first; k < last; ++k)
      if (reported_[k])
        detail::throw_invalid("gradient_buckets::ready: segment " + std::to_string(k) + " ('" + layout_[k].name +
                              "') was reported ready twice in this pass");
    for (std::size_t k = first; k < last; ++k) {
      reported_[k] = true;
      const segment& s = layout_[k];
      // Buckets run from the end of the buffer: the ones overlapping [offset, offset + size).
      for (std::size_t b = bucket_of(s.offset + s.size - 1);; ++b) {
        const auto [lo, hi] = ranges_[b];
        const std::size_t from = std::max(lo, s.offset), to = std::min(hi, s.offset + s.size);
        missing_[b] -= to - from;
        if (lo <= s.offset) break;
      }
    }
    while (next_ < ranges_.size() && missing_[next_] == 0) start(next_++);
    progress();
  }
  void ready(std::size_t segment) { ready(segment, segment + 1); }

  /// test() on the buckets in flight (MPI moves a reduction forward only inside its calls);
  /// ready() calls it. Errors are kept for finish().
  void progress() {
    for (std::size_t b = 0; b < next_; ++b) {
      if (!handles_[b]) continue;
      try {
        if (handles_[b]->test()) handles_[b].reset();
      } catch (...) {
        keep(std::current_exception());
        handles_[b].reset();
      }
    }
  }

  /// Waits for every bucket: the gradients are then the group's average. Raises the first
  /// communication error of the pass, or invalid_argument_error naming the first segment never
  /// reported (after waiting for the buckets started). The pass ends either way.
  void finish() {
    if (!in_pass_) detail::throw_invalid("gradient_buckets::finish: no pass in progress (call begin(grads) first)");
    settle();
    in_pass_ = false;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    for (std::size_t k = 0; k < layout_.size(); ++k)
      if (!reported_[k]) {
        std::size_t missing = 0;
        for (const bool r : reported_) missing += r ? 0 : 1;
        detail::throw_invalid("gradient_buckets::finish: segment " + std::to_string(k) + " ('" + layout_[k].name +
                              "') was never reported ready (" + std::to_string(missing) + " of " +
                              std::to_string(layout_.size()) + " missing); its bucket was not averaged");
      }
  }

 private:
  using handle_type = decltype(std::declval<Comm&>().start_all_reduce(std::declval<view_type>(), reduce_op::avg));

  // The bucket holding element i (buckets after 0 all have the same cap).
  std::size_t bucket_of(std::size_t i) const {
    const std::size_t first_lo = ranges_[0].first;
    if (i >= first_lo) return 0;
    const std::size_t cap = ranges_.size() > 1 ? ranges_[1].second - ranges_[1].first : 1;
    return 1 + (first_lo - 1 - i) / cap;
  }

  // Starts bucket b, unless an error already ended this pass's communication (later buckets
  // would only fail, or wait out the timeout, too).
  void start(std::size_t b) {
    if (error_) return;
    const auto [lo, hi] = ranges_[b];
    try {
      handles_[b].emplace(comm_->start_all_reduce(grads_.subspan(lo, hi - lo), reduce_op::avg));
    } catch (...) {
      keep(std::current_exception());
    }
  }

  // Waits for every bucket in flight, keeping the first error.
  void settle() noexcept {
    for (auto& h : handles_) {
      if (!h) continue;
      try {
        h->wait();
      } catch (...) {
        keep(std::current_exception());
      }
      h.reset();
    }
  }

  void keep(std::exception_ptr e) noexcept {
    if (!error_) error_ = std::move(e);
  }

  Comm* comm_;
  parameter_layout layout_;
  std::vector<std::pair<std::size_t, std::size_t>> ranges_;  // bucket b's [first, last) elements
  std::vector<std::size_t> missing_;                         // elements of bucket b not yet reported
  std::vector<std::optional<handle_type>> handles_;          // bucket b's all-reduce while in flight
  std::vector<bool> reported_;                               // segment k reported in this pass
  view_type grads_{};
  std::size_t next_ = 0;  // the next bucket to start
  std::exception_ptr error_{};
  bool in_pass_ = false;
};

}  // namespace dppf
