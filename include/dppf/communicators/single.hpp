#pragma once
// The communicator of a group of one: every collective is the identity.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../buffer.hpp"
#include "../async_communicator.hpp"
#include "../communicator.hpp"
#include "../exchange_communicator.hpp"

namespace dppf {

/// One rank, no communication. all_reduce with avg or sum copies (out of place) or does nothing.
struct single_communicator {
  using memory_space = host_space;

  int rank() const noexcept { return 0; }
  int size() const noexcept { return 1; }

  template <host_buffer In, host_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    require_buffer_op(op);
    detail::require_same_size(std::ranges::size(in), std::ranges::size(out), "single::all_reduce output");
    std::ranges::copy(in, std::ranges::begin(out));
  }
  template <host_buffer B>
  void all_reduce(B&&, reduce_op op) {
    require_buffer_op(op);
  }
  double all_reduce(double v, reduce_op) { return v; }
  std::vector<double> all_gather(double v) { return {v}; }
  template <host_buffer B>
  void broadcast(B&&, int root) {
    detail::require(root == 0, "single::broadcast: root must be 0");
  }
  void barrier() {}

  /// A group of one: both exchanges copy in to out (sizes checked as in every group).
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) { exchange(true, in, out, "single::all_to_all"); }
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) { exchange(false, in, out, "single::all_gather"); }

  /// The collective runs at once; its error, if any, is raised by the handle's test() / wait().
  template <host_buffer In, host_buffer Out>
  completed_handle start_all_reduce(const In& in, Out&& out, reduce_op op) {
    return run_now([&] { all_reduce(in, out, op); });
  }
  template <host_buffer B>
  completed_handle start_all_reduce(B&& inout, reduce_op op) {
    return run_now([&] { all_reduce(inout, op); });
  }
  completed_handle start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return run_now([&] { all_to_all(in, out); });
  }
  completed_handle start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    return run_now([&] { all_gather(in, out); });
  }

 private:
  template <class F>
  static completed_handle run_now(F&& f) {
    try {
      f();
      return {};
    } catch (...) {
      return completed_handle(std::current_exception());
    }
  }
  static void exchange(bool all_to_all, std::span<const std::uint16_t> in, std::span<std::uint16_t> out, const char* who) {
    const std::string problem = detail::exchange_problem(who, all_to_all, in.size(), out.size(), 1, in.data(), out.data());
    if (!problem.empty()) detail::throw_invalid(problem);
    std::ranges::copy(in, out.begin());
  }
  static void require_buffer_op(reduce_op op) {
    detail::require(op == reduce_op::sum || op == reduce_op::avg, "all_reduce of a buffer supports sum and avg only");
  }
};

/// The 0.1 spelling.
using single [[deprecated("dppf 0.2 renamed it dppf::single_communicator; see CHANGELOG.md")]] = single_communicator;

}  // namespace dppf
