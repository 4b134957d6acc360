#pragma once
// What every local optimizer shares: its options, the learning rate a schedule sets each step,
// validated, and init(ex, params), which reads the element type and size off the parameters.

#include <cmath>
#include <cstddef>
#include <ranges>
#include <type_traits>

#include "../../buffer.hpp"
#include "../../executor.hpp"
#include "../../error.hpp"

namespace dppf::detail {

// Derived provides `static constexpr const char* name` and `init<T>(ex, n)`; Options has
// `double lr` and `validate()`, which Derived's constructor calls once.
template <class Derived, class Options>
class optimizer_base {
 public:
  using options_type = Options;

  const Options& options() const noexcept { return options_; }
  double lr() const noexcept { return options_.lr; }
  /// Sets the learning rate (what a schedule does every step; a cheap check, as the rate may come
  /// from a user's callable).
  void set_lr(double lr) {
    require_option(lr >= 0.0 && std::isfinite(lr), Derived::name, "lr", lr, "must be >= 0 and finite");
    options_.lr = lr;
  }

  /// State for `params`: their element type and size, allocated by ex.
  template <executor E, parameter_buffer P>
    requires runs_on<E, P>
  auto init(const E& ex, const P& params) const {
    return static_cast<const Derived&>(*this).template init<std::remove_cv_t<buffer_element_t<const P&>>>(
        ex, std::ranges::size(params));
  }

 protected:
  explicit optimizer_base(Options options) : options_(options) {}
  Options options_;
};

}  // namespace dppf::detail
