// Argument agreement: every rank of a collective must pass the same collective, buffer size,
// element size, reduce_op and root. A mismatch, or one rank's bad argument, raises on every
// rank (never a hang, never ranks that silently keep different data). thread_group is checked
// end to end here; the integer encoding that MPI and NCCL all-reduce is checked against the
// verdict computed from every rank's arguments directly.

#include <dppf/communicators/detail/agreement.hpp>
#include <dppf/communicators/thread_group.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

using dppf::reduce_op;
using dppf::detail::collective;
using dppf::detail::collective_args;
using dppf_test::check_throws_with;

namespace {

// A group whose timeout turns a hang into a failure in seconds, not minutes.
dppf::thread_group bounded_group(int m) { return dppf::thread_group(m, {.timeout = std::chrono::seconds(20)}); }

// Runs `call(c)` on every rank of an M-group; each rank's exception text (or "" if none) and
// whether it was an invalid_argument. Afterwards every rank does one more all-reduce, which
// would time out if the failed collective had left the ranks out of step.
struct outcome {
  std::string what;
  bool invalid = false;
  bool communication = false;
};
std::vector<outcome> run_on_all(int m, const std::function<void(dppf::thread_communicator&)>& call) {
  std::vector<outcome> out(static_cast<std::size_t>(m));
  std::atomic<int> in_step{0};
  bounded_group(m).run([&](dppf::thread_communicator c) {
    auto& o = out[static_cast<std::size_t>(c.rank())];
    try {
      call(c);
    } catch (const std::invalid_argument& e) {
      o = {e.what(), true, false};
    } catch (const dppf::communication_error& e) {
      o = {e.what(), false, true};
    }
    std::vector<float> x(3, 1.0f);
    c.all_reduce(x, reduce_op::sum);
    if (x == std::vector<float>(3, static_cast<float>(m))) ++in_step;
  });
  CHECK(in_step == m);
  return out;
}

std::string this_rank(std::size_t r) { return "; this is rank " + std::to_string(r) + ")"; }

}  // namespace

TEST_CASE("thread_group broadcast with a different root on each rank raises on every rank, data unchanged") {
  const int m = 3;
  std::vector<std::vector<double>> data;
  for (int r = 0; r < m; ++r) data.push_back(dppf_test::random_vector<double>(11, 500 + std::uint64_t(r)));
  const auto before = data;
  const auto out = run_on_all(m, [&](dppf::thread_communicator& c) { c.broadcast(data[std::size_t(c.rank())], c.rank()); });
  for (std::size_t r = 0; r < out.size(); ++r) {
    CAPTURE(r);
    CHECK(out[r].invalid);
    CHECK(out[r].what ==
          "dppf: thread_group::broadcast: roots differ across ranks (rank 0 has root 0, rank 1 has root 1, rank 2 has root 2" + this_rank(r));
  }
  CHECK(data == before);

  // Two ranks agree, one differs: only that one is named.
  const auto one = run_on_all(m, [&](dppf::thread_communicator& c) { c.broadcast(data[std::size_t(c.rank())], c.rank() == 2 ? 1 : 0); });
  for (std::size_t r = 0; r < one.size(); ++r)
    CHECK(one[r].what == "dppf: thread_group::broadcast: roots differ across ranks (rank 0 has root 0, rank 2 has root 1" + this_rank(r));
  CHECK(data == before);
}

