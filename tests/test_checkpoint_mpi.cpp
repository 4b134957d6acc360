// Checkpoints over dppf::mpi_communicator, run by mpiexec: every rank trains 2k steps uninterrupted, and k
// steps + save + restore into a fresh trainer + k steps, and the two agree bit for bit on every
// rank; a rank whose file is bad makes every rank raise checkpoint_error, without a hang and
// with nothing changed on any rank.

#include <doctest/doctest.h>

#include <dppf/optimizers/adamw.hpp>
#include <dppf/checkpoint/trainer_checkpoint.hpp>
#include <dppf/consensus/diloco.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

template <class T>
std::vector<T> gradient(const std::vector<T>& p, int step, int rank) {
  std::vector<T> g(p.size());
  for (std::size_t i = 0; i < p.size(); ++i)
    g[i] = static_cast<T>(std::sin(1.3 * static_cast<double>(p[i]) + 0.1 * step + 0.01 * static_cast<double>(i) +
                                   0.7 * rank) +
                          0.5 * static_cast<double>(p[i]));
  return g;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// A directory every rank agrees on (named after rank 0's process id), removed at the end.
struct shared_dir {
  std::filesystem::path path;
  dppf::mpi_communicator& comm;
  explicit shared_dir(dppf::mpi_communicator& c) : comm(c) {
    const auto pids = comm.all_gather(static_cast<double>(::getpid()));
    path = std::filesystem::temp_directory_path() /
           ("dppf-checkpoint-mpi-" + std::to_string(static_cast<long>(pids[0])) + "-" + std::to_string(comm.size()));
    if (comm.rank() == 0) std::filesystem::create_directories(path);
    comm.barrier();
  }
  ~shared_dir() {
    comm.barrier();
    std::error_code ec;
    if (comm.rank() == 0) std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path file(int rank) const { return path / ("ckpt-" + std::to_string(rank) + ".safetensors"); }
};

template <class T, class Make>
void check_resume(Make make, int k) {
  dppf::mpi_communicator world(MPI_COMM_WORLD);
  shared_dir dir(world);
  const int r = world.rank();
  const auto x0 = dppf_test::random_vector<T>(31, 500 + static_cast<std::uint64_t>(r));

  auto full = make();
  auto x = x0;
  for (int t = 0; t < 2 * k; ++t) full.step(x, gradient(x, t, r), 0.1 * t + r);

  {
    auto first = make();
    auto y = x0;
    for (int t = 0; t < k; ++t) first.step(y, gradient(y, t, r), 0.1 * t + r);
    dppf::save_trainer(dir.file(r), first, y);
  }
  auto resumed = make();
  std::vector<T> z(x0.size(), T(7));
  dppf::load_trainer(dir.file(r), resumed, z);
  for (int t = k; t < 2 * k; ++t) resumed.step(z, gradient(z, t, r), 0.1 * t + r);

  CHECK(same_bits(z, x));
  CHECK(resumed.steps() == full.steps());
  CHECK(resumed.syncs() == full.syncs());
  auto* a = dppf::detail::trainer_access::workspace<T>(resumed);
  auto* b = dppf::detail::trainer_access::workspace<T>(full);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  std::vector<std::vector<double>> sa, sb;
  a->optimizer_state.for_each_buffer([&](const char*, auto& buf) { sa.emplace_back(buf.begin(), buf.end()); });
  b->optimizer_state.for_each_buffer([&](const char*, auto& buf) { sb.emplace_back(buf.begin(), buf.end()); });
  a->rule_state.for_each_buffer([&](const char*, auto& buf) { sa.emplace_back(buf.begin(), buf.end()); });
  b->rule_state.for_each_buffer([&](const char*, auto& buf) { sb.emplace_back(buf.begin(), buf.end()); });
  REQUIRE(sa.size() == sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) CHECK(same_bits(sa[i], sb[i]));
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint of a trainer resumes bit for bit through mpi", T, float, double) {
  SUBCASE("pull_push with sgd") {
    check_resume<T>([] {
      return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::pull_push{{.alpha = 0.3, .lambda = 0.05}},
                           dppf::mpi_communicator(MPI_COMM_WORLD), dppf::host_executor{}, dppf::trainer_options{.tau = 3}};
    }, 7);
  }
  SUBCASE("diloco with adamw") {
    check_resume<T>([] {
      return dppf::trainer{dppf::adamw{{.lr = 0.01}}, dppf::diloco{}, dppf::mpi_communicator(MPI_COMM_WORLD), dppf::host_executor{},
                           dppf::trainer_options{.tau = 2}};
    }, 5);
  }
}

TEST_CASE("checkpoint restore over mpi fails on every rank, without a hang, when the last rank's file is bad") {
  dppf::mpi_communicator world(MPI_COMM_WORLD);
  shared_dir dir(world);
  const int r = world.rank(), last = world.size() - 1;
  auto make = [] {
    return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::pull_push{}, dppf::mpi_communicator(MPI_COMM_WORLD),
                         dppf::host_executor{}, dppf::trainer_options{.tau = 2}};
  };
  {
    auto tr = make();
    auto x = dppf_test::random_vector<float>(17, 900 + static_cast<std::uint64_t>(r));
    for (int t = 0; t < 3; ++t) tr.step(x, gradient(x, t, r));
    dppf::save_trainer(dir.file(r), tr, x);
  }
  world.barrier();
  if (r == last) std::filesystem::resize_file(dir.file(r), std::filesystem::file_size(dir.file(r)) - 1);
  world.barrier();

  auto tr = make();
  std::vector<float> x(17, 3.0f);
  std::string error;
  try {
    dppf::load_trainer(dir.file(r), tr, x);
  } catch (const dppf::checkpoint_error& e) {
    error = e.what();
  }
  INFO("rank " << r << ": " << error);
  if (r == last) {
    CHECK(error.find("run past the data area") != std::string::npos);
  } else {
    CHECK(error.find("rank(s) " + std::to_string(last) + " could not restore their checkpoint") != std::string::npos);
  }
  CHECK(x == std::vector<float>(17, 3.0f));
  CHECK(tr.steps() == 0);
  CHECK(dppf::detail::trainer_access::workspace<float>(tr) == nullptr);
}

