// gloo_communicator::start_all_reduce (the asynchronous communicator) in one process: M threads,
// each one rank, meeting through a fresh FileStore and connected over loopback TCP. Several
// outstanding handles waited in any order against a double-precision reference on every element
// (and the blocking all_reduce's bits), fresh random inputs, sizes on both sides of the
// bcube / ring rule; progress while the caller computes; bad arguments and a silent peer raising
// at wait on every rank in bounded time; teardown; counting; the overlapped trainer over Gloo
// against thread_group and an independent double replay of the delayed update, and its syncs'
// means arriving during the local steps.
#include <dppf/communicators/counting.hpp>
#include <dppf/communicators/gloo.hpp>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/dppf.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "gloo_support.hpp"
#include "overlap_reference.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using dppf::reduce_op;

static_assert(dppf::async_communicator<dppf::gloo_communicator>);
static_assert(dppf::async_communicator<dppf::counting_communicator<dppf::gloo_communicator>>);
static_assert(dppf::collective_handle<dppf::gloo_all_reduce_handle>);

dppf::gloo_options loopback(std::chrono::milliseconds timeout = 20s) { return dppf_test::gloo_loopback(timeout); }

// Each rank's communicator built and f run on its own thread; each rank's exception (or null).
std::vector<std::exception_ptr> on_gloo_ranks(int m, const std::function<void(dppf::gloo_communicator&)>& f,
                                              dppf::gloo_options options = loopback()) {
  return dppf_test::run_gloo_ranks("gloo-async", m, f, options);
}

using dppf_test::message_of;
using dppf_test::require_no_errors;

// Whether e is an E whose message contains every needle.
template <class E>
bool is_error(const std::exception_ptr& e, std::initializer_list<const char*> needles) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    const std::string what = x.what();
    INFO("message: " << what);
    return std::all_of(needles.begin(), needles.end(), [&](const char* n) { return what.find(n) != std::string::npos; });
  } catch (...) {
  }
  return false;
}

std::uint64_t fresh_seed() { return dppf_test::fresh_seed(); }

// One all-reduce of a test: its type, size, op and placement, and every rank's input.
struct reduction {
  bool is_double = false;
  std::size_t n = 0;
  reduce_op op = reduce_op::sum;
  bool in_place = false;
  std::vector<std::vector<double>> inputs;  // [rank][i], exactly representable in the element type
};

