#pragma once
// Elementwise algorithms and reductions over any executor: fill, copy, scale, axpy, sum, dot and
// squared norm. Each is one functor run by the executor's primitives; reductions accumulate in
// double for float data. Buffers of one call may be the same memory (axpy(ex, a, x, x) is
// x += a x) but must not overlap partially (the executor contract, executor.hpp).

#include <cstddef>
#include <type_traits>

#include "buffer.hpp"
#include "config.hpp"
#include "executor.hpp"

namespace dppf {
namespace detail {

template <class T>
struct fill_fn {
  T value;
  DPPF_HOST_DEVICE void operator()(T& x) const { x = value; }
};

template <class T>
struct copy_fn {
  DPPF_HOST_DEVICE void operator()(const T& src, T& dst) const { dst = src; }
};

// x *= s in place, or dst = s * src; computed in double and rounded once to T (for a float s this
// is the float product, bit for bit).
template <class T>
struct scale_fn {
  double s;
  DPPF_HOST_DEVICE void operator()(T& x) const { x = static_cast<T>(static_cast<double>(x) * s); }
  DPPF_HOST_DEVICE void operator()(const T& src, T& dst) const { dst = static_cast<T>(static_cast<double>(src) * s); }
};

template <class T>
struct axpy_fn {
  T a;
  DPPF_HOST_DEVICE void operator()(const T& x, T& y) const { y += a * x; }
};

struct value_fn {
  template <class T>
  DPPF_HOST_DEVICE double operator()(const T& x) const { return static_cast<double>(x); }
};

struct product_fn {
  template <class T>
  DPPF_HOST_DEVICE double operator()(const T& x, const T& y) const {
    return static_cast<double>(x) * static_cast<double>(y);
  }
};

struct square_fn {
  template <class T>
  DPPF_HOST_DEVICE double operator()(const T& x) const {
    const double d = static_cast<double>(x);
    return d * d;
  }
};

template <class B>
using value_t = std::remove_cv_t<buffer_element_t<B>>;

}  // namespace detail

/// x[i] = value for every i.
template <executor E, parameter_buffer B>
  requires runs_on<E, B>
void fill(const E& ex, B&& x, detail::value_t<B> value) {
  ex.transform(detail::fill_fn<detail::value_t<B>>{value}, view(x));
}

/// dst[i] = src[i]; sizes must match.
template <executor E, parameter_buffer S, parameter_buffer D>
  requires runs_on<E, S> && runs_on<E, D>
void copy(const E& ex, const S& src, D&& dst) {
  ex.transform(detail::copy_fn<detail::value_t<D>>{}, detail::const_view(src), view(dst));
}

/// x[i] *= a.
template <executor E, parameter_buffer B>
  requires runs_on<E, B>
void scale(const E& ex, B&& x, detail::value_t<B> a) {
  ex.transform(detail::scale_fn<detail::value_t<B>>{static_cast<double>(a)}, view(x));
}

/// y[i] += a * x[i].
template <executor E, parameter_buffer X, parameter_buffer Y>
  requires runs_on<E, X> && runs_on<E, Y>
void axpy(const E& ex, detail::value_t<Y> a, const X& x, Y&& y) {
  ex.transform(detail::axpy_fn<detail::value_t<Y>>{a}, detail::const_view(x), view(y));
}

/// Sum of x[i], accumulated in double.
template <executor E, parameter_buffer X>
  requires runs_on<E, X>
double sum(const E& ex, const X& x) {
  return ex.transform_reduce(detail::value_fn{}, detail::const_view(x));
}

/// Sum of x[i] * y[i], accumulated in double.
template <executor E, parameter_buffer X, parameter_buffer Y>
  requires runs_on<E, X> && runs_on<E, Y>
double dot(const E& ex, const X& x, const Y& y) {
  return ex.transform_reduce(detail::product_fn{}, detail::const_view(x), detail::const_view(y));
}

/// Sum of x[i]^2, accumulated in double.
template <executor E, parameter_buffer X>
  requires runs_on<E, X>
double squared_norm(const E& ex, const X& x) {
  return ex.transform_reduce(detail::square_fn{}, detail::const_view(x));
}

}  // namespace dppf