TEST_CASE("checkpoint restore over mpi of a bad diloco state on the last rank changes nothing on any rank") {
  // The fresh trainer's workspace (DiLoCo's global model: an all-reduce over the processes) is
  // built before the bad buffer can be found; it must not stay behind on any rank.
  dppf::mpi_communicator world(MPI_COMM_WORLD);
  shared_dir dir(world);
  const int r = world.rank(), last = world.size() - 1;
  auto make = [] {
    return dppf::trainer{dppf::sgd{{.lr = 0.05, .momentum = 0.9}}, dppf::diloco{}, dppf::mpi_communicator(MPI_COMM_WORLD),
                         dppf::host_executor{}, dppf::trainer_options{.tau = 2}};
  };
  {
    auto tr = make();
    auto x = dppf_test::random_vector<float>(17, 950 + static_cast<std::uint64_t>(r));
    for (int t = 0; t < 3; ++t) tr.step(x, gradient(x, t, r));
    const dppf::safetensors f = dppf::save_trainer(tr, x);
    dppf::safetensors g;
    for (const auto& [k, v] : f.metadata()) g.set_metadata(k, v);
    for (const auto& [name, info] : f.tensors())
      if (r != last || name != "consensus.global") g.add_bytes(name, info.type, info.shape, f.bytes(name));
    if (r == last) g.add("consensus.global", std::vector<float>(18));
    g.save(dir.file(r));
  }
  world.barrier();

  auto tr = make();
  std::vector<float> x(17, 3.0f);
  std::string error;
  try {
    dppf::load_trainer(dir.file(r), tr, x);
  } catch (const dppf::checkpoint_error& e) {
    error = e.what();
  }
  INFO("rank " << r << ": " << error);
  if (r == last)
    CHECK(error.find("tensor 'consensus.global' has 18 elements (shape [18]), the live buffer has 17") != std::string::npos);
  else
    CHECK(error.find("rank(s) " + std::to_string(last) + " could not restore their checkpoint") != std::string::npos);
  CHECK(x == std::vector<float>(17, 3.0f));
  CHECK(tr.steps() == 0);
  CHECK(dppf::detail::trainer_access::workspace<float>(tr) == nullptr);
}
