// detail::collective_watchdog, the timer behind mpi_communicator's watchdog, with an expiry
// action that records instead of aborting.
#include <doctest/doctest.h>

#include <dppf/communicators/detail/watchdog.hpp>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

struct recorder {
  std::mutex mutex;
  int calls = 0;
  dppf::detail::stalled_call seen;
  dppf::detail::collective_watchdog::action action() {
    return [this](const dppf::detail::stalled_call& s) {
      std::lock_guard lock(mutex);
      ++calls;
      seen = s;
    };
  }
  int count() {
    std::lock_guard lock(mutex);
    return calls;
  }
};

}  // namespace

TEST_CASE("watchdog fires once, naming the call that ran past the timeout") {
  recorder r;
  dppf::detail::collective_watchdog w(100ms, r.action());
  w.arm("all_reduce", "MPI_Allreduce", 12);
  w.disarm();
  w.arm("barrier", "MPI_Barrier", 0);
  w.disarm();
  const auto start = std::chrono::steady_clock::now();
  w.arm("broadcast", "MPI_Bcast", 4096);
  while (r.count() == 0 && std::chrono::steady_clock::now() - start < 10s) std::this_thread::sleep_for(1ms);
  const auto noticed = std::chrono::steady_clock::now() - start;
  std::this_thread::sleep_for(300ms);  // stays armed: still one call only
  w.disarm();
  REQUIRE(r.count() == 1);
  CHECK(w.fired());
  CHECK(std::string(r.seen.operation) == "broadcast");
  CHECK(std::string(r.seen.call) == "MPI_Bcast");
  CHECK(r.seen.bytes == 4096);
  CHECK(r.seen.sequence == 3);
  CHECK(r.seen.timeout == 100ms);
  CHECK(r.seen.elapsed >= 100ms);
  CHECK(noticed >= 100ms);
  // Noticed within a poll interval (10 ms here), with room for a loaded machine.
  CHECK(noticed < 2s);
}

TEST_CASE("watchdog never fires for calls shorter than the timeout, however long the gaps between them") {
  recorder r;
  dppf::detail::collective_watchdog w(150ms, r.action());
  for (int i = 0; i < 6; ++i) {
    w.arm("all_reduce", "MPI_Allreduce", 8);
    std::this_thread::sleep_for(30ms);
    w.disarm();
    std::this_thread::sleep_for(250ms);  // idle time between calls does not count
  }
  for (int i = 0; i < 100000; ++i) {  // many short calls: the snapshot is never a stale one's
    w.arm("all_reduce", "MPI_Allreduce", 8);
    w.disarm();
  }
  std::this_thread::sleep_for(300ms);
  CHECK(r.count() == 0);
  CHECK_FALSE(w.fired());
}

TEST_CASE("watchdog polls at a tenth of the timeout, between 1 ms and 0.5 s") {
  using dppf::detail::collective_watchdog;
  CHECK(collective_watchdog::poll_interval(3000ms) == 300ms);
  CHECK(collective_watchdog::poll_interval(10min) == 500ms);
  CHECK(collective_watchdog::poll_interval(5ms) == 1ms);
}

TEST_CASE("watchdog is stopped and joined by its destructor, armed or not") {
  recorder r;
  const auto start = std::chrono::steady_clock::now();
  {
    dppf::detail::collective_watchdog w(10min, r.action());
    w.arm("barrier", "MPI_Barrier", 0);
  }
  CHECK(std::chrono::steady_clock::now() - start < 2s);  // does not wait for a poll or the timeout
  CHECK(r.count() == 0);
}

TEST_CASE("watchdog of a process that was stopped and continued counts the timeout again from when it runs") {
  // A child arms a 2 s watchdog and is SIGSTOPped for 3 s right after: when it continues, its
  // call has been armed for over 3 s, but the pause was its own, so it must wait about 2 s more.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    dppf::detail::collective_watchdog w(2s, [fd = fds[1]](const dppf::detail::stalled_call&) {
      const char c = 'x';
      [[maybe_unused]] const auto n = ::write(fd, &c, 1);
      std::_Exit(0);
    });
    w.arm("all_reduce", "MPI_Allreduce", 8);
    std::this_thread::sleep_for(30s);
    std::_Exit(1);
  }
  ::close(fds[1]);
  std::this_thread::sleep_for(300ms);
  REQUIRE(::kill(child, SIGSTOP) == 0);
  std::this_thread::sleep_for(3s);
  REQUIRE(::kill(child, SIGCONT) == 0);
  const auto continued = std::chrono::steady_clock::now();
  pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
  const int ready = ::poll(&p, 1, 20000);
  const auto fired = std::chrono::steady_clock::now() - continued;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(fds[0]);
  REQUIRE(ready == 1);
  CHECK(fired >= 1500ms);  // 2 s after it runs again, less a poll interval (0.2 s) and rounding
  CHECK(fired < 10s);
}
