// Writing your own consensus rule: "momentum averaging" (in the spirit of SlowMo, Wang et al.
// 2020). At every sync each worker moves to the mean x_bar plus a step along the mean's own
// progress since the previous sync, x_i <- x_bar + mu (x_bar - m), m <- x_bar, where m (the
// previous mean) is state every rank holds alike.
//
// A rule needs: averages_gradients, a per-worker state<Buffer> listing its buffers, init() and
// sync(). The math is one DPPF_HOST_DEVICE functor, so the rule runs on every executor; the
// shared pieces (average_into_scratch, measure_distances) give it the mean, r_i, the relaxed MV
// and the non-finite policy for free. The program checks 4 workers against a double-precision
// replay of the same rule and exits non-zero on a mismatch.
#include <dppf/dppf.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

struct momentum_averaging {
  double mu = 0.5;  // step along the mean's progress since the previous sync

  static constexpr bool averages_gradients = false;  // parameters are averaged, not gradients

  template <class Buffer>
  struct state {
    Buffer previous_mean;                             // m, identical on every rank
    template <class F>
    void for_each_buffer(F&& f) { f("previous_mean", previous_mean); }  // checkpoints visit it
  };

  template <class T>
  struct update {  // the rule's math, once, for host and device
    T mu;
    DPPF_HOST_DEVICE void operator()(T& x, T& m, const T& mean) const {
      x = mean + mu * (mean - m);
      m = mean;
    }
  };

  template <class Ctx, class S>
  void init(Ctx& ctx, S& s) const {  // m starts at the initial mean
    s.previous_mean = ctx.ex.template allocate<typename Ctx::value_type>(ctx.params.size());
    ctx.comm.all_reduce(typename Ctx::const_view_type(ctx.params), dppf::view(s.previous_mean), dppf::reduce_op::avg);
  }

  template <class Ctx, class S>
  dppf::sync_report sync(Ctx& ctx, S& s) const {
    using T = typename Ctx::value_type;
    dppf::average_into_scratch(ctx);  // ctx.scratch <- x_bar
    dppf::sync_report report;
    dppf::distances d;  // r_i = ||x_i - x_bar|| and every rank's r_j
    if (!dppf::measure_distances(ctx, ctx.scratch, report, d)) return report;  // non-finite policy
    ctx.ex.transform(update<T>{static_cast<T>(mu)}, ctx.params, dppf::view(s.previous_mean),
                     typename Ctx::const_view_type(ctx.scratch));
    return report;
  }
};

int main() {
  constexpr int workers = 4, steps = 40, tau = 4;
  constexpr std::size_t n = 64;
  constexpr double lr = 0.1, mu = 0.5;
  auto target = [](int rank, std::size_t i) { return 0.01 * rank + 0.001 * static_cast<double>(i); };

  // dppf: each worker minimizes |x - c_rank|^2 / 2 with plain SGD, syncing with the new rule.
  std::vector<std::vector<float>> result(workers);
  dppf::thread_group group(workers);
  group.run([&](dppf::thread_communicator comm) {
    std::vector<float> x(n, 1.0f), g(n);
    dppf::trainer tr{dppf::sgd{{.lr = lr}}, momentum_averaging{mu}, comm, dppf::host_executor{}, {.tau = tau}};
    for (int s = 0; s < steps; ++s) {
      for (std::size_t i = 0; i < n; ++i) g[i] = x[i] - static_cast<float>(target(comm.rank(), i));
      tr.step(x, g);
    }
    result[static_cast<std::size_t>(comm.rank())] = x;
  });

  // The same in double, written out by hand.
  std::vector<std::vector<double>> x(workers, std::vector<double>(n, 1.0));
  std::vector<double> m(n, 1.0);
  for (int s = 0; s < steps; ++s) {
    for (int r = 0; r < workers; ++r)
      for (std::size_t i = 0; i < n; ++i) x[r][i] -= lr * (x[r][i] - target(r, i));
    if ((s + 1) % tau != 0) continue;
    for (std::size_t i = 0; i < n; ++i) {
      double mean = 0.0;
      for (int r = 0; r < workers; ++r) mean += x[r][i] / workers;
      for (int r = 0; r < workers; ++r) x[r][i] = mean + mu * (mean - m[i]);
      m[i] = mean;
    }
  }

  double worst = 0.0;
  for (int r = 0; r < workers; ++r)
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(result[r][i] - x[r][i]));
  std::printf("momentum_averaging: x[0][0] = %.6f (double replay %.6f), largest difference %.2e\n", result[0][0],
              x[0][0], worst);
  return worst < 1e-5 ? 0 : 1;
}