template <class T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Checks every element of every rank's result against the double sum (m roundings in T of the
// partial sums and one of the 1/M scaling: within (m + 1) eps sum|x|) and across ranks bit for bit.
template <class T>
void check_against_double(const reduction& c, const std::vector<std::vector<T>>& got) {
  const int m = static_cast<int>(c.inputs.size());
  const double eps = std::is_same_v<T, float> ? 6e-8 : 1.2e-16;
  for (std::size_t i = 0; i < c.n; ++i) {
    double sum = 0.0, abs = 0.0;
    for (int r = 0; r < m; ++r) {
      sum += c.inputs[static_cast<std::size_t>(r)][i];
      abs += std::fabs(c.inputs[static_cast<std::size_t>(r)][i]);
    }
    const bool avg = c.op == reduce_op::avg;
    const double expected = avg ? sum / m : sum;
    const double bound = (m + 1) * eps * (avg ? abs / m : abs) + 1e-300;
    for (int r = 0; r < m; ++r) {
      const T x = got[static_cast<std::size_t>(r)][i];
      if (!(std::fabs(static_cast<double>(x) - expected) <= bound))
        FAIL("element " << i << " rank " << r << ": got " << x << ", expected " << expected << " +- " << bound);
      if (std::memcmp(&x, &got[0][i], sizeof(T)) != 0) FAIL("element " << i << ": rank " << r << " has " << x << ", rank 0 " << got[0][i]);
    }
  }
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("gloo async all-reduce: outstanding handles waited in any order match a double reference and the blocking bits") {
  // Sizes on both sides of detail::gloo_algorithm's rule: fewer elements than ranks (ring), a
  // few thousand (bcube), just past gloo_bcube_max_bytes (ring), float and double.
  const std::size_t past_float = dppf::detail::gloo_bcube_max_bytes / sizeof(float) + 1;
  const std::size_t past_double = dppf::detail::gloo_bcube_max_bytes / sizeof(double) + 1;
  for (const int m : {2, 3}) {
    const std::uint64_t seed = fresh_seed();
    CAPTURE(m);
    INFO("seed = " << seed);
    std::mt19937_64 gen(seed);
    std::vector<reduction> cases;
    int k = 0;
    for (const bool is_double : {false, true})
      for (const std::size_t n : {std::size_t{1}, std::size_t{3001}, is_double ? past_double : past_float})
        for (const bool in_place : {false, true}) {
          reduction c{.is_double = is_double, .n = n, .op = k++ % 2 ? reduce_op::avg : reduce_op::sum, .in_place = in_place, .inputs = {}};
          for (int r = 0; r < m; ++r) {
            auto v = dppf_test::random_vector<double>(n, gen());
            if (!is_double)
              for (auto& x : v) x = static_cast<float>(x);
            c.inputs.push_back(std::move(v));
          }
          cases.push_back(std::move(c));
        }
    CHECK(dppf::detail::gloo_algorithm(3001, sizeof(float), m) == ::gloo::AllreduceOptions::Algorithm::BCUBE);
    CHECK(dppf::detail::gloo_algorithm(past_float, sizeof(float), m) == ::gloo::AllreduceOptions::Algorithm::RING);
    CHECK(dppf::detail::gloo_algorithm(1, sizeof(float), m) == ::gloo::AllreduceOptions::Algorithm::RING);

    const std::size_t nc = cases.size();
    // [case][rank]: the asynchronous results and the blocking all_reduce's of the same inputs
    std::vector<std::vector<std::vector<float>>> async_f(nc, std::vector<std::vector<float>>(m)), blocking_f = async_f;
    std::vector<std::vector<std::vector<double>>> async_d(nc, std::vector<std::vector<double>>(m)), blocking_d = async_d;
    const std::uint64_t order_seed = gen();
    require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::vector<std::vector<float>> in_f(nc);
      std::vector<std::vector<double>> in_d(nc);
      std::vector<dppf::gloo_all_reduce_handle> handles;
      for (std::size_t c = 0; c < nc; ++c) {
        const reduction& x = cases[c];
        const auto start = [&](auto& in, auto& out) {
          using T = typename std::remove_reference_t<decltype(in)>::value_type;
          in = as<T>(x.inputs[r]);
          if (x.in_place) {
            out = in;
            handles.push_back(comm.start_all_reduce(std::span<T>(out), x.op));
          } else {
            out.assign(x.n, T(-7));
            handles.push_back(comm.start_all_reduce(std::span<const T>(in), std::span<T>(out), x.op));
          }
        };
        if (x.is_double)
          start(in_d[c], async_d[c][r]);
        else
          start(in_f[c], async_f[c][r]);
      }
      // every handle outstanding at once; each rank waits them in its own order
      std::vector<std::size_t> order(nc);
      for (std::size_t c = 0; c < nc; ++c) order[c] = c;
      std::shuffle(order.begin(), order.end(), std::mt19937_64(order_seed + r));
      for (const std::size_t c : order) handles[c].wait();
      for (std::size_t c = 0; c < nc; ++c) {
        const reduction& x = cases[c];
        if (x.is_double) {
          blocking_d[c][r].assign(x.n, 0.0);
          comm.all_reduce(std::span<const double>(in_d[c]), std::span<double>(blocking_d[c][r]), x.op);
        } else {
          blocking_f[c][r].assign(x.n, 0.0f);
          comm.all_reduce(std::span<const float>(in_f[c]), std::span<float>(blocking_f[c][r]), x.op);
        }
      }
    }));
    for (std::size_t c = 0; c < nc; ++c) {
      const reduction& x = cases[c];
      INFO("case " << c << ": " << (x.is_double ? "double" : "float") << ", n = " << x.n << ", " << dppf::to_string(x.op)
                   << (x.in_place ? ", in place" : ", out of place"));
      if (x.is_double)
        check_against_double(x, async_d[c]);
      else
        check_against_double(x, async_f[c]);
      for (int r = 0; r < m; ++r) {
        CAPTURE(r);
        // the same algorithm by size as the blocking all_reduce, so the same bits
        if (x.is_double)
          CHECK(same_bits(async_d[c][static_cast<std::size_t>(r)], blocking_d[c][static_cast<std::size_t>(r)]));
        else
          CHECK(same_bits(async_f[c][static_cast<std::size_t>(r)], blocking_f[c][static_cast<std::size_t>(r)]));
      }
    }
  }
}

