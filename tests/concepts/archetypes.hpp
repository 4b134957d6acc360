#pragma once
// The archetypes of tests/test_concepts.cpp: for each concept a type with exactly the members the
// concept checks. The compile-failure cases of tests/concepts/ define DPPF_ARCHETYPE_WITHOUT_<X>
// to remove member X and check that the call is rejected with the concept's name; with
// DPPF_COMPLETE (the control compile) every member is present.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <dppf/buffer.hpp>
#include <dppf/consensus/rule.hpp>
#include <dppf/executor.hpp>

// The control compile: every member present.
#if defined(DPPF_COMPLETE)
#undef DPPF_ARCHETYPE_WITHOUT_SYNCHRONIZE
#undef DPPF_ARCHETYPE_WITHOUT_DOUBLE_ALLOCATION
#undef DPPF_ARCHETYPE_WITHOUT_SET_LR
#undef DPPF_ARCHETYPE_WITHOUT_SYNC
#undef DPPF_ARCHETYPE_WITHOUT_STEP_ARGUMENT
#endif

namespace dppf_test {

// ---- executor archetype: memory_space, allocate<T>, the four primitives, synchronize. Not
// default-constructible or assignable; plain loops, reductions in index order.
class archetype_executor {
 public:
  using memory_space = dppf::host_space;
  explicit archetype_executor(int) {}
  archetype_executor(const archetype_executor&) = default;
  archetype_executor& operator=(const archetype_executor&) = delete;

  template <dppf::parameter_value T>
#if defined(DPPF_ARCHETYPE_WITHOUT_DOUBLE_ALLOCATION)
    requires std::same_as<T, float>
#endif
  std::vector<T> allocate(std::size_t n) const {
    return std::vector<T>(n);
  }
  template <class F, class... B>
  void transform_indexed(F f, B&&... b) const {
    const std::size_t n = size_of(b...);
    for (std::size_t i = 0; i < n; ++i) f(i, std::ranges::data(b)[i]...);
  }
  template <class F, class... B>
  void transform(F f, B&&... b) const {
    const std::size_t n = size_of(b...);
    for (std::size_t i = 0; i < n; ++i) f(std::ranges::data(b)[i]...);
  }
  template <class F, class... B>
  double transform_reduce_indexed(F f, B&&... b) const {
    const std::size_t n = size_of(b...);
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(f(i, std::ranges::data(b)[i]...));
    return total;
  }
  template <class F, class... B>
  double transform_reduce(F f, B&&... b) const {
    const std::size_t n = size_of(b...);
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(f(std::ranges::data(b)[i]...));
    return total;
  }
#if !defined(DPPF_ARCHETYPE_WITHOUT_SYNCHRONIZE)
  void synchronize() const {}
#endif

 private:
  template <class B0, class... B>
  static std::size_t size_of(const B0& b0, const B&... b) {
    const std::size_t n = std::ranges::size(b0);
    if (((std::ranges::size(b) != n) || ...)) throw std::invalid_argument("archetype_executor: sizes differ");
    return n;
  }
};

// ---- local_optimizer archetype: lr, set_lr, init<T>, step, a state with for_each_buffer. Plain
// SGD with a step counter in its state.
template <class Buffer>
struct archetype_optimizer_state {
  Buffer last_grad;
  template <class F>
  void for_each_buffer(F&& f) {
    f("last_grad", last_grad);
  }
};

template <class T>
struct archetype_sgd_fn {
  T lr;
  void operator()(T& p, const T& g, T& last) const {
    p -= lr * g;
    last = g;
  }
};

class archetype_optimizer {
 public:
  explicit archetype_optimizer(double lr) : lr_(lr) {}
  double lr() const { return lr_; }
#if !defined(DPPF_ARCHETYPE_WITHOUT_SET_LR)
  void set_lr(double lr) { lr_ = lr; }
#endif
  template <class T, class E>
  archetype_optimizer_state<dppf::buffer_t<E, T>> init(const E& ex, std::size_t n) const {
    return {ex.template allocate<T>(n)};
  }
  template <class E, class P, class G, class S>
  void step(const E& ex, P&& p, const G& g, S& s) const {
    using T = std::remove_cvref_t<std::ranges::range_value_t<P>>;
    ex.transform(archetype_sgd_fn<T>{static_cast<T>(lr_)}, dppf::view(p), dppf::detail::const_view(g),
                 dppf::view(s.last_grad));
  }

 private:
  double lr_;
};

// ---- consensus archetype: averages_gradients, state<Buffer> with for_each_buffer, init, sync.
// x <- (x + x_bar) / 2, counting its syncs in its state's buffer.
template <class T>
struct halfway_fn {
  void operator()(T& x, const T& mean) const { x = static_cast<T>(0.5) * (x + mean); }
};

struct archetype_consensus {
  static constexpr bool averages_gradients = false;
  template <class Buffer>
  struct state {
    Buffer seen;
    template <class F>
    void for_each_buffer(F&& f) {
      f("seen", seen);
    }
  };
  template <class Ctx, class S>
  void init(Ctx& ctx, S& s) const {
    s.seen = ctx.ex.template allocate<typename Ctx::value_type>(1);
  }
#if !defined(DPPF_ARCHETYPE_WITHOUT_SYNC)
  template <class Ctx, class S>
  dppf::sync_report sync(Ctx& ctx, S& s) const {
    using T = typename Ctx::value_type;
    dppf::average_into_scratch(ctx);
    ctx.ex.transform(halfway_fn<T>{}, ctx.params, typename Ctx::const_view_type(ctx.scratch));
    s.seen[0] += 1;  // the rule's own state, allocated by init
    dppf::sync_report report;
    report.distance = static_cast<double>(s.seen[0]);
    return report;
  }
#endif
};

// ---- lr_schedule archetype: a const call with a step, nothing else (no validate()).
struct archetype_schedule {
#if !defined(DPPF_ARCHETYPE_WITHOUT_STEP_ARGUMENT)
  double operator()(std::int64_t step) const { return 0.5 / static_cast<double>(step + 1); }
#else
  double operator()() const { return 0.5; }
#endif
};

}  // namespace dppf_test
