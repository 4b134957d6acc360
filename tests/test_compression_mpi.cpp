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
      CHECK(cm(comm, std::span<const float>(x[static_cast<std::size_t>(s)][i]), std::span<float>(mean)));
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