TEST_CASE("gloo async all-reduce: one rank is the identity, its errors at wait") {
  require_no_errors(on_gloo_ranks(1, [](dppf::gloo_communicator& comm) {
    const auto in = dppf_test::random_vector<float>(100, fresh_seed());
    std::vector<float> out(100, -7.0f);
    auto h = comm.start_all_reduce(std::span<const float>(in), std::span<float>(out), reduce_op::avg);
    h.wait();
    CHECK(out == in);
    std::vector<float> short_out(99);
    auto bad = comm.start_all_reduce(std::span<const float>(in), std::span<float>(short_out), reduce_op::sum);
    dppf_test::check_throws_with<dppf::invalid_argument_error>([&] { bad.wait(); }, "start_all_reduce");
  }));
}

TEST_CASE("gloo async all-reduce: the reduction progresses while the caller computes, with blocking collectives alongside") {
  const int m = 3;
  const std::size_t n = std::size_t{1} << 18;  // 1 MiB of floats: the ring
  const std::uint64_t seed = fresh_seed();
  INFO("seed = " << seed);
  std::vector<std::vector<float>> in(m), out(m);
  for (int r = 0; r < m; ++r) in[static_cast<std::size_t>(r)] = dppf_test::random_vector<float>(n, seed + static_cast<std::uint64_t>(r));
  std::vector<int> polls(m, 0);
  std::vector<char> first_test_after_compute(m, 0);
  std::vector<double> scalar(m, 0.0);
  require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    out[r].assign(n, -7.0f);
    // 1. polled with test() only, never wait(): it completes on its own within a bounded time
    {
      auto h = comm.start_all_reduce(std::span<const float>(in[r]), std::span<float>(out[r]), reduce_op::sum);
      // meanwhile the main context runs blocking collectives of its own
      scalar[r] = comm.all_reduce(1.0 + static_cast<double>(r), reduce_op::sum);
      std::vector<double> small(7, static_cast<double>(r));
      comm.all_reduce(std::span<double>(small), reduce_op::avg);
      if (small != std::vector<double>(7, 1.0)) throw std::runtime_error("blocking all_reduce beside an asynchronous one is wrong");
      const auto deadline = clock_type::now() + 30s;
      bool done = false;
      while (!(done = h.test()) && clock_type::now() < deadline) {
        ++polls[r];
        std::this_thread::sleep_for(1ms);
      }
      if (!done) throw std::runtime_error("test() never turned true within 30 s");
    }
    // 2. the caller computes (here: sleeps, touching neither the handle nor the communicator);
    // the first test() after it finds the result already there
    std::vector<float> second = in[r];
    auto h = comm.start_all_reduce(std::span<float>(second), reduce_op::sum);
    std::this_thread::sleep_for(3s);
    first_test_after_compute[r] = h.test();
    h.wait();
    if (!same_bits(second, out[r])) throw std::runtime_error("the in-place result differs from the out-of-place one");
  }));
  reduction c{.is_double = false, .n = n, .op = reduce_op::sum, .in_place = false, .inputs = {}};
  for (int r = 0; r < m; ++r) c.inputs.push_back(std::vector<double>(in[static_cast<std::size_t>(r)].begin(), in[static_cast<std::size_t>(r)].end()));
  check_against_double(c, out);
  for (int r = 0; r < m; ++r) {
    CAPTURE(r);
    CHECK(scalar[static_cast<std::size_t>(r)] == 6.0);
    CHECK(first_test_after_compute[static_cast<std::size_t>(r)]);
    MESSAGE("rank " << r << ": test() polled " << polls[static_cast<std::size_t>(r)] << " times before true (loaded-machine smoke)");
  }
}

