// dppf::mpi_communicator, run by mpiexec on 1, 3 and 4 processes: every collective against an independent
// double-precision computation of every rank's data (each rank generates all ranks' inputs from
// fixed seeds), results identical on every rank, argument errors raised on every rank without a
// hang, MPI error codes turned into exceptions, the duplicated communicator's lifetime, and
// counting<mpi>. Checks against MPI itself use raw MPI calls on MPI_COMM_WORLD.
#include <doctest/doctest.h>

#include <dppf/consensus/pull_push.hpp>
#include <dppf/communicators/counting.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/communicators/mpi.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/trainer.hpp>

#include <unistd.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "mpi_support.hpp"
#include "support.hpp"

namespace {

using dppf::reduce_op;
using dppf_test::check_throws_with;

using dppf_test::world_rank;
using dppf_test::world_size;

template <class T>
MPI_Datatype world_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

// Every rank's input, generated on every rank, with the exact double sum and the sum of
// magnitudes of each element over ranks.
template <class T>
struct group_data {
  std::vector<std::vector<T>> input;  // input[r] is rank r's buffer
  std::vector<double> sum, sum_abs;
};

template <class T>
group_data<T> make_group_data(std::size_t n, std::uint64_t seed, int m) {
  group_data<T> d;
  for (int r = 0; r < m; ++r) d.input.push_back(dppf_test::random_vector<T>(n, seed * 7919 + static_cast<std::uint64_t>(r)));
  d.sum.assign(n, 0.0);
  d.sum_abs.assign(n, 0.0);
  for (int r = 0; r < m; ++r)
    for (std::size_t i = 0; i < n; ++i) {
      d.sum[i] += static_cast<double>(d.input[static_cast<std::size_t>(r)][i]);
      d.sum_abs[i] += std::abs(static_cast<double>(d.input[static_cast<std::size_t>(r)][i]));
    }
  return d;
}

// MPI adds M values in T in its own order: the error is at most (M - 1) u sum|x|, plus one
// rounding of the 1/M scaling for avg. The bound checked, M eps sum|x| (= 2 M u sum|x|), covers
// both and is still far below the magnitude of any wrong value.
template <class T>
void check_reduced(const std::vector<T>& got, const group_data<T>& d, reduce_op op, int m) {
  const double eps = std::numeric_limits<T>::epsilon();
  const double scale = op == reduce_op::avg ? 1.0 / m : 1.0;
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double expected = d.sum[i] * scale;
    const double tol = m * eps * d.sum_abs[i] * scale;
    if (!(std::abs(static_cast<double>(got[i]) - expected) <= tol) && bad++ == 0) first = i;
  }
  REQUIRE(got.size() == d.sum.size());
  CHECK_MESSAGE(bad == 0, bad << " of " << got.size() << " elements wrong; first at " << first << ": got "
                              << (got.empty() ? 0.0 : static_cast<double>(got[first])) << ", expected "
                              << (d.sum.empty() ? 0.0 : d.sum[first] * scale));
}

// True on every rank iff every rank holds exactly rank 0's values (checked with raw MPI).
template <class T>
bool same_on_all_ranks(const std::vector<T>& v) {
  std::vector<T> root = v;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), world_type<T>(), 0, MPI_COMM_WORLD);
  int same = v.empty() || std::memcmp(root.data(), v.data(), v.size() * sizeof(T)) == 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return same == 1;
}

// A collective after an error must still line up on every rank.
void check_still_in_step(dppf::mpi_communicator& comm) {
  CHECK(comm.all_reduce(1.0, reduce_op::sum) == comm.size());
}

int deletions = 0;
int count_deletion(MPI_Comm, int, void*, void*) {
  ++deletions;
  return MPI_SUCCESS;
}

const std::size_t sizes[] = {0, 1, 7, 1000003};

}  // namespace

