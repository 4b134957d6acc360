#pragma once
// dppf's one exception family. Every exception dppf throws is a dppf::error (catch them all with
// one handler) and a std::exception exactly once, through the standard class that fits it: bad
// arguments are std::invalid_argument, everything else std::runtime_error. dppf::error is an
// interface without a std::exception base of its own, so no catch is ever ambiguous.
//
//   invalid_argument_error  bad input (names the argument, the rank, the sizes)
//   communication_error     a collective failed on this rank or another one
//     timeout_error         ... because it ran past its timeout
//   non_finite_error        parameters held a NaN or an infinity where the policy says throw
//   checkpoint_error        a checkpoint file is missing, malformed or does not fit
//   cuda_error              a CUDA runtime call failed (code() is the cudaError_t value)

#include <sstream>
#include <stdexcept>
#include <string>

namespace dppf {

/// The base of every dppf exception.
class error {
 public:
  virtual ~error() = default;
  virtual const char* what() const noexcept = 0;

 protected:
  error() = default;
  error(const error&) = default;
  error& operator=(const error&) = default;
};

namespace detail {
// A dppf::error that is also the standard exception Std (and so a std::exception, once).
template <class Std>
class error_of : public Std, public error {
 public:
  using Std::Std;
  const char* what() const noexcept override { return Std::what(); }
};
}  // namespace detail

/// A bad argument or option; also a std::invalid_argument.
class invalid_argument_error : public detail::error_of<std::invalid_argument> {
 public:
  using error_of::error_of;
};

/// A collective operation failed (on this rank or on another one).
class communication_error : public detail::error_of<std::runtime_error> {
 public:
  using error_of::error_of;
};

/// A collective did not complete within its timeout.
class timeout_error : public communication_error {
 public:
  using communication_error::communication_error;
};

/// Parameters or gradients held a NaN or an infinity where the policy says to throw.
class non_finite_error : public detail::error_of<std::runtime_error> {
 public:
  using error_of::error_of;
};

/// A checkpoint file is missing, unreadable, malformed, or does not match the live state.
class checkpoint_error : public detail::error_of<std::runtime_error> {
 public:
  using error_of::error_of;
};

/// A CUDA runtime call failed (bad launch, out of memory, a kernel fault). code() is the
/// cudaError_t value, kept as an int so that this header needs no CUDA.
class cuda_error : public detail::error_of<std::runtime_error> {
 public:
  cuda_error(int code, const std::string& what) : error_of(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {

[[noreturn]] inline void throw_invalid(const std::string& what) { throw invalid_argument_error("dppf: " + what); }

// For fixed messages; build the string only on the failure path elsewhere.
inline void require(bool ok, const char* what) {
  if (!ok) throw_invalid(what);
}

// The one message format of option validation: "dppf: <owner>: <field> <requirement> (got <value>)".
template <class V>
void require_option(bool ok, const char* owner, const char* field, const V& value, const char* requirement) {
  if (ok) return;
  std::ostringstream msg;
  msg << owner << ": " << field << ' ' << requirement << " (got " << value << ')';
  throw_invalid(msg.str());
}

}  // namespace detail
}  // namespace dppf
