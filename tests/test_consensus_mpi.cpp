// DPPF and LocalSGD through dppf::mpi_communicator, with real processes: each rank runs the trainer on its own
// data and the result is compared with the independent double reference, which every rank can
// compute because the scenario is generated from the seed alone. Also the error paths over MPI.

#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <dppf/consensus/local_sgd.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/executors/host_parallel.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include "consensus_reference.hpp"
#include "mpi_support.hpp"

using namespace dppf_test;

namespace {

using dppf_test::world_rank;
using dppf_test::world_size;

template <class T, class Rule>
std::vector<double> run_rank(const run_spec& s, const scenario& sc, Rule rule) {
  const auto r = static_cast<std::size_t>(world_rank());
  std::vector<T> x(sc.x0[r].begin(), sc.x0[r].end()), g(s.n);
  dppf::trainer tr{dppf::sgd{{.lr = 1.0}}, rule, dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_parallel_executor{}, {.tau = s.tau}};
  for (int t = 0; t < s.steps; ++t) {
    std::copy(sc.grads[t][r].begin(), sc.grads[t][r].end(), g.begin());
    tr.step(x, g, sc.losses[t][r]);
  }
  CHECK(tr.stats().syncs == s.steps / s.tau);
  return {x.begin(), x.end()};
}

template <class T, class Rule>
void check_over_mpi(const std::string& name, Rule rule, run_spec s) {
  s.workers = world_size();
  const auto sc = make_scenario(s, 2024);
  const auto want = run_reference(name, s, sc);
  const auto got = run_rank<T>(s, sc, rule);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  CHECK(max_relative_error({got}, {want[static_cast<std::size_t>(world_rank())]}) < tol);
}

}  // namespace

TEST_CASE_TEMPLATE("pull_push over mpi matches the independent double implementation", T, float, double) {
  check_over_mpi<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.2}}, {});
  check_over_mpi<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.2, .push = dppf::push_mode::inverse_mv}},
                    {.inverse_mv = true});
}

TEST_CASE_TEMPLATE("local_sgd over mpi matches the independent double implementation", T, float, double) {
  check_over_mpi<T>("local_sgd", dppf::local_sgd{}, {});
}

TEST_CASE("pull_push over mpi: NaN on one rank raises on every rank, with no hang") {
  std::vector<double> x(40, 1.0 + world_rank()), g(40, 0.0);
  if (world_rank() == 1 % world_size()) x[3] = std::numeric_limits<double>::quiet_NaN();
  dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::pull_push{}, dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_executor{}, {.tau = 1}};
  bool raised = false;
  try {
    tr.step(x, g);
  } catch (const dppf::non_finite_error& e) {
    raised = std::string(e.what()).find("non-finite parameters on rank(s) " + std::to_string(1 % world_size())) !=
             std::string::npos;
  }
  CHECK(raised);
}

TEST_CASE("pull_push over mpi: parameter sizes that differ across ranks raise on every rank") {
  std::vector<float> x(world_rank() == world_size() - 1 ? 9 : 8, 1.0f), g(x.size(), 0.0f);
  dppf::trainer tr{dppf::sgd{}, dppf::pull_push{}, dppf::mpi_communicator{MPI_COMM_WORLD}, dppf::host_executor{}};
  bool raised = false;
  try {
    tr.step(x, g);
  } catch (const std::invalid_argument& e) {
    raised = std::string(e.what()).find("sizes differ across ranks") != std::string::npos;
  }
  CHECK(raised == (world_size() > 1));
}