TEST_CASE("mpi models the communicator concept and duplicates the communicator it is given") {
  static_assert(dppf::communicator<dppf::mpi_communicator>);
  static_assert(dppf::communicator<dppf::counting_communicator<dppf::mpi_communicator>>);

  MPI_Errhandler world_before = MPI_ERRHANDLER_NULL, world_after = MPI_ERRHANDLER_NULL, dup = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &world_before);
  {
    dppf::mpi_communicator comm{MPI_COMM_WORLD};
    CHECK(comm.rank() == world_rank());
    CHECK(comm.size() == world_size());
    CHECK(comm.native_handle() != MPI_COMM_WORLD);
    int cmp = MPI_UNEQUAL;
    MPI_Comm_compare(comm.native_handle(), MPI_COMM_WORLD, &cmp);
    CHECK(cmp == MPI_CONGRUENT);
    MPI_Comm_get_errhandler(comm.native_handle(), &dup);
    CHECK(dup == MPI_ERRORS_RETURN);
  }
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &world_after);
  CHECK(world_after == world_before);  // the caller's error handler is left alone
  MPI_Errhandler_free(&world_before);
  MPI_Errhandler_free(&world_after);
  MPI_Errhandler_free(&dup);
}

TEST_CASE("mpi copies share one duplicated communicator, freed with the last copy") {
  int key = MPI_KEYVAL_INVALID;
  MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, count_deletion, &key, nullptr);
  deletions = 0;
  {
    dppf::mpi_communicator a{MPI_COMM_WORLD};
    MPI_Comm_set_attr(a.native_handle(), key, nullptr);  // its delete callback runs when the comm is freed
    {
      dppf::mpi_communicator b = a;
      CHECK(b.native_handle() == a.native_handle());
      CHECK(b.all_reduce(2.0, reduce_op::sum) == 2.0 * world_size());
    }
    CHECK(deletions == 0);
    dppf::counting_communicator<dppf::mpi_communicator> counted{a};  // by value, as the trainer holds its communicator
    CHECK(counted.inner().native_handle() == a.native_handle());
  }
  CHECK(deletions == 1);
  MPI_Comm_free_keyval(&key);
}

TEST_CASE_TEMPLATE("mpi all_reduce of buffers matches a double-precision sum on every element", T, float, double) {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  std::uint64_t seed = 11;
  for (std::size_t n : sizes) {
    const auto d = make_group_data<T>(n, seed++, m);
    const std::vector<T>& mine = d.input[static_cast<std::size_t>(rank)];
    for (reduce_op op : {reduce_op::sum, reduce_op::avg}) {
      CAPTURE(n);
      CAPTURE(dppf::to_string(op));
      {  // out of place, from a const std::vector into a std::span
        std::vector<T> out(n, T(-7));
        comm.all_reduce(mine, std::span<T>(out), op);
        check_reduced(out, d, op, m);
        CHECK(mine == d.input[static_cast<std::size_t>(rank)]);  // input untouched
        CHECK(same_on_all_ranks(out));
      }
      {  // in place
        std::vector<T> buf = mine;
        comm.all_reduce(buf, op);
        check_reduced(buf, d, op, m);
        CHECK(same_on_all_ranks(buf));
      }
      {  // out of place with in == out runs in place
        std::vector<T> buf = mine;
        comm.all_reduce(std::span<const T>(buf), buf, op);
        check_reduced(buf, d, op, m);
      }
    }
  }
}

TEST_CASE_TEMPLATE("mpi splits buffers larger than max_elements_per_call into several calls", T, float, double) {
  const int m = world_size(), rank = world_rank();
  // 1000003 = 3 * 300000 + 100003 and 7 = 3 * 2 + 1: full chunks and a remainder.
  for (const auto& n_chunk : {std::pair<std::size_t, std::size_t>{1000003, 300000}, {7, 2}, {7, 7}, {7, 1}}) {
    const std::size_t n = n_chunk.first, chunk = n_chunk.second;
    CAPTURE(n);
    CAPTURE(chunk);
    dppf::mpi_communicator comm{MPI_COMM_WORLD, {.max_elements_per_call = chunk}};
    const auto d = make_group_data<T>(n, 100 + n + chunk, m);
    std::vector<T> out(n);
    comm.all_reduce(d.input[static_cast<std::size_t>(rank)], out, reduce_op::avg);
    check_reduced(out, d, reduce_op::avg, m);
    std::vector<T> buf = d.input[static_cast<std::size_t>(rank)];
    comm.all_reduce(buf, reduce_op::sum);
    check_reduced(buf, d, reduce_op::sum, m);
    buf = d.input[static_cast<std::size_t>(rank)];
    comm.broadcast(buf, m - 1);
    CHECK(buf == d.input[static_cast<std::size_t>(m - 1)]);
  }
}

