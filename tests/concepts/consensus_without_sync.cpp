// A consensus rule without sync(): the trainer rejects it, naming the consensus concept.
#define DPPF_ARCHETYPE_WITHOUT_SYNC
#include <dppf/communicators/single.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include "archetypes.hpp"

int main() {
  dppf::trainer tr{dppf::sgd{}, dppf_test::archetype_consensus{}, dppf::single_communicator{}, dppf::host_executor{}};
  (void)tr;
}