TEST_CASE("gloo async all-reduce: bad arguments raise at wait on every rank, and the group goes on") {
  const int m = 3;
  std::vector<std::exception_ptr> size_mismatch(m), own_rejection(m), bad_op(m);
  std::vector<double> after(m, 0.0);
  require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const auto capture = [](dppf::gloo_all_reduce_handle& h, std::exception_ptr& slot) {
      try {
        h.wait();
      } catch (...) {
        slot = std::current_exception();
      }
    };
    // all outstanding at once, waited last-first
    std::vector<float> a(r == 1 ? 9 : 8, 1.0f), x(4, 1.0f), y(r == 0 ? 3 : 4), z(5, 1.0f);
    auto h1 = comm.start_all_reduce(std::span<float>(a), reduce_op::sum);
    auto h2 = comm.start_all_reduce(std::span<const float>(x), std::span<float>(y), reduce_op::sum);
    auto h3 = comm.start_all_reduce(std::span<float>(z), reduce_op::max);
    std::vector<float> good(1000);  // small integers: their sum is exact
    for (std::size_t i = 0; i < good.size(); ++i) good[i] = static_cast<float>(static_cast<int>(i % 201) - 100 + static_cast<int>(r));
    auto h4 = comm.start_all_reduce(std::span<float>(good), reduce_op::sum);
    h4.wait();
    for (std::size_t i = 0; i < good.size(); ++i)
      if (good[i] != static_cast<float>(3 * (static_cast<int>(i % 201) - 100) + 3))
        throw std::runtime_error("a good all-reduce between rejected ones is wrong at element " + std::to_string(i));
    capture(h3, bad_op[r]);
    capture(h2, own_rejection[r]);
    capture(h1, size_mismatch[r]);
    after[r] = comm.all_reduce(1.0, reduce_op::sum);  // the main context is untouched
  }));
  for (int r = 0; r < m; ++r) {
    CAPTURE(r);
    INFO(message_of(size_mismatch[static_cast<std::size_t>(r)]));
    CHECK(is_error<dppf::invalid_argument_error>(size_mismatch[static_cast<std::size_t>(r)], {"start_all_reduce", "rank 1 has 9 elements"}));
    CHECK(is_error<dppf::invalid_argument_error>(bad_op[static_cast<std::size_t>(r)], {"start_all_reduce", "supports sum and avg, not max"}));
    CHECK(after[static_cast<std::size_t>(r)] == 3.0);
  }
  CHECK(is_error<dppf::invalid_argument_error>(own_rejection[0], {"start_all_reduce", "output has 3 elements, expected 4"}));
  CHECK(is_error<dppf::communication_error>(own_rejection[1], {"start_all_reduce", "rank 0 rejected its arguments"}));
  CHECK(is_error<dppf::communication_error>(own_rejection[2], {"start_all_reduce", "rank 0 rejected its arguments"}));
}

