// mpi_communicator::start_all_reduce (MPI_Iallreduce), run by mpiexec on 1, 3 and 4 processes:
// results against an independent double-precision sum of every rank's fresh random input (each
// rank generates all ranks' inputs from a seed rank 0 draws and broadcasts) and bit for bit
// identical on every rank; several outstanding handles; mismatched arguments raise at wait on
// every rank; real progress: test() turns true while the ranks do local work, before any wait.
#include <doctest/doctest.h>

#include <dppf/communicators/counting.hpp>
#include <dppf/communicators/mpi.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mpi_support.hpp"
#include "support.hpp"

namespace {

using dppf::reduce_op;
using dppf_test::check_throws_with;
using dppf_test::world_rank;
using dppf_test::world_size;

static_assert(dppf::async_communicator<dppf::mpi_communicator>);
static_assert(dppf::async_communicator<dppf::counting_communicator<dppf::mpi_communicator>>);

// A seed drawn afresh by rank 0 on every run and shared, so every rank knows every input.
std::uint64_t shared_seed() {
  std::uint64_t s = world_rank() == 0 ? std::random_device{}() * 7919ull + std::random_device{}() : 0;
  MPI_Bcast(&s, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return s;
}

std::vector<std::vector<float>> all_inputs(std::size_t n, std::uint64_t seed) {
  std::vector<std::vector<float>> in;
  for (int r = 0; r < world_size(); ++r) in.push_back(dppf_test::random_vector<float>(n, seed + static_cast<std::uint64_t>(r)));
  return in;
}

// Within M eps sum|x| of the exact (double) sum or mean, as the blocking all_reduce's tests
// require, and bit for bit the same on every rank (rank 0's copy broadcast and compared).
void check_result(const std::vector<float>& got, const std::vector<std::vector<float>>& in, reduce_op op) {
  const int m = world_size();
  const double scale = op == reduce_op::avg ? 1.0 / m : 1.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    double sum = 0.0, sum_abs = 0.0;
    for (const auto& x : in) {
      sum += x[i];
      sum_abs += std::abs(static_cast<double>(x[i]));
    }
    const double tol = m * std::numeric_limits<float>::epsilon() * sum_abs * scale;
    if (!(std::abs(got[i] - sum * scale) <= tol)) ++bad;
  }
  CHECK(bad == 0);
  std::vector<float> root = got;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  CHECK(std::memcmp(root.data(), got.data(), got.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("mpi start_all_reduce: results against a double reference, equal on every rank, several outstanding") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const std::uint64_t seed = shared_seed();
  INFO("seed = " << seed);
  const std::size_t n = 10007;
  const auto a_in = all_inputs(n, seed), b_in = all_inputs(n, seed + 1000);
  const auto r = static_cast<std::size_t>(comm.rank());
  std::vector<float> a = a_in[r], b(n, -1.0f), blocking(n);
  auto ha = comm.start_all_reduce(std::span<float>(a), reduce_op::avg);
  auto hb = comm.start_all_reduce(std::span<const float>(b_in[r]), std::span<float>(b), reduce_op::sum);
  hb.wait();
  ha.wait();
  check_result(a, a_in, reduce_op::avg);
  check_result(b, b_in, reduce_op::sum);
  // Against the blocking all_reduce: MPI may use another algorithm for MPI_Iallreduce, so the
  // bits may differ; report whether they do (the reference check above is the contract).
  comm.all_reduce(std::span<const float>(b_in[r]), std::span<float>(blocking), reduce_op::sum);
  const bool same = std::memcmp(blocking.data(), b.data(), n * sizeof(float)) == 0;
  if (comm.rank() == 0) MESSAGE("MPI_Iallreduce result bit-identical to MPI_Allreduce: " << std::string(same ? "yes" : "no"));
}

TEST_CASE("mpi start_all_reduce: mismatched arguments raise at wait on every rank") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  if (comm.size() < 2) return;
  std::vector<float> x(comm.rank() == 1 ? 9 : 8, 1.0f);
  auto h = comm.start_all_reduce(std::span<float>(x), reduce_op::sum);  // does not throw
  check_throws_with<dppf::invalid_argument_error>([&] { h.wait(); }, "buffer sizes differ across ranks");
  CHECK(x[0] == 1.0f);
  std::vector<float> y(4, 1.0f);
  auto g = comm.start_all_reduce(std::span<float>(y), comm.rank() == 1 ? reduce_op::min : reduce_op::sum);
  if (comm.rank() == 1)
    check_throws_with<dppf::invalid_argument_error>([&] { (void)g.test(); }, "supports sum and avg");
  else
    check_throws_with<dppf::communication_error>([&] { g.wait(); }, "rank 1 rejected its arguments");
  // Still usable afterwards.
  std::vector<float> z(3, 1.0f);
  comm.start_all_reduce(std::span<float>(z), reduce_op::sum).wait();
  CHECK(z[0] == static_cast<float>(comm.size()));
}

// Real progress: after the start every rank only computes and calls test(); the reduction must
// finish there, before any rank reaches wait(). A bounded loop (at most 60 s) so a lack of
// progress fails instead of hanging.
TEST_CASE("mpi start_all_reduce makes progress through test() while local work runs") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const std::size_t n = std::size_t{1} << 21;  // 8 MiB of floats
  std::vector<float> x(n, 1.0f);
  auto h = comm.start_all_reduce(std::span<float>(x), reduce_op::sum);
  std::vector<double> work(1 << 16, 1.0);
  bool done = false;
  long tests = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done && std::chrono::steady_clock::now() < deadline) {
    for (auto& w : work) w = std::sqrt(w * 1.0000001 + 1e-9);  // a "local step"
    done = h.test();
    ++tests;
  }
  CHECK(done);  // on every rank, before wait
  h.wait();
  MESSAGE("rank " << comm.rank() << ": complete after " << tests << " local steps with test()");
  std::size_t bad = 0;
  for (float v : x) bad += v != static_cast<float>(comm.size());
  CHECK(bad == 0);
}

TEST_CASE("counting<mpi> counts asynchronous all-reduces") {
  dppf::counting_communicator<dppf::mpi_communicator> comm(dppf::mpi_communicator(MPI_COMM_WORLD));
  std::vector<double> x(50, 1.0);
  comm.start_all_reduce(std::span<double>(x), reduce_op::avg).wait();
  CHECK(x[49] == 1.0);
  CHECK(comm.counts().async_buffer_all_reduces == 1);
  CHECK(comm.counts().bytes == 50 * sizeof(double));
}
