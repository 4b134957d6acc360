#pragma once
// The local_optimizer concept: what the trainer (and checkpointing) calls on an optimizer O run
// by executor E, for float and for double parameters:
//   o.init<T>(ex, n)                  a state for n parameters of type T, allocated by ex
//   o.step(ex, params, grads, state)  one step, in place
//   state.for_each_buffer(f)          f(name, buffer) for each state buffer (checkpoints, averaging)
//   o.lr(), o.set_lr(lr)              the learning rate a schedule sets every step
// sgd and adamw model it; their init(ex, params) form reads T off the parameters.

#include <concepts>
#include <cstddef>
#include <type_traits>

#include "../buffer.hpp"
#include "../executor.hpp"

namespace dppf {

/// The state type optimizer O makes for parameters of type T on executor E.
template <class O, class E, class T>
using optimizer_state_t = decltype(std::declval<const O&>().template init<T>(std::declval<const E&>(), std::size_t{}));

namespace detail {
template <class O, class E, class T>
concept optimizer_for_type = requires(const O& o, const E& ex, std::size_t n) { o.template init<T>(ex, n); } &&
    requires(const O& o, const E& ex, span_for<typename E::memory_space, T> p,
             span_for<typename E::memory_space, const T> g, optimizer_state_t<O, E, T>& s) {
      o.step(ex, p, g, s);
      s.for_each_buffer(probe_visitor{});
    };

// The element type of an optimizer state must be the parameters' (init(ex, params) ensures it).
// Both types appear in the diagnostic: "require_state_element<float, double>".
template <class State, class Param>
constexpr void require_state_element() {
  static_assert(std::is_same_v<State, Param>,
                "dppf: the optimizer state's element type differs from the parameters' element type; "
                "make the state with init(ex, params) or init<T>(ex, n) with the parameters' T");
}
}  // namespace detail

/// A local optimizer run by executor E (see the file comment).
template <class O, class E>
concept local_optimizer = std::copy_constructible<O> && executor<E> &&
                          requires(O& o, const O& co, double lr) {
                            { co.lr() } -> std::convertible_to<double>;
                            o.set_lr(lr);
                          } && detail::optimizer_for_type<O, E, float> && detail::optimizer_for_type<O, E, double>;

}  // namespace dppf
