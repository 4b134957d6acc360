// An executor without synchronize(): dppf::fill rejects it, naming the executor concept.
#define DPPF_ARCHETYPE_WITHOUT_SYNCHRONIZE
#include <vector>

#include <dppf/algorithms.hpp>

#include "archetypes.hpp"

int main() {
  std::vector<float> x(4);
  dppf::fill(dppf_test::archetype_executor(0), x, 1.0f);
}
