// Compressed sync over mpi_communicator (MPI_Alltoall / MPI_Allgather of 16-bit words), run by
// mpiexec on 2, 3 and 4 processes: the exchange collectives against closed-form blocks, the
// compressed mean against the independent replay of compression_reference.hpp (each rank builds
// every rank's fresh random input from a seed rank 0 draws), every element, bit for bit on every
// rank; bad arguments raise on every rank; the trainer's compressed LocalSGD over MPI.
#include <doctest/doctest.h>

#include <dppf/communicators/counting.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/compression.hpp>
#include <dppf/consensus.hpp>
#include <dppf/executors.hpp>
#include <dppf/optimizers.hpp>
#include <dppf/trainer.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "compression_reference.hpp"
#include "mpi_support.hpp"
#include "support.hpp"

namespace {

using dppf_test::check_throws_with;
using dppf_test::world_rank;
using dppf_test::world_size;

static_assert(dppf::exchange_communicator<dppf::mpi_communicator>);
static_assert(dppf::exchange_communicator<dppf::counting_communicator<dppf::mpi_communicator>>);

std::uint64_t shared_seed() {
  std::uint64_t s = world_rank() == 0 ? dppf_test::compression_seed() : 0;
  MPI_Bcast(&s, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return s;
}

}  // namespace

TEST_CASE("compressed sync over MPI: all_to_all and all_gather of words") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const auto m = static_cast<std::size_t>(comm.size()), r = static_cast<std::size_t>(comm.rank());
  const std::size_t block = 7;
  std::vector<std::uint16_t> in(block * m), out(in.size());
  for (std::size_t k = 0; k < in.size(); ++k) in[k] = static_cast<std::uint16_t>(1000 * r + k);
  comm.all_to_all(in, out);
  for (std::size_t j = 0; j < m; ++j)
    for (std::size_t t = 0; t < block; ++t) CHECK(out[j * block + t] == 1000 * j + r * block + t);
  std::vector<std::uint16_t> mine(block, static_cast<std::uint16_t>(r)), all(block * m);
  comm.all_gather(mine, all);
  for (std::size_t k = 0; k < all.size(); ++k) CHECK(all[k] == k / block);
  // Started (MPI_Ialltoall, MPI_Iallgather), both outstanding at once: the same results.
  std::vector<std::uint16_t> out2(out.size()), all2(all.size());
  auto a = comm.start_all_to_all(in, out2);
  auto g = comm.start_all_gather(mine, all2);
  while (!a.test()) {
  }
  g.wait();
  CHECK(out2 == out);
  CHECK(all2 == all);
  static_assert(dppf::async_exchange_communicator<dppf::mpi_communicator>);
}

TEST_CASE("compressed sync over MPI: bad arguments raise on every rank") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const auto m = static_cast<std::size_t>(comm.size());
  std::vector<std::uint16_t> mine(comm.rank() == 0 ? 3 : 4), all(mine.size() * m);
  if (m > 1) check_throws_with<dppf::invalid_argument_error>([&] { comm.all_gather(mine, all); }, "buffer sizes differ across ranks");
  std::vector<std::uint16_t> in(m + (comm.rank() == 0 && m > 1 ? 1 : 0)), out(in.size());
  if (m > 1) {
    bool raised = false;
    try {
      comm.all_to_all(in, out);
    } catch (const dppf::invalid_argument_error&) {
      raised = comm.rank() == 0;
    } catch (const dppf::communication_error&) {
      raised = comm.rank() != 0;
    }
    CHECK(raised);
  }
}

