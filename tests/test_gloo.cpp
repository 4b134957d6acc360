// dppf::gloo_communicator in one process: M threads, each one rank, meeting through a FileStore
// in a fresh directory and connected over loopback TCP. Results are checked on the main thread
// against double-precision references on every element.
#include <dppf/communicators/gloo.hpp>
#include <dppf/communicators/counting.hpp>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/dppf.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gloo_support.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

dppf::gloo_store fresh_store() { return dppf_test::fresh_gloo_store("gloo-test"); }

dppf::gloo_options loopback(std::chrono::milliseconds timeout = 10s) { return dppf_test::gloo_loopback(timeout); }

// Runs f(comm) on m threads, one rank each; returns each rank's exception (or null).
std::vector<std::exception_ptr> run_group(int m, const std::function<void(dppf::gloo_communicator&)>& f,
                                          dppf::gloo_options options = loopback()) {
  return dppf_test::run_gloo_ranks("gloo-test", m, f, options);
}

using dppf_test::require_no_errors;

// What rank r's exception is: "" when none, else "<kind>: <what>".
template <class E>
bool threw(const std::exception_ptr& e, const std::string& needle) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    INFO("message: " << x.what());
    return std::string(x.what()).find(needle) != std::string::npos;
  } catch (...) {
  }
  return false;
}

template <class T>
void check_buffer_all_reduce(int m, std::size_t n, bool in_place, dppf::reduce_op op) {
  std::vector<std::vector<T>> inputs(static_cast<std::size_t>(m)), outputs(static_cast<std::size_t>(m));
  for (int r = 0; r < m; ++r) inputs[static_cast<std::size_t>(r)] = dppf_test::random_vector<T>(n, 1000 + 17 * r + n);
  require_no_errors(run_group(m, [&](dppf::gloo_communicator& c) {
    const auto r = static_cast<std::size_t>(c.rank());
    if (in_place) {
      outputs[r] = inputs[r];
      c.all_reduce(std::span<T>(outputs[r]), op);
    } else {
      outputs[r].assign(n, T(-7));
      c.all_reduce(std::span<const T>(inputs[r]), std::span<T>(outputs[r]), op);
    }
  }));
  const double eps = std::is_same_v<T, float> ? 6e-8 : 1.2e-16;
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0.0, abs = 0.0;
    for (int r = 0; r < m; ++r) {
      sum += static_cast<double>(inputs[static_cast<std::size_t>(r)][i]);
      abs += std::fabs(static_cast<double>(inputs[static_cast<std::size_t>(r)][i]));
    }
    const double expected = op == dppf::reduce_op::avg ? sum / m : sum;
    // m - 1 roundings of partial sums (ring order), one of the scaling: bounded by m eps sum|x|.
    const double bound = (m + 1) * eps * (op == dppf::reduce_op::avg ? abs / m : abs) + 1e-300;
    for (int r = 0; r < m; ++r) {
      const T got = outputs[static_cast<std::size_t>(r)][i];
      if (std::fabs(static_cast<double>(got) - expected) > bound)
        FAIL("element " << i << " rank " << r << ": got " << got << ", expected " << expected << " +- " << bound);
      if (got != outputs[0][i]) FAIL("element " << i << ": rank " << r << " has " << got << ", rank 0 " << outputs[0][i]);
    }
  }
}

}  // namespace

static_assert(dppf::communicator<dppf::gloo_communicator>);

TEST_CASE("gloo_communicator all_reduce of buffers matches a double reference on every element") {
  for (const int m : {1, 2, 3}) {
    for (const bool in_place : {true, false}) {
      CAPTURE(m);
      CAPTURE(in_place);
      check_buffer_all_reduce<float>(m, 1000, in_place, dppf::reduce_op::sum);
      check_buffer_all_reduce<double>(m, 777, in_place, dppf::reduce_op::avg);
    }
  }
  check_buffer_all_reduce<float>(4, 1 << 17, false, dppf::reduce_op::avg);  // several ring segments
  check_buffer_all_reduce<float>(3, 0, true, dppf::reduce_op::sum);
}