TEST_CASE("gloo async all-reduce: a peer that never starts one makes wait raise timeout_error within the timeout") {
  // The thread's context connects at the first start_all_reduce: here rank 2 never makes it.
  const auto timeout = 1500ms;
  const int m = 3;
  std::vector<std::exception_ptr> waited(m);
  std::vector<clock_type::duration> took(m);
  const auto begin = clock_type::now();
  require_no_errors(on_gloo_ranks(
      m,
      [&](dppf::gloo_communicator& comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        comm.barrier();  // every main context connected (leaving earlier would break the others')
        if (r == 2) {    // never starts one, and stays until the others have timed out
          std::this_thread::sleep_for(timeout + 1s);
          return;
        }
        std::vector<double> x(100, 1.0);
        const auto start = clock_type::now();
        try {
          comm.start_all_reduce(std::span<double>(x), reduce_op::avg).wait();
        } catch (...) {
          waited[r] = std::current_exception();
        }
        took[r] = clock_type::now() - start;
      },
      loopback(timeout)));
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    INFO(message_of(waited[static_cast<std::size_t>(r)]));
    CHECK(is_error<dppf::timeout_error>(waited[static_cast<std::size_t>(r)], {"start_all_reduce", "connect", "timeout 1500 ms"}));
    CHECK(took[static_cast<std::size_t>(r)] >= timeout - 100ms);
    CHECK(took[static_cast<std::size_t>(r)] < timeout + 3s);
  }
  CHECK(clock_type::now() - begin < 20s);
}

TEST_CASE("gloo async all-reduce: a peer that stops starting them makes wait raise timeout_error within the timeout") {
  const auto timeout = 1500ms;
  const int m = 3;
  std::vector<std::exception_ptr> waited(m), later(m);
  std::vector<clock_type::duration> took(m);
  std::vector<double> blocking_after(m, 0.0);
  const auto begin = clock_type::now();
  require_no_errors(on_gloo_ranks(
      m,
      [&](dppf::gloo_communicator& comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        std::vector<float> x(1 << 12, 1.0f);
        comm.start_all_reduce(std::span<float>(x), reduce_op::sum).wait();  // all three take part
        if (r == 2) {
          std::this_thread::sleep_for(timeout + 400ms);  // never starts the second one
        } else {
          auto h = comm.start_all_reduce(std::span<float>(x), reduce_op::sum);
          const auto start = clock_type::now();
          try {
            h.wait();
          } catch (...) {
            waited[r] = std::current_exception();
          }
          took[r] = clock_type::now() - start;
          try {  // the failed context raises at once from now on
            comm.start_all_reduce(std::span<float>(x), reduce_op::sum).wait();
          } catch (...) {
            later[r] = std::current_exception();
          }
        }
        // the main context is a context of its own: all three still reduce on it
        blocking_after[r] = comm.all_reduce(1.0, reduce_op::sum);
      },
      loopback(timeout)));
  const auto total = clock_type::now() - begin;
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    INFO(message_of(waited[static_cast<std::size_t>(r)]));
    CHECK(is_error<dppf::timeout_error>(waited[static_cast<std::size_t>(r)], {"start_all_reduce", "timeout 1500 ms"}));
    CHECK(took[static_cast<std::size_t>(r)] >= timeout - 100ms);
    CHECK(took[static_cast<std::size_t>(r)] < timeout + 3s);
    CHECK(is_error<dppf::communication_error>(later[static_cast<std::size_t>(r)], {"start_all_reduce", "failed earlier"}));
  }
  for (int r = 0; r < m; ++r) CHECK(blocking_after[static_cast<std::size_t>(r)] == 3.0);
  // construction, the fault and the teardown of both contexts (the failed one leaked): bounded
  CHECK(total < 20s);
}