TEST_CASE("thread_group broadcast and all_reduce with sizes or element types that differ raise on every rank") {
  const auto sizes = run_on_all(2, [](dppf::thread_communicator& c) {
    std::vector<float> x(c.rank() == 0 ? 4 : 6, 2.0f);
    c.broadcast(x, 0);
  });
  for (std::size_t r = 0; r < 2; ++r)
    CHECK(sizes[r].what ==
          "dppf: thread_group::broadcast: buffer sizes differ across ranks (rank 0 has 4 elements of 4 bytes, rank 1 has 6 elements "
          "of 4 bytes" + this_rank(r));
  const auto types = run_on_all(2, [](dppf::thread_communicator& c) {
    std::vector<float> f(5, 1.0f);
    std::vector<double> d(5, 1.0);
    if (c.rank() == 0)
      c.all_reduce(f, reduce_op::sum);
    else
      c.all_reduce(d, reduce_op::sum);
  });
  for (std::size_t r = 0; r < 2; ++r)
    CHECK(types[r].what ==
          "dppf: thread_group::all_reduce: buffer sizes differ across ranks (rank 0 has 5 elements of 4 bytes, rank 1 has 5 elements "
          "of 8 bytes" + this_rank(r));
}

TEST_CASE("thread_group all_reduce with a reduce_op that differs across ranks raises on every rank, outputs unchanged") {
  const int m = 4;
  std::vector<std::vector<float>> in, outs(m, std::vector<float>(9, -1.0f));
  for (int r = 0; r < m; ++r) in.push_back(dppf_test::random_vector<float>(9, 600 + std::uint64_t(r)));
  const auto buffers = run_on_all(m, [&](dppf::thread_communicator& c) {
    const auto r = std::size_t(c.rank());
    c.all_reduce(in[r], outs[r], r == 3 ? reduce_op::avg : reduce_op::sum);
  });
  for (std::size_t r = 0; r < buffers.size(); ++r)
    CHECK(buffers[r].what ==
          "dppf: thread_group::all_reduce: reduce_ops differ across ranks (rank 0 has reduce_op sum, rank 3 has reduce_op avg" + this_rank(r));
  for (const auto& o : outs) CHECK(o == std::vector<float>(9, -1.0f));

  const auto scalars = run_on_all(m, [](dppf::thread_communicator& c) { (void)c.all_reduce(1.0, c.rank() == 1 ? reduce_op::min : reduce_op::max); });
  for (std::size_t r = 0; r < scalars.size(); ++r)
    CHECK(scalars[r].what ==
          "dppf: thread_group::all_reduce: reduce_ops differ across ranks (rank 0 has reduce_op max, rank 1 has reduce_op min" + this_rank(r));
}

TEST_CASE("thread_group ranks that call different collectives raise on every rank instead of mixing them") {
  // Rank 1 broadcasts while the others all-reduce: without the check rank 1 would copy from a
  // buffer the others posted for a reduction (or read past its end).
  const auto mixed = run_on_all(3, [](dppf::thread_communicator& c) {
    std::vector<float> x(8, 1.0f);
    if (c.rank() == 1)
      c.broadcast(x, 0);
    else
      c.all_reduce(x, reduce_op::sum);
  });
  for (std::size_t r = 0; r < mixed.size(); ++r)
    CHECK(mixed[r].what == std::string(r == 1 ? "dppf: thread_group::broadcast" : "dppf: thread_group::all_reduce") +
                               ": collectives differ across ranks (rank 0 called all_reduce of a buffer, rank 1 called broadcast" +
                               this_rank(r));
  // A barrier against an all_gather: the barrier's rank raises too (named as its own call).
  const auto barrier = run_on_all(2, [](dppf::thread_communicator& c) {
    if (c.rank() == 0)
      c.barrier();
    else
      (void)c.all_gather(1.0);
  });
  CHECK(barrier[0].what == "dppf: thread_group::barrier: collectives differ across ranks (rank 0 called barrier, rank 1 called all_gather" + this_rank(0));
  CHECK(barrier[1].what == "dppf: thread_group::all_gather: collectives differ across ranks (rank 0 called barrier, rank 1 called all_gather" + this_rank(1));
}