TEST_CASE("mpi all_reduce of a scalar: sum, avg, min and max over ranks") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    const auto values = dppf_test::random_vector<double>(static_cast<std::size_t>(m), seed, 100.0);
    double sum = 0.0, sum_abs = 0.0, lo = values[0], hi = values[0];
    for (double v : values) {
      sum += v;
      sum_abs += std::abs(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const double mine = values[static_cast<std::size_t>(rank)];
    const double eps = std::numeric_limits<double>::epsilon();
    const double got_sum = comm.all_reduce(mine, reduce_op::sum);
    const double got_avg = comm.all_reduce(mine, reduce_op::avg);
    CHECK(std::abs(got_sum - sum) <= m * eps * sum_abs);
    CHECK(std::abs(got_avg - sum / m) <= m * eps * sum_abs / m);
    CHECK(comm.all_reduce(mine, reduce_op::min) == lo);
    CHECK(comm.all_reduce(mine, reduce_op::max) == hi);
    CHECK(same_on_all_ranks(std::vector<double>{got_sum, got_avg}));
  }
}

TEST_CASE("mpi all_gather of a scalar returns every rank's value in rank order") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  const auto values = dppf_test::random_vector<double>(static_cast<std::size_t>(m), 5);
  const std::vector<double> got = comm.all_gather(values[static_cast<std::size_t>(rank)]);
  CHECK(got == values);
}

TEST_CASE_TEMPLATE("mpi broadcast copies the root's buffer to every rank", T, float, double) {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  for (std::size_t n : sizes) {
    const auto d = make_group_data<T>(n, 40 + n, m);
    for (int root : {0, m / 2, m - 1}) {
      CAPTURE(n);
      CAPTURE(root);
      std::vector<T> buf = d.input[static_cast<std::size_t>(rank)];
      comm.broadcast(std::span<T>(buf), root);
      CHECK(buf == d.input[static_cast<std::size_t>(root)]);  // every element, exactly
    }
  }
}

TEST_CASE("mpi barrier returns only after every rank has arrived") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  // Each rank creates a file (later ranks later) and then waits at the barrier; after it, every
  // file must exist. Without a real barrier rank 0 would look before the others wrote.
  long long id = static_cast<long long>(::getpid());
  MPI_Bcast(&id, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  const auto dir = std::filesystem::temp_directory_path() / ("dppf_mpi_barrier_" + std::to_string(id));
  if (rank == 0) std::filesystem::create_directories(dir);
  MPI_Barrier(MPI_COMM_WORLD);
  std::this_thread::sleep_for(std::chrono::milliseconds(50 * rank));
  std::ofstream(dir / std::to_string(rank)) << rank;
  comm.barrier();
  for (int r = 0; r < m; ++r) CHECK(std::filesystem::exists(dir / std::to_string(r)));
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("mpi all_reduce of a buffer rejects min and max on every rank") {
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  std::vector<float> in(7, 1.0f), out(7, 0.0f);
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(in, out, reduce_op::min); },
                                           "mpi::all_reduce of a buffer supports sum and avg, not min");
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(out, reduce_op::max); },
                                           "mpi::all_reduce of a buffer supports sum and avg, not max");
  CHECK(out == std::vector<float>(7, 0.0f));  // nothing changed
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(1.0, static_cast<reduce_op>(42)); },
                                           "mpi::all_reduce: invalid reduce_op 42 for a scalar");
  check_still_in_step(comm);
}

TEST_CASE("mpi all_reduce with an output of the wrong size on one rank raises on every rank") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  const int bad = m - 1;
  std::vector<double> in(7, 1.0), out(rank == bad ? 8 : 7, 0.0);
  if (rank == bad)
    check_throws_with<std::invalid_argument>([&] { comm.all_reduce(in, out, reduce_op::sum); },
                                             "mpi::all_reduce output has 8 elements, expected 7 (the input's size)");
  else
    check_throws_with<dppf::communication_error>([&] { comm.all_reduce(in, out, reduce_op::sum); },
                                                 "dppf: mpi::all_reduce: rank " + std::to_string(bad) +
                                                     " rejected its arguments, so rank " + std::to_string(rank) + " stops too");
  CHECK(out == std::vector<double>(out.size(), 0.0));
  check_still_in_step(comm);
}

TEST_CASE("mpi all_reduce rejects partially overlapping input and output") {
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  std::vector<float> v(10, 1.0f);
  check_throws_with<std::invalid_argument>(
      [&] { comm.all_reduce(std::span<const float>(v.data(), 5), std::span<float>(v.data() + 2, 5), reduce_op::sum); },
      "mpi::all_reduce: the input and output buffers overlap");
  CHECK(v == std::vector<float>(10, 1.0f));
  check_still_in_step(comm);
}