TEST_CASE("gloo_communicator scalars, all_gather, broadcast and barrier") {
  const int m = 3;
  std::vector<std::vector<double>> got(m);
  std::vector<std::vector<float>> bcast(m);
  require_no_errors(run_group(m, [&](dppf::gloo_communicator& c) {
    const double v = 1.5 * c.rank() - 1.0;  // -1, 0.5, 2
    auto& g = got[static_cast<std::size_t>(c.rank())];
    g.push_back(c.all_reduce(v, dppf::reduce_op::sum));
    g.push_back(c.all_reduce(v, dppf::reduce_op::avg));
    g.push_back(c.all_reduce(v, dppf::reduce_op::min));
    g.push_back(c.all_reduce(v, dppf::reduce_op::max));
    for (double x : c.all_gather(v * 10)) g.push_back(x);
    c.barrier();
    for (int root = 0; root < m; ++root) {
      std::vector<float> b = dppf_test::random_vector<float>(513, 50 + static_cast<unsigned>(c.rank()));
      c.broadcast(std::span<float>(b), root);
      const auto ref = dppf_test::random_vector<float>(513, 50 + static_cast<unsigned>(root));
      if (b != ref) throw std::runtime_error("broadcast from root " + std::to_string(root) + " differs");
    }
    std::vector<double> d(5, c.rank() == 2 ? 3.25 : 0.0);
    c.broadcast(std::span<double>(d), 2);
    for (double x : d) g.push_back(x);
  }));
  const std::vector<double> expected = {1.5, 0.5, -1.0, 2.0, -10.0, 5.0, 20.0, 3.25, 3.25, 3.25, 3.25, 3.25};
  for (int r = 0; r < m; ++r) CHECK(got[static_cast<std::size_t>(r)] == expected);
}

TEST_CASE("gloo_communicator argument mismatches raise invalid_argument_error on every rank") {
  // sizes
  auto errors = run_group(3, [](dppf::gloo_communicator& c) {
    std::vector<float> x(c.rank() == 1 ? 9 : 8);
    c.all_reduce(std::span<float>(x), dppf::reduce_op::sum);
  });
  for (auto& e : errors) CHECK(threw<dppf::invalid_argument_error>(e, "rank 1 has 9 elements"));
  // element types
  errors = run_group(2, [](dppf::gloo_communicator& c) {
    std::vector<float> f(4);
    std::vector<double> d(4);
    if (c.rank() == 0)
      c.all_reduce(std::span<float>(f), dppf::reduce_op::sum);
    else
      c.all_reduce(std::span<double>(d), dppf::reduce_op::sum);
  });
  for (auto& e : errors) CHECK(threw<dppf::invalid_argument_error>(e, "buffer sizes differ"));
  // roots
  errors = run_group(3, [](dppf::gloo_communicator& c) {
    std::vector<float> x(4);
    c.broadcast(std::span<float>(x), c.rank() == 2 ? 1 : 0);
  });
  for (auto& e : errors) CHECK(threw<dppf::invalid_argument_error>(e, "roots differ"));
  // different collectives of one shape: a broadcast against an all-reduce of 4 floats (Gloo's
  // transport would abort the process on what one sends and the other expects)
  errors = run_group(2, [](dppf::gloo_communicator& c) {
    std::vector<float> x(4);
    if (c.rank() == 0)
      c.broadcast(std::span<float>(x), 0);
    else
      c.all_reduce(std::span<float>(x), dppf::reduce_op::sum);
  });
  for (auto& e : errors) CHECK(threw<dppf::invalid_argument_error>(e, "collectives differ across ranks (rank 0 called broadcast"));
  // reduce_ops: sum on one rank, avg on the other
  errors = run_group(2, [](dppf::gloo_communicator& c) {
    std::vector<float> x(4, 1.0f);
    c.all_reduce(std::span<float>(x), c.rank() == 0 ? dppf::reduce_op::sum : dppf::reduce_op::avg);
  });
  for (auto& e : errors) CHECK(threw<dppf::invalid_argument_error>(e, "reduce_ops differ across ranks"));
  // one rank's own bad arguments: it raises invalid_argument, the others communication_error
  errors = run_group(3, [](dppf::gloo_communicator& c) {
    std::vector<float> x(4), y(c.rank() == 0 ? 3 : 4);
    c.all_reduce(std::span<const float>(x), std::span<float>(y), dppf::reduce_op::sum);
  });
  CHECK(threw<dppf::invalid_argument_error>(errors[0], "output has 3 elements, expected 4"));
  CHECK(threw<dppf::communication_error>(errors[1], "rank 0 rejected its arguments"));
  CHECK(threw<dppf::communication_error>(errors[2], "rank 0 rejected its arguments"));
  errors = run_group(2, [](dppf::gloo_communicator& c) {
    std::vector<float> x(4);
    c.broadcast(std::span<float>(x), c.rank() == 1 ? 5 : 0);
  });
  CHECK(threw<dppf::communication_error>(errors[0], "rank 1 rejected"));
  CHECK(threw<dppf::invalid_argument_error>(errors[1], "root 5 is outside [0, 2)"));
  // the group still works after agreed rejections
  std::vector<double> sums(2);
  require_no_errors(run_group(2, [&](dppf::gloo_communicator& c) {
    std::vector<float> x(4), y(5);
    try {
      c.all_reduce(std::span<const float>(x), std::span<float>(y), dppf::reduce_op::max);
    } catch (const dppf::invalid_argument_error&) {
    }
    sums[static_cast<std::size_t>(c.rank())] = c.all_reduce(1.0 + c.rank(), dppf::reduce_op::sum);
  }));
  CHECK(sums == std::vector<double>{3.0, 3.0});
}