TEST_CASE("thread_group: one rank's own bad argument raises invalid_argument there and communication_error elsewhere") {
  const auto root = run_on_all(3, [](dppf::thread_communicator& c) {
    std::vector<double> x(4, 1.0);
    c.broadcast(x, c.rank() == 2 ? 3 : 0);
  });
  CHECK(root[2].invalid);
  CHECK(root[2].what == "dppf: thread_group::broadcast: root 3 is outside [0, 3)");
  for (std::size_t r : {std::size_t{0}, std::size_t{1}}) {
    CHECK(root[r].communication);
    CHECK(root[r].what == "dppf: thread_group::broadcast: rank 2 rejected its arguments, so rank " + std::to_string(r) + " stops too");
  }
  const auto op = run_on_all(2, [](dppf::thread_communicator& c) { (void)c.all_reduce(1.0, static_cast<reduce_op>(c.rank() == 0 ? 42 : 0)); });
  CHECK(op[0].what == "dppf: thread_group::all_reduce: invalid reduce_op 42 for a scalar");
  CHECK(op[1].communication);
}

TEST_CASE("thread_group collectives whose arguments agree still give every rank the same result") {
  const auto out = run_on_all(3, [](dppf::thread_communicator& c) {
    std::vector<double> x(5, double(c.rank()));
    c.broadcast(x, 1);
    CHECK(x == std::vector<double>(5, 1.0));
    CHECK(c.all_reduce(double(c.rank()), reduce_op::max) == 2.0);
    CHECK(c.all_gather(double(c.rank())) == std::vector<double>{0.0, 1.0, 2.0});
    c.barrier();
  });
  for (const auto& o : out) CHECK(o.what == "");
}

namespace {

// What MPI or NCCL compute: the elementwise maximum of every rank's encoding.
dppf::detail::agreement verdict_of_encodings(const std::vector<collective_args>& all) {
  auto max = dppf::detail::encode(all[0], 0);
  for (std::size_t r = 1; r < all.size(); ++r) dppf::detail::combine(max, dppf::detail::encode(all[r], int(r)));
  return dppf::detail::verdict(max);
}

// The reference: the args agree iff every field of every rank equals rank 0's.
bool fields_equal(const collective_args& a, const collective_args& b) {
  return a.kind == b.kind && a.n == b.n && a.element_size == b.element_size && a.op == b.op && a.root == b.root;
}

}  // namespace

TEST_CASE("argument agreement encoding: the all-reduced maximum says exactly whether every rank's arguments agree") {
  std::mt19937_64 gen(2024);
  // Values near the edges too: sizes beyond 2^32, negative (out of range) roots.
  const std::size_t ns[] = {0, 1, 7, (std::size_t{1} << 31) + 7, std::size_t{1} << 40};
  const int roots[] = {-1, 0, 1, 5};
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t m = 1 + gen() % 6;
    std::vector<collective_args> all(m);
    const collective_args base{.kind = collective(gen() % 5), .n = ns[gen() % 5], .element_size = gen() % 2 ? 4u : 8u,
                               .op = reduce_op(gen() % 4), .root = roots[gen() % 4]};
    int last_rejected = -1;
    for (std::size_t r = 0; r < m; ++r) {
      all[r] = base;
      switch (gen() % 8) {  // most ranks agree; some differ in one field
        case 0: all[r].kind = collective(gen() % 5); break;
        case 1: all[r].n = ns[gen() % 5]; break;
        case 2: all[r].element_size = gen() % 2 ? 4u : 8u; break;
        case 3: all[r].op = reduce_op(gen() % 4); break;
        case 4: all[r].root = roots[gen() % 4]; break;
        default: break;
      }
      all[r].rejected = gen() % 10 == 0;
      if (all[r].rejected) last_rejected = int(r);
    }
    bool same = true;
    for (const auto& a : all) same = same && fields_equal(a, all[0]);
    const auto from_encodings = verdict_of_encodings(all);
    const auto direct = dppf::detail::agree(all);
    CHECK(from_encodings.same == same);
    CHECK(from_encodings.rejected_rank == last_rejected);
    CHECK(direct.same == same);
    CHECK(direct.rejected_rank == last_rejected);
    // Each rank's own encoding decodes to its arguments (the all-gather on the error path).
    for (std::size_t r = 0; r < m; ++r) {
      const auto back = dppf::detail::decode(dppf::detail::encode(all[r], int(r)));
      CHECK(fields_equal(back, all[r]));
      CHECK(back.rejected == all[r].rejected);
    }
  }
}

