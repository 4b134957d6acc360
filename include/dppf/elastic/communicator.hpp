#pragma once
// dppf::elastic_communicator: the communicator of an elastic group's current generation. A
// copyable handle: rank() and size() are those of the generation the group is in now, and every
// collective goes to that generation's gloo_communicator (so a mean is over the current members).
// Collectives raise as gloo_communicator's do; the elastic trainer turns a failure into a regroup.

#include <memory>
#include <utility>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
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

 private:
  std::shared_ptr<elastic_group> group_;
};

static_assert(communicator<elastic_communicator>);

}  // namespace dppf
