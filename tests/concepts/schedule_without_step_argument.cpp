// A schedule that cannot be called with a step: the trainer rejects it, naming lr_schedule.
#define DPPF_ARCHETYPE_WITHOUT_STEP_ARGUMENT
#include <dppf/communicators/single.hpp>
#include <dppf/consensus/local_sgd.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include "archetypes.hpp"

int main() {
  dppf::trainer tr{dppf::sgd{}, dppf::local_sgd{}, dppf::single_communicator{}, dppf::host_executor{}, {},
                   dppf_test::archetype_schedule{}};
  (void)tr;
}
