#pragma once
// Exceptions thrown by dppf. Bad arguments are std::invalid_argument (naming the argument);
// failures of a collective are dppf::communication_error, raised on every rank.

#include <stdexcept>
#include <string>

namespace dppf {

/// A collective operation failed (on this rank or on another one), or timed out.
class communication_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Parameters or gradients held a NaN or an infinity where the policy says to throw.
class non_finite_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

[[noreturn]] inline void throw_invalid(const std::string& what) {
  throw std::invalid_argument("dppf: " + what);
}

// For fixed messages; build the string only on the failure path elsewhere.
inline void require(bool ok, const char* what) {
  if (!ok) throw_invalid(what);
}

}  // namespace detail
}  // namespace dppf