TEST_CASE("gloo async all-reduce: a handle outlives its communicator; one dropped without wait waits") {
  const int m = 2;
  std::vector<std::vector<float>> got(m), dropped(m);
  std::vector<std::vector<float>> in(m);
  const std::uint64_t seed = fresh_seed();
  INFO("seed = " << seed);
  for (int r = 0; r < m; ++r) in[static_cast<std::size_t>(r)] = dppf_test::random_vector<float>(5000, seed + static_cast<std::uint64_t>(r));
  require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    dropped[r] = in[r];
    { auto h = comm.start_all_reduce(std::span<float>(dropped[r]), reduce_op::sum); }  // waits here
    got[r].assign(5000, -7.0f);
    std::optional<dppf::gloo_all_reduce_handle> h;
    {
      dppf::gloo_communicator copy = std::move(comm);  // the last owner of both contexts goes away ...
      h.emplace(copy.start_all_reduce(std::span<const float>(in[r]), std::span<float>(got[r]), reduce_op::sum));
    }
    h->wait();  // ... the handle still delivers, and releases the thread when it is destroyed
  }));
  reduction c{.is_double = false, .n = 5000, .op = reduce_op::sum, .in_place = false, .inputs = {}};
  for (int r = 0; r < m; ++r) c.inputs.push_back(std::vector<double>(in[static_cast<std::size_t>(r)].begin(), in[static_cast<std::size_t>(r)].end()));
  check_against_double(c, got);
  check_against_double(c, dropped);
}

TEST_CASE("gloo async all-reduce: counting_communicator counts them and their bytes") {
  std::vector<dppf::communication_counts> counts(2);
  require_no_errors(on_gloo_ranks(2, [&](dppf::gloo_communicator& comm) {
    dppf::counting_communicator counted(comm);
    std::vector<double> a(10, 1.0);
    std::vector<float> b(6, 1.0f), out(6);
    auto h1 = counted.start_all_reduce(std::span<double>(a), reduce_op::sum);
    auto h2 = counted.start_all_reduce(std::span<const float>(b), std::span<float>(out), reduce_op::avg);
    h2.wait();
    h1.wait();
    if (a != std::vector<double>(10, 2.0) || out != std::vector<float>(6, 1.0f)) throw std::runtime_error("wrong counted results");
    counts[static_cast<std::size_t>(comm.rank())] = counted.counts();
  }));
  for (const auto& c : counts) {
    CHECK(c.async_buffer_all_reduces == 2);
    CHECK(c.buffer_all_reduces == 0);
    CHECK(c.bytes == 10 * sizeof(double) + 6 * sizeof(float));
  }
}

