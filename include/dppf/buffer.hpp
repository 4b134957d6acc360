#pragma once
// The parameter_buffer concept: a contiguous, sized range of float or double whose memory space
// is known from its type, and the views (std::span on the host, device_span on a GPU) that
// executors and communicators work on.

#include <cstddef>
#include <iterator>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>

#include "error.hpp"
#include "memory_space.hpp"

namespace dppf {

template <class T>
concept parameter_value = std::same_as<std::remove_cv_t<T>, float> || std::same_as<std::remove_cv_t<T>, double>;

/// A non-owning view of `n` elements in device memory. Its pointer is never dereferenced on the
/// host; the type exists so that device memory cannot be passed where host memory is expected.
template <class T>
class device_span {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using memory_space = device_space;
  using iterator = T*;

  constexpr device_span() noexcept = default;
  constexpr device_span(T* ptr, std::size_t n) noexcept : ptr_(ptr), n_(n) {}
  template <class U>
    requires std::convertible_to<U (*)[], T (*)[]>
  constexpr device_span(device_span<U> other) noexcept : ptr_(other.data()), n_(other.size()) {}

  constexpr T* data() const noexcept { return ptr_; }
  constexpr std::size_t size() const noexcept { return n_; }
  constexpr bool empty() const noexcept { return n_ == 0; }
  constexpr T* begin() const noexcept { return ptr_; }
  constexpr T* end() const noexcept { return ptr_ + n_; }
  constexpr device_span subspan(std::size_t offset, std::size_t count) const noexcept {
    return {ptr_ + offset, count};
  }

 private:
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

template <class T>
device_span(T*, std::size_t) -> device_span<T>;

/// A contiguous sized range of float or double, in the memory space memory_space_t<B>.
template <class B>
concept parameter_buffer = std::ranges::contiguous_range<B> && std::ranges::sized_range<B> &&
                           parameter_value<std::ranges::range_value_t<B>>;

/// A parameter_buffer in host memory.
template <class B>
concept host_buffer = parameter_buffer<B> && std::same_as<memory_space_t<B>, host_space>;

/// A parameter_buffer in device memory.
template <class B>
concept device_buffer = parameter_buffer<B> && std::same_as<memory_space_t<B>, device_space>;

/// The element type of a buffer, const-qualified when the buffer only allows reading.
template <parameter_buffer B>
using buffer_element_t = std::remove_reference_t<std::ranges::range_reference_t<B>>;

/// The view an executor works on for a buffer: std::span on the host, device_span on a device.
template <class Space, class T>
using span_for = std::conditional_t<std::same_as<Space, device_space>, device_span<T>, std::span<T>>;

template <parameter_buffer B>
using view_t = span_for<memory_space_t<B>, buffer_element_t<B>>;

/// A buffer's view (non-owning; keeps constness).
template <parameter_buffer B>
constexpr view_t<B&> view(B&& b) noexcept {
  return {std::ranges::data(b), std::ranges::size(b)};
}

namespace detail {

// A read-only view of any buffer, even a span over mutable elements: executors then treat it as
// an input (a device kernel does not write it back; oracles cannot change it).
template <parameter_buffer B>
constexpr span_for<memory_space_t<B>, const std::remove_cv_t<buffer_element_t<B>>> const_view(const B& b) noexcept {
  return {std::ranges::data(b), std::ranges::size(b)};
}

// Every buffer in one call must have the same length; the message names both.
inline void require_same_size(std::size_t expected, std::size_t got, const char* name) {
  if (expected != got)
    throw_invalid(std::string(name) + " has " + std::to_string(got) + " elements, expected " +
                  std::to_string(expected));
}

inline void require_not_empty(std::size_t n, const char* name) {
  if (n == 0) throw_invalid(std::string(name) + " is empty");
}

}  // namespace detail
}  // namespace dppf
