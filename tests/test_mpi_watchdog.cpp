// mpi_communicator's watchdog options, on every rank of an mpiexec job (the expiry itself is
// tested by mpi_watchdog.stop.* and the cluster tests, since it ends the job).
#include <doctest/doctest.h>

#include <dppf/communicators/mpi.hpp>

#include <chrono>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Sets DPPF_MPI_TIMEOUT_MS for the scope (every rank the same) and restores "unset" after.
struct env_timeout {
  explicit env_timeout(const char* value) { ::setenv("DPPF_MPI_TIMEOUT_MS", value, 1); }
  ~env_timeout() { ::unsetenv("DPPF_MPI_TIMEOUT_MS"); }
};

}  // namespace

TEST_CASE("mpi watchdog timeout: 10 minutes by default, the option, or DPPF_MPI_TIMEOUT_MS over it") {
  ::unsetenv("DPPF_MPI_TIMEOUT_MS");
  CHECK(dppf::mpi_communicator{MPI_COMM_WORLD}.options().timeout == 10min);
  CHECK(dppf::mpi_communicator{MPI_COMM_WORLD, {.timeout = 1500ms}}.options().timeout == 1500ms);
  CHECK(dppf::mpi_communicator{MPI_COMM_WORLD, {.timeout = 0ms}}.options().timeout == 0ms);
  {
    env_timeout env("2500");
    CHECK(dppf::mpi_communicator{MPI_COMM_WORLD, {.timeout = 1500ms}}.options().timeout == 2500ms);
  }
  {
    env_timeout env("0");  // off, whatever the program asked for
    CHECK(dppf::mpi_communicator{MPI_COMM_WORLD, {.timeout = 1500ms}}.options().timeout == 0ms);
  }
}

TEST_CASE("mpi watchdog timeout: a negative option or a malformed DPPF_MPI_TIMEOUT_MS raises on every rank") {
  ::unsetenv("DPPF_MPI_TIMEOUT_MS");
  try {
    dppf::mpi_communicator c{MPI_COMM_WORLD, {.timeout = -1ms}};
    FAIL("a negative timeout was accepted");
  } catch (const dppf::invalid_argument_error& e) {
    const std::string what = e.what();
    CHECK(what.find("mpi_options") != std::string::npos);
    CHECK(what.find("timeout") != std::string::npos);
    CHECK(what.find("-1") != std::string::npos);
  }
  for (const char* bad : {"", "abc", "-5", "12x", " 7", "1.5", "99999999999999999999999"}) {
    CAPTURE(bad);
    env_timeout env(bad);
    try {
      dppf::mpi_communicator c{MPI_COMM_WORLD};
      FAIL("DPPF_MPI_TIMEOUT_MS was accepted");
    } catch (const dppf::invalid_argument_error& e) {
      const std::string what = e.what();
      CHECK(what.find("DPPF_MPI_TIMEOUT_MS='" + std::string(bad) + "'") != std::string::npos);
    }
  }
  // Nothing half made: the next communicator works.
  dppf::mpi_communicator c{MPI_COMM_WORLD};
  CHECK(c.all_reduce(1.0, dppf::reduce_op::sum) == c.size());
}

TEST_CASE("mpi watchdog on with a short timeout: collectives, copies and handles work and outlive nothing") {
  ::unsetenv("DPPF_MPI_TIMEOUT_MS");
  std::vector<float> x(1000);
  for (int round = 0; round < 50; ++round) {
    dppf::mpi_communicator c{MPI_COMM_WORLD, {.timeout = 2s}};
    auto copy = c;  // copies share one watchdog
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(c.rank() + static_cast<int>(i % 3));
    auto h = copy.start_all_reduce(std::span<float>(x), dppf::reduce_op::sum);
    h.wait();
    for (std::size_t i = 0; i < x.size(); ++i)
      REQUIRE(x[i] == static_cast<float>(c.size() * (c.size() - 1) / 2 + c.size() * static_cast<int>(i % 3)));
    c.barrier();
  }
}