TEST_CASE("gloo_communicator bad construction arguments") {
  dppf::gloo_store s = fresh_store();
  dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { dppf::gloo_communicator(s, 2, 2, loopback()); }, "rank must be in [0, 2)");
  dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { dppf::gloo_communicator(s, 0, 0, loopback()); }, "size must be >= 1");
  dppf::gloo_store both = s;
  both.redis_host = "127.0.0.1";
  dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { dppf::gloo_communicator(both, 0, 1, loopback()); }, "exactly one of");
  std::filesystem::remove_all(s.file_dir);
}

// Run in a child process: the signal disposition is process-wide. Returns the child's wait status.
static int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST_CASE("gloo_communicator SIGPIPE: a write to a vanished peer raises EPIPE instead of killing the rank") {
  const dppf::gloo_store store = fresh_store();
  // The default disposition (terminate) is replaced by "ignore" once a communicator exists: a
  // write to a closed pipe then fails with EPIPE and the process lives to report it.
  const int status = in_child([&] {
    ::signal(SIGPIPE, SIG_DFL);
    dppf::gloo_communicator c(store, 0, 1, loopback());
    int fds[2];
    if (::pipe(fds) != 0) return 2;
    ::close(fds[0]);
    const char byte = 1;
    return ::write(fds[1], &byte, 1) == -1 && errno == EPIPE ? 0 : 3;
  });
  CHECK_FALSE(WIFSIGNALED(status));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // A handler the program installed is left alone.
  const dppf::gloo_store store2 = fresh_store();
  const int kept = in_child([&] {
    ::signal(SIGPIPE, [](int) {});
    const auto mine = ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGPIPE, mine);
    dppf::gloo_communicator c(store2, 0, 1, loopback());
    struct sigaction now {};
    ::sigaction(SIGPIPE, nullptr, &now);
    return now.sa_handler == mine ? 0 : 4;
  });
  CHECK(WIFEXITED(kept));
  CHECK(WEXITSTATUS(kept) == 0);
  std::filesystem::remove_all(store.file_dir);
  std::filesystem::remove_all(store2.file_dir);
}

TEST_CASE("gloo_communicator two processes claiming one rank: the second raises at once") {
  const dppf::gloo_store store = fresh_store();
  std::exception_ptr first;
  std::thread t([&] {
    try {
      dppf::gloo_communicator c(store, 0, 2, loopback(3s));  // waits for rank 1, which never comes
    } catch (...) {
      first = std::current_exception();
    }
  });
  std::this_thread::sleep_for(200ms);
  const auto start = std::chrono::steady_clock::now();
  dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { dppf::gloo_communicator(store, 0, 2, loopback(3s)); },
                                                             "rank 0 is already claimed under prefix");
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  t.join();
  // a world size that never fills: the first one times out within its timeout + a little
  CHECK(threw<dppf::timeout_error>(first, "connect"));
  std::filesystem::remove_all(store.file_dir);
}

