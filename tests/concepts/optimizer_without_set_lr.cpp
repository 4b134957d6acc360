// A local optimizer without set_lr(): the trainer rejects it, naming the local_optimizer concept.
#define DPPF_ARCHETYPE_WITHOUT_SET_LR
#include <dppf/communicators/single.hpp>
#include <dppf/consensus/local_sgd.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/trainer.hpp>

#include "archetypes.hpp"

int main() {
  dppf::trainer tr{dppf_test::archetype_optimizer{0.1}, dppf::local_sgd{}, dppf::single_communicator{},
                   dppf::host_executor{}};
  (void)tr;
}