TEST_CASE("mpi buffer sizes that differ across ranks raise on every rank, without a hang") {
  const int m = world_size(), rank = world_rank();
  if (m < 2) return;
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  const int bad = m - 1;
  const std::size_t n = rank == bad ? 8 : 7;
  const std::string sizes_msg = "buffer sizes differ across ranks (rank 0 has 7 elements of 4 bytes, rank " +
                                std::to_string(bad) + " has 8 elements of 4 bytes; this is rank " + std::to_string(rank) + ")";
  std::vector<float> in(n, 1.0f), out(n, 0.0f);
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(in, out, reduce_op::avg); }, "mpi::all_reduce: " + sizes_msg);
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(out, reduce_op::sum); }, "mpi::all_reduce: " + sizes_msg);
  check_throws_with<std::invalid_argument>([&] { comm.broadcast(out, 0); }, "mpi::broadcast: " + sizes_msg);
  CHECK(out == std::vector<float>(n, 0.0f));

  // Same count, different element type on one rank.
  std::vector<float> f(7, 1.0f);
  std::vector<double> g(7, 1.0);
  const std::string types_msg = "mpi::all_reduce: buffer sizes differ across ranks (rank 0 has 7 elements of 4 bytes, rank " +
                                std::to_string(bad) + " has 7 elements of 8 bytes";
  if (rank == bad)
    check_throws_with<std::invalid_argument>([&] { comm.all_reduce(g, reduce_op::sum); }, types_msg);
  else
    check_throws_with<std::invalid_argument>([&] { comm.all_reduce(f, reduce_op::sum); }, types_msg);

  // The generic helpers of communicator.hpp work over mpi too.
  check_throws_with<std::invalid_argument>([&] { dppf::require_same_size_on_all_ranks(comm, n, "params"); },
                                           "params: sizes differ across ranks (rank 0 has 7, rank " + std::to_string(bad) + " has 8");
  check_still_in_step(comm);
}

TEST_CASE("mpi agree_or_throw raises on every rank when one rank failed") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  const int bad = m / 2;
  if (rank == bad)
    check_throws_with<std::invalid_argument>([&] { dppf::agree_or_throw(comm, true, "bad input here"); }, "bad input here");
  else
    check_throws_with<dppf::communication_error>([&] { dppf::agree_or_throw(comm, false, "bad input here"); },
                                                 "another rank failed");
  CHECK_NOTHROW(dppf::agree_or_throw(comm, false, "nothing wrong"));
}

TEST_CASE("mpi broadcast rejects a root out of range or roots that differ across ranks") {
  const int m = world_size(), rank = world_rank();
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  std::vector<double> buf(7, static_cast<double>(rank));
  check_throws_with<std::invalid_argument>([&] { comm.broadcast(buf, m); },
                                           "mpi::broadcast: root " + std::to_string(m) + " is outside [0, " + std::to_string(m) + ")");
  check_throws_with<std::invalid_argument>([&] { comm.broadcast(buf, -1); },
                                           "mpi::broadcast: root -1 is outside [0, " + std::to_string(m) + ")");
  if (m >= 2) {
    const int root = rank == m - 1 ? 1 : 0;
    check_throws_with<std::invalid_argument>([&] { comm.broadcast(buf, root); },
                                             "mpi::broadcast: roots differ across ranks (rank 0 has root 0, rank " +
                                                 std::to_string(m - 1) + " has root 1; this is rank " + std::to_string(rank) + ")");
  }
  CHECK(buf == std::vector<double>(7, static_cast<double>(rank)));
  check_still_in_step(comm);
}

TEST_CASE("mpi buffer all_reduce with a reduce_op, or a collective, that differs across ranks raises on every rank") {
  const int m = world_size(), rank = world_rank();
  if (m < 2) return;
  dppf::mpi_communicator comm{MPI_COMM_WORLD};
  std::vector<float> buf(7, 1.0f);
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(buf, rank == m - 1 ? reduce_op::avg : reduce_op::sum); },
                                           "mpi::all_reduce: reduce_ops differ across ranks (rank 0 has reduce_op sum, rank " +
                                               std::to_string(m - 1) + " has reduce_op avg; this is rank " + std::to_string(rank) + ")");
  const auto mixed = [&] {
    if (rank == 0)
      comm.broadcast(buf, 0);
    else
      comm.all_reduce(buf, reduce_op::sum);
  };
  check_throws_with<std::invalid_argument>(mixed, "collectives differ across ranks (rank 0 called broadcast, rank 1 called all_reduce of a buffer");
  CHECK(buf == std::vector<float>(7, 1.0f));
  check_still_in_step(comm);
}

