// Optimizer state made for float (init's count-only form defaults to float) stepped with double
// parameters: a compile-time error naming both element types, at the step.
#include <cstddef>
#include <vector>

#include <dppf/executors/host.hpp>
#include <dppf/optimizers/adamw.hpp>
#include <dppf/optimizers/sgd.hpp>

int main() {
  const dppf::host_executor ex;
  std::vector<double> p(4), g(4);
#if defined(DPPF_COMPLETE)
  auto s = dppf::sgd{}.init<double>(ex, p.size());
  auto a = dppf::adamw{}.init(ex, p);
#else
  auto s = dppf::sgd{}.init(ex, p.size());
  auto a = dppf::adamw{}.init<float>(ex, p.size());
#endif
  dppf::sgd{}.step(ex, p, g, s);
  dppf::adamw{}.step(ex, p, g, a);
}
