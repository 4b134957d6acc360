#pragma once
// The asynchronous communicator concept: a communicator that can also start an all-reduce of a
// buffer and return at once with a handle, so that local work runs while the reduction
// proceeds. A refinement: every `communicator` written against 0.2 stays valid as it is.
//
// Contract of a handle h = comm.start_all_reduce(in, out, op) (or (inout, op)):
// * Until h.wait() returned (or threw), the caller must neither write `in` nor read or write
//   `out`: both still belong to the collective.
// * h.test() returns true once the result is in `out` (and never blocks for long); it raises
//   the collective's error when that is already known.
// * h.wait() returns when the result is in `out`, or raises dppf::communication_error
//   (dppf::timeout_error when the group's timeout expired, dppf::invalid_argument_error for bad
//   or mismatched arguments, on every rank alike). It never hangs past the group's timeout.
// * After wait() returned or threw, nothing writes `out` any more. A handle destroyed without
//   wait() waits in its destructor (errors are swallowed there: call wait() to see them).
// * Every rank starts its asynchronous all-reduces in the same order; handles may be waited in
//   any order, and several may be outstanding at once.

#include <concepts>
#include <exception>
#include <utility>

#include "communicator.hpp"

namespace dppf {

/// What start_all_reduce returns.
template <class H>
concept collective_handle = std::movable<H> && requires(H& h) {
  { h.test() } -> std::convertible_to<bool>;
  h.wait();
};

template <class C>
concept async_communicator =
    communicator<C> && requires(C& c, span_for<typename C::memory_space, float> x, span_for<typename C::memory_space, const float> y) {
      { c.start_all_reduce(y, x, reduce_op::avg) } -> collective_handle;  // out of place
      { c.start_all_reduce(x, reduce_op::sum) } -> collective_handle;     // in place
    };

/// A handle whose collective already ran when it was started (single_communicator): it holds
/// only the error, if any, to raise at test() / wait() like any other handle.
class completed_handle {
 public:
  completed_handle() = default;
  explicit completed_handle(std::exception_ptr error) : error_(std::move(error)) {}

  bool test() {
    raise();
    return true;
  }
  void wait() { raise(); }

 private:
  void raise() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }
  std::exception_ptr error_;
};

}  // namespace dppf