namespace {

// The overlapped trainer (overlap_steps = d) on the overlap tests' problem, over any communicator.
template <class T, class Comm, class Rule>
void train_overlapped(Comm comm, const Rule& rule, const dppf_test::problem& p, const dppf_test::schedule_spec& sch,
                      std::vector<double>& out, dppf::communication_counts& counts) {
  const auto r = static_cast<std::size_t>(comm.rank());
  std::vector<T> x(p.x0[r].begin(), p.x0[r].end()), g(p.n);
  dppf::trainer tr{dppf::sgd{{.lr = p.lr}}, rule, comm, dppf::host_executor{},
                   {.tau = sch.tau, .warmup_steps = sch.warmup_steps, .warmup_tau = sch.warmup_tau, .overlap_steps = sch.d}};
  for (int t = 0; t < p.steps; ++t) {
    p.gradient(t, comm.rank(), x, g);
    tr.step(x, g);
  }
  tr.finish_sync(x);
  out.assign(x.begin(), x.end());
  counts = tr.comm().counts();
}

template <class T, class Rule>
void check_overlapped_trainer_over_gloo(const std::string& name, const Rule& rule, const dppf_test::schedule_spec& sch) {
  const int m = 3;
  const std::uint64_t seed = fresh_seed();
  CAPTURE(name);
  CAPTURE(sch.tau);
  CAPTURE(sch.d);
  INFO("seed = " << seed << ", " << (std::is_same_v<T, float> ? "float" : "double"));
  const dppf_test::problem p(m, seed);
  dppf_test::matrix by_threads(m), by_gloo(m);
  std::vector<dppf::communication_counts> counts_threads(m), counts_gloo(m);
  dppf::thread_group(m, {.timeout = 60s}).run([&](dppf::thread_communicator c) {
    const auto r = static_cast<std::size_t>(c.rank());
    train_overlapped<T>(c, rule, p, sch, by_threads[r], counts_threads[r]);
  });
  require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& c) {
    const auto r = static_cast<std::size_t>(c.rank());
    train_overlapped<T>(c, rule, p, sch, by_gloo[r], counts_gloo[r]);
  }));
  const dppf_test::rule_spec spec{.name = name, .alpha = 0.3, .lambda = 0.4, .outer_lr = 0.7, .mu = 0.9};
  const auto want = dppf_test::replay(p, spec, sch);
  // Not bit for bit: thread_group adds the M snapshots in double and rounds once, Gloo adds them
  // in T in the bcube's order, so each sync's mean can differ by an ulp or two of T; the
  // contracting updates keep that from growing (measured: at most ~2e-7 in float, ~3e-16 in
  // double, over 20 syncs). Against the double replay, the overlap tests' tolerance (a wrong
  // delay or rule is off by ~3e-2 there).
  const double to_threads = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  const double to_replay = std::is_same_v<T, float> ? 3e-5 : 1e-11;
  CHECK(dppf_test::max_relative_error(by_gloo, by_threads) < to_threads);
  CHECK(dppf_test::max_relative_error(by_gloo, want.x) < to_replay);
  for (int r = 0; r < m; ++r) {
    CAPTURE(r);
    CHECK(counts_gloo[static_cast<std::size_t>(r)].async_buffer_all_reduces == static_cast<std::uint64_t>(want.started));
    CHECK(counts_gloo[static_cast<std::size_t>(r)].async_buffer_all_reduces ==
          counts_threads[static_cast<std::size_t>(r)].async_buffer_all_reduces);
    CHECK(counts_gloo[static_cast<std::size_t>(r)].bytes == counts_threads[static_cast<std::size_t>(r)].bytes);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("gloo async all-reduce: the overlapped trainer over gloo gives the thread_group run's parameters", T, float, double) {
  for (const std::int64_t d : {std::int64_t{1}, std::int64_t{4}}) {
    const dppf_test::schedule_spec sch{.tau = 4, .d = d, .warmup_steps = 0, .warmup_tau = 0};
    check_overlapped_trainer_over_gloo<T>("local_sgd", dppf::local_sgd{}, sch);
    check_overlapped_trainer_over_gloo<T>("pull_push", dppf::pull_push{{.alpha = 0.3, .lambda = 0.4}}, sch);
  }
}

TEST_CASE("gloo async all-reduce: in the trainer, the overlapped syncs' all-reduces complete during the local steps") {
  // Each local step "computes" for 25 ms (a sleep); an all-reduce of 203 floats on loopback takes
  // far less, so by the step a correction comes due its mean is there (trainer_stats::
  // overlapped_syncs counts those). A reduction that only ran inside wait() would count none.
  const int m = 3;
  const dppf_test::problem p(m, fresh_seed());
  std::vector<dppf::trainer_stats> stats(m);
  require_no_errors(on_gloo_ranks(m, [&](dppf::gloo_communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> x(p.x0[r].begin(), p.x0[r].end()), g(p.n);
    dppf::trainer tr{dppf::sgd{{.lr = p.lr}}, dppf::local_sgd{}, comm, dppf::host_executor{}, {.tau = 4, .overlap_steps = 3}};
    for (int t = 0; t < 24; ++t) {
      p.gradient(t, comm.rank(), x, g);
      std::this_thread::sleep_for(25ms);
      tr.step(x, g);
    }
    tr.finish_sync(x);
    stats[r] = tr.stats();
  }));
  for (int r = 0; r < m; ++r) {
    CAPTURE(r);
    const auto& s = stats[static_cast<std::size_t>(r)];
    CHECK(s.syncs == 6);
    // the last one may be finished right after the last step
    CHECK(s.overlapped_syncs >= s.syncs - 1);
  }
}
