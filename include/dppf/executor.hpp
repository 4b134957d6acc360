#pragma once
// The executor concept: where elementwise work and reductions run. An executor names its memory
// space, allocates zero-filled buffers there, applies functors element by element
// (transform, transform_indexed) and reduces them in double (transform_reduce[_indexed]).
// Everything else (fill, copy, dot, norms, the optimizer and consensus updates) is written once
// on top of these primitives, as functors.

#include <concepts>
#include <cstddef>
#include <utility>

#include "buffer.hpp"
#include "config.hpp"
#include "memory_space.hpp"

namespace dppf {

namespace detail {
struct probe_update {
  template <class X>
  DPPF_HOST_DEVICE void operator()(X& x) const { x = X(x); }
};
struct probe_value {
  template <class X>
  DPPF_HOST_DEVICE double operator()(const X& x) const { return x; }
};
}  // namespace detail

template <class E>
concept executor = std::copy_constructible<E> && memory_space<typename E::memory_space> &&
    requires(const E& e, span_for<typename E::memory_space, float> x,
             span_for<typename E::memory_space, const float> y) {
      { e.template allocate<float>(std::size_t{1}) } -> parameter_buffer;
      e.transform(detail::probe_update{}, x);
      { e.transform_reduce(detail::probe_value{}, y) } -> std::convertible_to<double>;
      e.synchronize();
    };

/// The owning buffer type executor E allocates for elements of type T.
template <executor E, parameter_value T>
using buffer_t = decltype(std::declval<const E&>().template allocate<T>(std::size_t{}));

/// True when buffer B lives where executor E runs.
template <class E, class B>
concept runs_on = executor<E> && parameter_buffer<B> && std::same_as<memory_space_t<B>, typename E::memory_space>;

}  // namespace dppf
