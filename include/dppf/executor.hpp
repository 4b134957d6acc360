#pragma once
// The executor concept: where elementwise work and reductions run. An executor names its memory
// space, allocates zero-filled float and double buffers there, applies functors element by
// element (transform, transform_indexed) and reduces them in double (transform_reduce[_indexed]),
// each over one or several buffers of equal size at once. Everything else (fill, copy, dot, norms,
// random fills, the optimizer and consensus updates, the sharpness estimators) is written once on
// top of these primitives, as functors, so the concept checks exactly what they call.
//
// Aliasing: the functor of element i sees element i of every buffer and nothing else, so two
// buffers of one call may be the same memory (same data pointer and size: axpy(ex, a, x, x) is
// x += a x) or disjoint memory. Buffers that overlap partially are rejected with
// invalid_argument_error (on a parallel executor element i of one would race with element j of
// the other). Executors must therefore not assume restrict-qualified buffers where one is written.

#include <concepts>
#include <cstddef>
#include <utility>

#include "buffer.hpp"
#include "config.hpp"
#include "memory_space.hpp"

namespace dppf {

namespace detail {
// Probe functors: the shapes of functor the algorithms hand to an executor.
struct probe_update {  // f(x0&, x1&, ...)
  template <class... X>
  DPPF_HOST_DEVICE void operator()(X&...) const {}
};
struct probe_indexed_update {  // f(i, x0&, x1&, ...)
  template <class... X>
  DPPF_HOST_DEVICE void operator()(std::size_t, X&...) const {}
};
struct probe_value {  // double f(x0, x1, ...)
  template <class... X>
  DPPF_HOST_DEVICE double operator()(const X&...) const { return 0.0; }
};
struct probe_indexed_value {  // double f(i, x0, x1, ...)
  template <class... X>
  DPPF_HOST_DEVICE double operator()(std::size_t, const X&...) const { return 0.0; }
};

// f(name, buffer) for every buffer of a state: the visitor checkpoints and state averaging pass
// to for_each_buffer.
struct probe_visitor {
  template <class B>
  void operator()(const char*, B&) const {}
};

// E allocates zero-filled buffers of T in its own memory space.
template <class E, class T>
concept allocates = requires(const E& e, std::size_t n) {
  { e.template allocate<T>(n) } -> parameter_buffer;
  requires std::same_as<memory_space_t<decltype(e.template allocate<T>(n))>, typename E::memory_space>;
  requires std::same_as<std::remove_cvref_t<std::ranges::range_value_t<decltype(e.template allocate<T>(n))>>, T>;
};

// E runs every primitive on views of its memory space: one buffer, and several at once (up to
// five, mixing written and read-only buffers, as AdamW with amsgrad does).
template <class E, class T>
concept runs_primitives = requires(const E& e, span_for<typename E::memory_space, T> x,
                                   span_for<typename E::memory_space, const T> c) {
  e.transform(probe_update{}, x);
  e.transform(probe_update{}, c, x);
  e.transform(probe_update{}, x, c, x, x, x);
  e.transform_indexed(probe_indexed_update{}, x);
  e.transform_indexed(probe_indexed_update{}, c, x);
  { e.transform_reduce(probe_value{}, c) } -> std::convertible_to<double>;
  { e.transform_reduce(probe_value{}, c, c) } -> std::convertible_to<double>;
  { e.transform_reduce(probe_value{}, c, c, c) } -> std::convertible_to<double>;
  { e.transform_reduce_indexed(probe_indexed_value{}, c) } -> std::convertible_to<double>;
  { e.transform_reduce_indexed(probe_indexed_value{}, c, c) } -> std::convertible_to<double>;
};
}  // namespace detail

/// Runs elementwise work and reductions over buffers of its memory space (see the file comment).
template <class E>
concept executor = std::copy_constructible<E> && memory_space<typename E::memory_space> &&
                   detail::allocates<E, float> && detail::allocates<E, double> &&
                   detail::runs_primitives<E, float> && detail::runs_primitives<E, double> &&
                   requires(const E& e) { e.synchronize(); };

/// The owning buffer type executor E allocates for elements of type T.
template <executor E, parameter_value T>
using buffer_t = decltype(std::declval<const E&>().template allocate<T>(std::size_t{}));

/// True when buffer B lives where executor E runs.
template <class E, class B>
concept runs_on = executor<E> && parameter_buffer<B> && std::same_as<memory_space_t<B>, typename E::memory_space>;

}  // namespace dppf
