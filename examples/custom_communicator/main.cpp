// Writing your own communicator: a decorator that keeps a trace of every collective (which
// operation, how many bytes) around any other communicator. A communicator needs a memory_space,
// rank() and size(), all_reduce of buffers (in and out of place) and of scalars, all_gather of a
// scalar, broadcast and barrier; the trainer, every consensus rule and the checkpoints then work
// over it. The program trains 4 workers through the tracer and checks that they end bit for bit
// where the plain thread_communicator ends, and that the trace holds exactly the collectives a
// LocalSGD run must make.
#include <dppf/dppf.hpp>

#include <cstdio>
#include <map>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

template <dppf::communicator Inner>
class tracing_communicator {
 public:
  using memory_space = typename Inner::memory_space;

  tracing_communicator(Inner inner, std::map<std::string, std::size_t>& trace) : inner_(std::move(inner)), trace_(&trace) {}

  int rank() const { return inner_.rank(); }
  int size() const { return inner_.size(); }

  template <class In, class Out>
  void all_reduce(const In& in, Out&& out, dppf::reduce_op op) {
    record("all_reduce(buffer)");
    inner_.all_reduce(in, std::forward<Out>(out), op);
  }
  template <class B>
  void all_reduce(B&& inout, dppf::reduce_op op) {
    record("all_reduce(buffer, in place)");
    inner_.all_reduce(std::forward<B>(inout), op);
  }
  double all_reduce(double v, dppf::reduce_op op) {
    record("all_reduce(scalar)");
    return inner_.all_reduce(v, op);
  }
  std::vector<double> all_gather(double v) {
    record("all_gather");
    return inner_.all_gather(v);
  }
  template <class B>
  void broadcast(B&& b, int root) {
    record("broadcast");
    inner_.broadcast(std::forward<B>(b), root);
  }
  void barrier() {
    record("barrier");
    inner_.barrier();
  }

 private:
  void record(const char* operation) { ++(*trace_)[operation]; }

  Inner inner_;
  std::map<std::string, std::size_t>* trace_;  // one per worker: no locking needed
};

static_assert(dppf::communicator<tracing_communicator<dppf::thread_communicator>>);

int main() {
  constexpr int workers = 4, steps = 8, tau = 4;
  constexpr std::size_t n = 1000;
  auto train = [&](auto make_comm) {
    std::vector<std::vector<float>> out(workers);
    dppf::thread_group group(workers);
    group.run([&](dppf::thread_communicator member) {
      auto comm = make_comm(member);
      std::vector<float> x(n, 1.0f), g(n);
      dppf::trainer tr{dppf::sgd{{.lr = 0.1, .momentum = 0.9}}, dppf::local_sgd{}, std::move(comm),
                       dppf::host_executor{}, {.tau = tau}};
      for (int s = 0; s < steps; ++s) {
        for (std::size_t i = 0; i < n; ++i) g[i] = x[i] - 0.01f * static_cast<float>(member.rank() + i % 7);
        tr.step(x, g);
      }
      out[static_cast<std::size_t>(member.rank())] = x;
    });
    return out;
  };

  std::vector<std::map<std::string, std::size_t>> traces(workers);
  const auto traced = train([&](dppf::thread_communicator m) {
    return tracing_communicator(m, traces[static_cast<std::size_t>(m.rank())]);
  });
  const auto plain = train([](dppf::thread_communicator m) { return m; });

  bool ok = traced == plain;  // bit for bit
  for (const auto& t : traces) {
    // Per LocalSGD sync: one out-of-place all-reduce (the mean) and one all-gather (the
    // distances r_j). Before the first step the ranks agree that every rank's arguments are
    // valid (one scalar all-reduce) and have the same size (one all-gather).
    const std::map<std::string, std::size_t> expected{
        {"all_reduce(buffer)", steps / tau}, {"all_gather", steps / tau + 1}, {"all_reduce(scalar)", 1}};
    ok = ok && t == expected;
  }
  std::printf("rank 0 trace:");
  for (const auto& [op, count] : traces[0]) std::printf(" %s x%zu", op.c_str(), count);
  std::printf("; same bits as thread_communicator: %s\n", traced == plain ? "yes" : "no");
  return ok ? 0 : 1;
}