TEST_CASE("compressed sync over MPI: the mean equals the independent replay, every element, every rank") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const int m = comm.size();
  const std::uint64_t seed = shared_seed();
  INFO("seed = " << seed);
  for (std::size_t n : {std::size_t{3}, std::size_t{1000}}) {
    CAPTURE(n);
    constexpr int syncs = 5;
    std::vector<std::vector<std::vector<float>>> x(syncs + 1);
    for (int s = 0; s <= syncs; ++s)
      for (int i = 0; i < m; ++i) {
        auto v = dppf_test::random_vector<float>(n, seed + 1000u * static_cast<std::uint64_t>(s) + static_cast<std::uint64_t>(i), 0.05);
        for (std::size_t k = 0; k < n; ++k) v[k] += static_cast<float>(k % 13) + 0.1f * static_cast<float>(s);
        x[static_cast<std::size_t>(s)].push_back(v);
      }
    const auto i = static_cast<std::size_t>(comm.rank());
    dppf::compressed_mean<float> cm(comm, std::span<const float>(x[0][i]), {.precision = dppf::sync_precision::bf16});
    // r0 is MPI's mean (its own summation order); the replay starts from it, checked close to exact.
    std::vector<float> r0(cm.reference().begin(), cm.reference().end());
    for (std::size_t k = 0; k < n; ++k) {
      double sum = 0.0;
      for (int j = 0; j < m; ++j) sum += x[0][static_cast<std::size_t>(j)][k];
      CHECK(r0[k] == doctest::Approx(sum / m).epsilon(1e-6));
    }
    dppf_test::compressed_sync_reference<float> ref(dppf_test::reference_bf16(), static_cast<std::size_t>(m), r0);
    for (int s = 1; s <= syncs; ++s) {
      std::vector<float> mean(n);
      const std::span<const float> xs(x[static_cast<std::size_t>(s)][i]);
      if (s % 2 == 0) {  // started (an overlapped sync's way)
        auto flight = cm.start(comm, xs);
        (void)flight.test();  // progress, as the trainer's poll makes it
        cm.gather(comm, flight);
        CHECK(cm.finish(comm, flight, xs, std::span<float>(mean)));
      } else {
        CHECK(cm(comm, xs, std::span<float>(mean)));
      }
      const std::vector<float> want = ref.sync(x[static_cast<std::size_t>(s)]);
      for (std::size_t k = 0; k < n; ++k) {
        CAPTURE(k);
        REQUIRE(mean[k] == want[k]);
      }
    }
    CHECK(std::vector<float>(cm.residual().begin(), cm.residual().end()) == ref.residual[i]);
    CHECK(std::vector<float>(cm.owner_residual().begin(), cm.owner_residual().end()) == ref.owner_residual[i]);
  }
}

TEST_CASE("compressed sync over MPI: LocalSGD with fp16 through the trainer, same bits on every rank") {
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const auto r = static_cast<std::uint64_t>(comm.rank());
  std::vector<float> x(40, 0.5f), g(40);
  const auto target = dppf_test::random_vector<float>(40, 99 + r);
  dppf::trainer tr{dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, comm, dppf::host_executor{},
                   {.tau = 4, .sync_precision = dppf::sync_precision::fp16}};
  for (int t = 0; t < 40; ++t) {
    for (std::size_t k = 0; k < x.size(); ++k) g[k] = x[k] - target[k];
    tr.step(x, g);
  }
  CHECK(tr.comm().counts().all_to_alls == 10);
  // After LocalSGD's sync every rank holds the same mean: rank 0's bits, broadcast, compare.
  std::vector<float> root = x;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  CHECK(root == x);
}

TEST_CASE("compressed sync over MPI: overlapped (d = 2) with fp16, the same sync as the blocking one applied 2 steps later") {
  // Gradients that do not depend on x: local progress is the same whatever the syncs did, so the
  // overlapped run's parameters after the last due step are the blocking run's plus the
  // progress of the 2 steps since the snapshot, and every rank's snapshot mean is the same.
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  const auto r = static_cast<std::uint64_t>(comm.rank());
  const auto g = dppf_test::random_vector<float>(40, 7 + r);
  const auto x0 = dppf_test::random_vector<float>(40, 3 + r);
  const auto train = [&](std::int64_t d, int steps) {
    std::vector<float> x = x0;
    dppf::trainer tr{dppf::sgd{{.lr = 0.125}}, dppf::local_sgd{}, comm, dppf::host_executor{},
                     {.tau = 4, .overlap_steps = d, .sync_precision = dppf::sync_precision::fp16}};
    for (int t = 0; t < steps; ++t) tr.step(x, g);
    CHECK_FALSE(tr.sync_in_flight());
    CHECK(tr.comm().counts().all_to_alls == static_cast<std::uint64_t>(steps / 4));
    return x;
  };
  const std::vector<float> blocking = train(0, 40), overlapped = train(2, 42);
  // local_sgd delayed: x <- mean(s) + (x - s) = the blocking result + 2 more steps of -lr g, up
  // to the fp16 rounding the two runs' residuals still hold (about 1e-3 here; the delay itself
  // moves x by 0.25 |g|).
  for (std::size_t k = 0; k < g.size(); ++k) {
    CAPTURE(k);
    CHECK(std::fabs(overlapped[k] - (blocking[k] - 2 * 0.125f * g[k])) < 5e-3);
  }
  std::vector<float> root = overlapped;
  for (std::size_t k = 0; k < g.size(); ++k) root[k] += 2 * 0.125f * g[k];
  std::vector<float> root0 = root;
  MPI_Bcast(root0.data(), static_cast<int>(root0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  for (std::size_t k = 0; k < g.size(); ++k) CHECK(root0[k] == doctest::Approx(root[k]).epsilon(1e-5));
}