TEST_CASE("gloo_communicator a silent peer makes every other rank raise timeout_error naming the operation") {
  const auto timeout = 1500ms;
  std::vector<std::chrono::steady_clock::duration> took(3);
  auto errors = run_group(
      3,
      [&](dppf::gloo_communicator& c) {
        std::vector<float> x(1 << 12, 1.0f);
        c.all_reduce(std::span<float>(x), dppf::reduce_op::sum);  // all three take part
        if (c.rank() == 2) {
          std::this_thread::sleep_for(timeout + 1500ms);  // hung past the others' timeout
          throw std::runtime_error("rank 2 slept");
        }
        const auto start = std::chrono::steady_clock::now();
        try {
          c.all_reduce(std::span<float>(x), dppf::reduce_op::sum);
        } catch (...) {
          took[static_cast<std::size_t>(c.rank())] = std::chrono::steady_clock::now() - start;
          // and every later operation raises at once
          try {
            c.barrier();
          } catch (const dppf::communication_error& e) {
            if (std::string(e.what()).find("failed earlier") == std::string::npos) throw std::runtime_error("no earlier failure");
            throw;
          }
        }
      },
      loopback(timeout));
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(threw<dppf::communication_error>(errors[static_cast<std::size_t>(r)], "all_reduce"));
    CHECK(took[static_cast<std::size_t>(r)] < timeout + 1000ms);
    CHECK(took[static_cast<std::size_t>(r)] >= timeout - 100ms);
  }
}

// The push is off (lambda = 0) here: near consensus its direction (x - mean) / |x - mean| turns
// rounding-level differences between the two summation orders into visible ones.
template <class Rule>
void check_trainer_matches_threads(const Rule& rule) {
  const int m = 3;
  const std::size_t n = 300;
  std::vector<std::vector<float>> by_threads(m), by_gloo(m);
  std::vector<dppf::communication_counts> counts_threads(m), counts_gloo(m);
  const auto train = [&](auto comm, std::vector<float>& out, dppf::communication_counts& counts) {
    std::vector<float> params = dppf_test::random_vector<float>(n, 7), grads(n);
    dppf::host_executor ex;
    dppf::sgd opt{{.lr = 0.1, .momentum = 0.5}};
    dppf::counting_communicator counted(comm);
    dppf::trainer tr{opt, rule, counted, ex, {.tau = 4}};
    for (int step = 0; step < 40; ++step) {
      for (std::size_t i = 0; i < n; ++i) grads[i] = params[i] - 0.01f * static_cast<float>(comm.rank() + i % 5);
      tr.step(params, grads);
    }
    tr.average(params);
    out = params;
    counts = tr.comm().counts();
  };
  dppf::thread_group(m).run([&](dppf::thread_communicator c) {
    const auto r = static_cast<std::size_t>(c.rank());
    train(c, by_threads[r], counts_threads[r]);
  });
  require_no_errors(run_group(m, [&](dppf::gloo_communicator& c) {
    const auto r = static_cast<std::size_t>(c.rank());
    train(c, by_gloo[r], counts_gloo[r]);
  }));
  // threads add in double, Gloo in float in ring order: each sync's mean differs by a float
  // rounding or two, and the contracting updates keep that from growing.
  for (int r = 0; r < m; ++r) {
    CHECK(counts_gloo[r].collectives() == counts_threads[r].collectives());
    CHECK(counts_gloo[r].bytes == counts_threads[r].bytes);
    CHECK(counts_gloo[r].collectives() > 0);
    for (std::size_t i = 0; i < n; ++i) {
      const float a = by_threads[static_cast<std::size_t>(r)][i], b = by_gloo[static_cast<std::size_t>(r)][i];
      if (std::fabs(a - b) > 1e-6f * (1.0f + std::fabs(a))) FAIL("rank " << r << " element " << i << ": threads " << a << ", gloo " << b);
      if (b != by_gloo[0][i]) FAIL("element " << i << " differs between rank " << r << " and rank 0");
    }
  }
}

TEST_CASE("gloo_communicator trainer, consensus rules and counting_communicator give the threads run's result") {
  SUBCASE("local_sgd") { check_trainer_matches_threads(dppf::local_sgd{}); }
  SUBCASE("pull_push") { check_trainer_matches_threads(dppf::pull_push{{.alpha = 0.5, .lambda = 0.0}}); }
  SUBCASE("data_parallel") { check_trainer_matches_threads(dppf::data_parallel{}); }
}
