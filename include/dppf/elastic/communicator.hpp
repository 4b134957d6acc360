#pragma once
// dppf::elastic_communicator: the communicator of an elastic group's current generation. A
// copyable handle: rank() and size() are those of the generation the group is in now, and every
// collective goes to that generation's gloo_communicator (so a mean is over the current members).
// Collectives raise as gloo_communicator's do; the elastic trainer turns a failure into a regroup.
// membership() is the generation's number, so state laid out over the members (a compressed
// sync's) knows when to start again.

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "../async_communicator.hpp"
#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
#include "../exchange_communicator.hpp"
#include "group.hpp"

namespace dppf {

class elastic_communicator {
 public:
  using memory_space = host_space;

  explicit elastic_communicator(std::shared_ptr<elastic_group> group) : group_(std::move(group)) {
    detail::require(group_ != nullptr, "elastic_communicator: the group is null");
  }

  int rank() const noexcept { return group_->rank(); }
  int size() const noexcept { return group_->size(); }
  /// The current generation's number: it changes whenever the members do (changing_membership).
  std::int64_t membership() const noexcept { return group_->generation().number; }
  elastic_group& group() const noexcept { return *group_; }

  template <host_buffer In, host_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    group_->comm().all_reduce(in, std::forward<Out>(out), op);
  }
  template <host_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    group_->comm().all_reduce(std::forward<B>(inout), op);
  }
  double all_reduce(double v, reduce_op op) { return group_->comm().all_reduce(v, op); }
  std::vector<double> all_gather(double v) { return group_->comm().all_gather(v); }
  template <host_buffer B>
  void broadcast(B&& b, int root) {
    group_->comm().broadcast(std::forward<B>(b), root);
  }
  void barrier() { group_->comm().barrier(); }
  /// An overlapped sync's all-reduce (async_communicator), on the current generation's
  /// communication thread; the handle keeps that thread alive, so it may outlive the generation
  /// (its test() / wait() then raise, as the generation's collectives do).
  template <host_buffer In, host_buffer Out>
  gloo_all_reduce_handle start_all_reduce(const In& in, Out&& out, reduce_op op) {
    return group_->comm().start_all_reduce(in, std::forward<Out>(out), op);
  }
  template <host_buffer B>
  gloo_all_reduce_handle start_all_reduce(B&& inout, reduce_op op) {
    return group_->comm().start_all_reduce(std::forward<B>(inout), op);
  }
  /// The exchanges of a compressed sync (exchange_communicator).
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) { group_->comm().all_to_all(in, out); }
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) { group_->comm().all_gather(in, out); }
  /// ... and started, for an overlapped compressed sync (async_exchange_communicator).
  gloo_all_reduce_handle start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return group_->comm().start_all_to_all(in, out);
  }
  gloo_all_reduce_handle start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return group_->comm().start_all_gather(in, out);
  }

 private:
  std::shared_ptr<elastic_group> group_;
};

static_assert(async_exchange_communicator<elastic_communicator> &&
              changing_membership<elastic_communicator>);

}  // namespace dppf