TEST_CASE("argument agreement: raise_unless_agreed raises the same way on every rank, and gathers only on a mismatch") {
  std::vector<collective_args> all(6, {.kind = collective::broadcast, .n = 3, .element_size = 4, .root = 0});
  int gathers = 0;
  const auto gather = [&] {
    ++gathers;
    return all;
  };
  CHECK_NOTHROW(dppf::detail::raise_unless_agreed("x::broadcast", 0, "", dppf::detail::agree(all), gather));
  CHECK(gathers == 0);
  for (std::size_t r = 1; r < all.size(); ++r) all[r].root = int(r);  // five ranks differ: four named
  check_throws_with<std::invalid_argument>(
      [&] { dppf::detail::raise_unless_agreed("x::broadcast", 4, "", dppf::detail::agree(all), gather); },
      "x::broadcast: roots differ across ranks (rank 0 has root 0, rank 1 has root 1, rank 2 has root 2, rank 3 has root 3, rank 4 "
      "has root 4, and 1 more ranks differ; this is rank 4)");
  CHECK(gathers == 1);
  all[3].rejected = true;
  check_throws_with<dppf::communication_error>(
      [&] { dppf::detail::raise_unless_agreed("x::broadcast", 1, "", dppf::detail::agree(all), gather); },
      "dppf: x::broadcast: rank 3 rejected its arguments, so rank 1 stops too");
  check_throws_with<std::invalid_argument>(
      [&] { dppf::detail::raise_unless_agreed("x::broadcast", 3, "my own problem", dppf::detail::agree(all), gather); },
      "my own problem");
  CHECK(gathers == 1);
}

TEST_CASE("require_same_text: every rank learns the root's text; a rank that differs is told the first difference") {
  // first_difference, on its own: the first differing key, texts of other lengths, no newline at the end
  CHECK(dppf::first_difference("a=1\nb=2\n", "a=1\nb=2\n", "here", "there").empty());
  CHECK(dppf::first_difference("a=1\nb=2\n", "a=1\nb=3\n", "here", "there", "--") == "--b is 2 here and 3 there");
  CHECK(dppf::first_difference("lr=0.1", "lr=0.1\nbs=64", "here", "there").find("different versions") != std::string::npos);
  CHECK(dppf::first_difference("lr=0.1\nbs=64", "lr=0.1", "here", "there").find("different versions") != std::string::npos);
  CHECK(dppf::first_difference("", "a=1", "here", "there").find("different versions") != std::string::npos);
  // Collective: rank 2's text differs from rank 0's (the root); rank 2 raises invalid_argument naming
  // it, ranks 0, 1 and 3 communication_error; equal texts pass everywhere (also when empty).
  std::vector<std::string> errors(4);
  dppf::thread_group group(4);
  group.run([&](dppf::thread_communicator comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    dppf::require_same_text(comm, "tau=8\n", 0, "settings");
    dppf::require_same_text(comm, "", 1, "settings");
    try {
      dppf::require_same_text(comm, r == 2 ? "tau=8\nlr=0.2\n" : "tau=8\nlr=0.1\n", 0, "settings");
    } catch (const std::invalid_argument& e) {
      errors[r] = std::string("invalid: ") + e.what();
    } catch (const dppf::communication_error& e) {
      errors[r] = std::string("comm: ") + e.what();
    }
  });
  CHECK(errors[2].find("invalid: ") == 0);
  CHECK_MESSAGE(errors[2].find("settings: lr is 0.2 on this rank (2) and 0.1 on rank 0") != std::string::npos, errors[2]);
  for (std::size_t r : {0u, 1u, 3u}) CHECK_MESSAGE(errors[r].find("comm: ") == 0, errors[r]);
}
