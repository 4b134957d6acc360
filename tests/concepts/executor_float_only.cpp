// An executor that allocates float buffers only: optimizer state even for float parameters
// rejects it, naming the executor concept (a trainer may need double state too).
#define DPPF_ARCHETYPE_WITHOUT_DOUBLE_ALLOCATION
#include <vector>

#include <dppf/optimizers/sgd.hpp>

#include "archetypes.hpp"

int main() {
  const dppf_test::archetype_executor ex(0);
  std::vector<float> p(4), g(4);
  const dppf::sgd opt;
  auto s = opt.init(ex, p);
  opt.step(ex, p, g, s);
}