TEST_CASE("mpi with check_arguments off raises local errors without communicating") {
  dppf::mpi_communicator comm{MPI_COMM_WORLD, {.check_arguments = false}};
  std::vector<float> in(7, 1.0f), out(6, 0.0f);
  // Every rank makes the same mistake here; with checks off nobody waits for the others.
  check_throws_with<std::invalid_argument>([&] { comm.all_reduce(in, out, reduce_op::sum); }, "output has 6 elements, expected 7");
  check_throws_with<std::invalid_argument>([&] { comm.broadcast(in, comm.size()); }, "is outside [0, ");
  std::vector<float> buf(7, 1.0f);
  comm.all_reduce(buf, reduce_op::sum);
  CHECK(buf == std::vector<float>(7, static_cast<float>(comm.size())));
}

TEST_CASE("mpi options and arguments are validated at construction") {
  check_throws_with<std::invalid_argument>([] { dppf::mpi_communicator{MPI_COMM_WORLD, {.max_elements_per_call = 0}}; },
                                           "mpi_options: max_elements_per_call must be in [1, INT_MAX] (got 0)");
  check_throws_with<std::invalid_argument>(
      [] { dppf::mpi_communicator{MPI_COMM_WORLD, {.max_elements_per_call = static_cast<std::size_t>(INT_MAX) + 1}}; },
      "max_elements_per_call must be in [1, INT_MAX] (got 2147483648)");
  check_throws_with<std::invalid_argument>([] { dppf::mpi_communicator{MPI_COMM_NULL}; }, "mpi: the communicator is MPI_COMM_NULL");
  check_throws_with<std::invalid_argument>([] { dppf::mpi_environment env(99); },
                                           "mpi_environment: required_thread_level must be one of MPI_THREAD_SINGLE");
  // MPI is initialized already (by the test main): another environment neither owns nor finalizes it.
  {
    dppf::mpi_environment env;
    CHECK_FALSE(env.owner());
    CHECK(env.thread_level() >= MPI_THREAD_FUNNELED);
  }
  int finalized = 1;
  MPI_Finalized(&finalized);
  CHECK(finalized == 0);
}

