#pragma once
// Memory spaces as types. A buffer's space is part of its type, so an executor or a
// communicator can reject, at compile time, memory it cannot touch.

#include <concepts>
#include <type_traits>

namespace dppf {

/// Ordinary host memory (std::vector, std::span, ...).
struct host_space {};
/// Memory of a CUDA device (device_span, thrust::device_vector, ...).
struct device_space {};

template <class S>
concept memory_space = std::same_as<S, host_space> || std::same_as<S, device_space>;

/// Customization point: the memory space of a buffer type. A type names its own space with a
/// nested `memory_space` alias; any other contiguous range is host memory. Device containers
/// from other libraries (thrust::device_vector) are specialized in the CUDA headers.
template <class B>
struct memory_space_of {
  using type = host_space;
};

template <class B>
  requires requires { typename B::memory_space; } && memory_space<typename B::memory_space>
struct memory_space_of<B> {
  using type = typename B::memory_space;
};

template <class B>
using memory_space_t = typename memory_space_of<std::remove_cvref_t<B>>::type;

}  // namespace dppf