TEST_CASE("mpi turns MPI error codes into communication_error with MPI's own text") {
  for (int code : {MPI_ERR_TRUNCATE, MPI_ERR_COMM, MPI_ERR_COUNT}) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    check_throws_with<dppf::communication_error>([&] { dppf::detail::mpi_check(code, "broadcast", "MPI_Bcast", 3); },
                                                 "dppf::mpi_communicator::broadcast: MPI_Bcast failed on rank 3: " + std::string(text, len));
  }
  CHECK_NOTHROW(dppf::detail::mpi_check(MPI_SUCCESS, "broadcast", "MPI_Bcast", 3));

  // A real MPI failure: with the argument check off, a receiver whose buffer is too short for a
  // broadcast gets MPI_ERR_TRUNCATE back (MPI_ERRORS_RETURN), as an exception. Pairs of ranks
  // on their own communicator, so the rest of the run is unaffected.
  const int m = world_size(), rank = world_rank();
  MPI_Comm pair = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank / 2 < m / 2 ? rank / 2 : MPI_UNDEFINED, rank, &pair);
  if (pair != MPI_COMM_NULL) {
    {
      dppf::mpi_communicator comm{pair, {.check_arguments = false}};
      std::vector<double> buf(comm.rank() == 0 ? 16 : 8, 1.0);
      if (comm.rank() == 0)
        CHECK_NOTHROW(comm.broadcast(buf, 0));
      else
        check_throws_with<dppf::communication_error>([&] { comm.broadcast(buf, 0); },
                                                     "dppf::mpi_communicator::broadcast: MPI_Bcast failed on rank 1: ");
    }
    MPI_Comm_free(&pair);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("counting<mpi> records every collective and the bytes it moved") {
  const int m = world_size(), rank = world_rank();
  dppf::counting_communicator<dppf::mpi_communicator> comm{dppf::mpi_communicator{MPI_COMM_WORLD}};
  CHECK(comm.rank() == rank);
  CHECK(comm.size() == m);

  const auto d = make_group_data<double>(1000003, 77, m);
  std::vector<double> out(1000003);
  comm.all_reduce(d.input[static_cast<std::size_t>(rank)], out, reduce_op::avg);
  check_reduced(out, d, reduce_op::avg, m);
  std::vector<float> small(7, 1.0f);
  comm.all_reduce(small, reduce_op::sum);
  CHECK(small == std::vector<float>(7, static_cast<float>(m)));
  CHECK(comm.all_reduce(1.0, reduce_op::sum) == m);
  CHECK(comm.all_gather(static_cast<double>(rank)).size() == static_cast<std::size_t>(m));
  comm.broadcast(small, 0);
  comm.barrier();

  const dppf::communication_counts& c = comm.counts();
  CHECK(c.buffer_all_reduces == 2);
  CHECK(c.scalar_all_reduces == 1);
  CHECK(c.all_gathers == 1);
  CHECK(c.broadcasts == 1);
  CHECK(c.barriers == 1);
  CHECK(c.collectives() == 6);
  CHECK(c.buffer_values == 1000003u + 7u + 7u);
  CHECK(c.bytes == 1000003u * 8u + 7u * 4u + 8u + 8u + 7u * 4u);

  // A call that raised moved nothing and is not counted.
  comm.reset();
  std::vector<float> wrong(6);
  CHECK_THROWS_AS(comm.all_reduce(small, wrong, reduce_op::sum), std::invalid_argument);
  CHECK(comm.counts().collectives() == 0);
  CHECK(comm.counts().bytes == 0);
}

TEST_CASE("the trainer of DESIGN 2.3 runs DPPF over dppf::mpi_communicator{MPI_COMM_WORLD}") {
  const int m = world_size(), rank = world_rank();
  const std::size_t n = 1000;
  const double lr = 0.1, alpha = 0.1, lambda = 0.05;
  const auto p0 = make_group_data<float>(n, 500, m), g0 = make_group_data<float>(n, 600, m);
  std::vector<float> params = p0.input[static_cast<std::size_t>(rank)], grads = g0.input[static_cast<std::size_t>(rank)];

  dppf::host_executor ex;
  dppf::sgd opt{{.lr = lr}};
  dppf::trainer tr{opt, dppf::pull_push{{.alpha = alpha, .lambda = lambda}}, dppf::mpi_communicator{MPI_COMM_WORLD}, ex, {.tau = 1}};
  tr.step(params, grads);

  // Independent reference in double: each rank's SGD step, the mean, and the pull-push update.
  std::vector<std::vector<double>> x(static_cast<std::size_t>(m), std::vector<double>(n));
  std::vector<double> mean(n, 0.0), r(static_cast<std::size_t>(m), 0.0);
  for (std::size_t j = 0; j < x.size(); ++j)
    for (std::size_t i = 0; i < n; ++i) {
      x[j][i] = static_cast<double>(p0.input[j][i]) - lr * static_cast<double>(g0.input[j][i]);
      mean[i] += x[j][i] / m;
    }
  for (std::size_t j = 0; j < x.size(); ++j) {
    for (std::size_t i = 0; i < n; ++i) r[j] += (x[j][i] - mean[i]) * (x[j][i] - mean[i]);
    r[j] = std::sqrt(r[j]);
  }
  const auto me = static_cast<std::size_t>(rank);
  const double factor = m == 1 ? 1.0 - alpha : 1.0 - alpha + lambda / r[me];
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double expected = mean[i] + factor * (x[me][i] - mean[i]);
    if (!(std::abs(static_cast<double>(params[i]) - expected) <= 1e-5 * (1.0 + std::abs(expected)))) ++bad;
  }
  CHECK(bad == 0);
  const auto s = tr.stats();
  CHECK(s.syncs == 1);
  CHECK(s.distance == doctest::Approx(r[me]).epsilon(1e-5));
  double mean_r = 0.0;
  for (double v : r) mean_r += v / m;
  CHECK(s.mean_distance == doctest::Approx(mean_r).epsilon(1e-5));
  CHECK(s.sync_bytes >= n * sizeof(float));  // one all-reduce of the parameters, plus scalars

  tr.average(params);  // x_bar on every rank: the final model
  CHECK(same_on_all_ranks(params));
}
