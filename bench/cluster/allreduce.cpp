// The all-reduce across hosts: one process per host (bench/cluster/run.py starts it on an emulated
// cluster), through dppf::gloo_communicator or dppf::mpi_communicator, or one of Gloo's own
// algorithms on the same Gloo context (to choose dppf's algorithm by size).
//
//   dppf_bench_cluster_allreduce --engine gloo|mpi [--impl dppf|bf16|exchange|all_to_all|all_gather|ring|bcube|ring_chunked|halving_doubling]
//                                [--sizes 16-24|16,20,24] [--repeats R] [--bytes-per-repeat B]
//
// --engine gloo reads RANK, WORLD_SIZE, DPPF_GLOO_ADDR (scripts/cluster.sh gloo sets them),
// DPPF_GLOO_STORE (file:DIR or redis:HOST:PORT) and DPPF_GLOO_PREFIX; --engine mpi runs under
// mpirun. --impl other than dppf needs --engine gloo.
//
// dppf is timed as a user calls it: in-place sum of N floats through the communicator, its
// argument agreement included (what torch.distributed.all_reduce(t) does). Each repeat runs k =
// min(64, max(1, B / (4 N))) all-reduces back to back after a barrier; its time per all-reduce is the
// slowest rank's. The first all-reduce of every size is a warm-up whose result is checked exactly
// (rank r contributes r + 1 + i % 7; small integers add exactly in float). Rank 0 prints one JSON
// line per size: {"engine", "impl", "ranks", "n", "bytes", "iterations", "times_s": [per repeat]}.
//
// The compressed sync, split to see where its time goes (N is still the number of floats):
// --impl bf16 is dppf::compressed_mean (bf16 words, error feedback) as the trainer calls it, its
// mean checked exactly (the contributions are small integers, exact in bf16); --impl exchange is
// its two collectives alone, all_to_all + all_gather of the same numbers of 16-bit words, without
// the quantization and the reductions; --impl all_to_all and --impl all_gather, each alone.
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring.h>
#include <gloo/allreduce_ring_chunked.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <dppf/communicators/gloo.hpp>
#include <dppf/compression/compressed_mean.hpp>
#if defined(DPPF_BENCH_WITH_MPI)
#include <dppf/communicators/mpi.hpp>
#endif

namespace {

struct config {
  std::string engine, impl = "dppf";
  std::vector<int> exponents;
  int repeats = 5;
  std::size_t bytes_per_repeat = std::size_t{4} << 20;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "dppf_bench_cluster_allreduce: %s\nusage: dppf_bench_cluster_allreduce --engine gloo|mpi "
               "[--impl dppf|bf16|exchange|all_to_all|all_gather|ring|bcube|ring_chunked|halving_doubling] [--sizes 16-24|16,20,24] [--repeats R] "
               "[--bytes-per-repeat B]\n",
               why.c_str());
  std::exit(2);
}

std::vector<int> parse_sizes(const std::string& s) {
  std::vector<int> out;
  if (const auto dash = s.find('-'); dash != std::string::npos) {
    for (int e = std::stoi(s.substr(0, dash)); e <= std::stoi(s.substr(dash + 1)); ++e) out.push_back(e);
  } else {
    std::size_t at = 0;
    while (at <= s.size()) {
      const auto comma = std::min(s.find(',', at), s.size());
      out.push_back(std::stoi(s.substr(at, comma - at)));
      at = comma + 1;
    }
  }
  for (int e : out)
    if (e < 0 || e > 28) usage("--sizes: exponents must be in 0..28");
  return out;
}

// The --impl values that time the compressed sync's collectives on 16-bit words alone.
bool exchanges_words(const std::string& impl) { return impl == "exchange" || impl == "all_to_all" || impl == "all_gather"; }
// The --impl values that run through dppf's communicator (any engine); the others are Gloo's own.
bool through_dppf(const std::string& impl) { return impl == "dppf" || impl == "bf16" || exchanges_words(impl); }

config parse(int argc, char** argv) {
  config c;
  c.exponents = parse_sizes("16-24");
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(flag + " needs a value");
    const std::string value = argv[++i];
    try {
      if (flag == "--engine") c.engine = value;
      else if (flag == "--impl") c.impl = value;
      else if (flag == "--sizes") c.exponents = parse_sizes(value);
      else if (flag == "--repeats") c.repeats = std::stoi(value);
      else if (flag == "--bytes-per-repeat") c.bytes_per_repeat = std::stoull(value);
      else usage("unknown flag " + flag);
    } catch (const std::logic_error&) {
      usage("bad value '" + value + "' for " + flag);
    }
  }
  if (c.engine != "gloo" && c.engine != "mpi") usage("--engine must be gloo or mpi");
  if (!through_dppf(c.impl) && c.engine != "gloo") usage("--impl " + c.impl + " needs --engine gloo");
  if (c.repeats < 1) usage("--repeats must be >= 1");
  return c;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) usage(std::string("--engine gloo needs ") + name + " in the environment");
  return v;
}

dppf::gloo_store store_from_env() {
  dppf::gloo_store s;
  const std::string spec = env("DPPF_GLOO_STORE");
  if (spec.rfind("file:", 0) == 0) {
    s.file_dir = spec.substr(5);
  } else if (spec.rfind("redis:", 0) == 0 && spec.rfind(':') > 6) {
    const auto colon = spec.rfind(':');
    s.redis_host = spec.substr(6, colon - 6);
    s.redis_port = std::atoi(spec.c_str() + colon + 1);
  } else {
    usage("DPPF_GLOO_STORE must be file:DIR or redis:HOST:PORT (got '" + spec + "')");
  }
  s.prefix = env("DPPF_GLOO_PREFIX");
  return s;
}

// One all-reduce (in-place sum) of Gloo's own algorithm `impl` on the communicator's context.
// The pre-0.5 algorithm objects are built once per buffer, as their users (Caffe2) did.
std::function<void()> gloo_native(const std::string& impl, const std::shared_ptr<::gloo::Context>& ctx, std::vector<float>& x) {
  const std::vector<float*> ptrs{x.data()};
  const int n = static_cast<int>(x.size());
  std::shared_ptr<::gloo::Algorithm> a;
  if (impl == "ring_chunked") a = std::make_shared<::gloo::AllreduceRingChunked<float>>(ctx, ptrs, n);
  else if (impl == "halving_doubling") a = std::make_shared<::gloo::AllreduceHalvingDoubling<float>>(ctx, ptrs, n);
  if (a) return [a] { a->run(); };
  ::gloo::AllreduceOptions::Algorithm algorithm;
  if (impl == "ring") algorithm = ::gloo::AllreduceOptions::Algorithm::RING;
  else if (impl == "bcube") algorithm = ::gloo::AllreduceOptions::Algorithm::BCUBE;
  else usage("unknown --impl " + impl);
  return [ctx, &x, algorithm] {
    ::gloo::AllreduceOptions o(ctx);
    o.setOutput(x.data(), x.size());
    o.setReduceFunction(dppf::detail::gloo_sum<float>);
    o.setAlgorithm(algorithm);
    ::gloo::allreduce(o);
  };
}

template <class Comm>
int run(const config& c, Comm& comm, const std::shared_ptr<::gloo::Context>& ctx) {
  const int rank = comm.rank(), m = comm.size();
  for (int e : c.exponents) {
    const std::size_t n = std::size_t{1} << e;
    std::vector<float> x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(rank + 1 + static_cast<int>(i % 7));
    std::function<void()> op;
    std::vector<float> mean;  // bf16: the compressed mean's output (x stays each rank's own)
    std::optional<dppf::compressed_mean<float>> compressed;
    const std::size_t chunk = (n + static_cast<std::size_t>(m) - 1) / static_cast<std::size_t>(m);
    std::vector<std::uint16_t> words_in, words_out;  // exchange: the compressed mean's buffer sizes
    if (c.impl == "dppf") {
      op = [&] { comm.all_reduce(std::span<float>(x), dppf::reduce_op::sum); };
    } else if (c.impl == "bf16") {
      compressed.emplace(comm, std::span<const float>(x), dppf::compressed_mean_options{});
      mean.resize(n);
      op = [&] { (*compressed)(comm, std::span<const float>(x), std::span<float>(mean)); };
    } else if (exchanges_words(c.impl)) {
      words_in.assign(static_cast<std::size_t>(m) * chunk, 1);
      words_out.assign(words_in.size(), 0);
      op = [&, a2a = c.impl != "all_gather", ag = c.impl != "all_to_all"] {
        if (a2a) comm.all_to_all(std::span<const std::uint16_t>(words_in), std::span<std::uint16_t>(words_out));
        if (ag) comm.all_gather(std::span<const std::uint16_t>(words_in.data(), chunk), std::span<std::uint16_t>(words_out));
      };
    } else {
      op = gloo_native(c.impl, ctx, x);
    }

    op();  // warm-up, checked: the sum (the mean for bf16) of rank + 1 + i % 7 over the ranks
    std::size_t bad = n;
    const std::span<const float> result = c.impl == "bf16" ? std::span<const float>(mean) : std::span<const float>(x);
    const double scale = c.impl == "bf16" ? 1.0 / m : 1.0;
    for (std::size_t i = 0; i < n && bad == n && !exchanges_words(c.impl); ++i)
      if (static_cast<double>(result[i]) != scale * (m * (m + 1) / 2.0 + m * static_cast<double>(i % 7))) bad = i;
    for (std::size_t i = 0; i < words_out.size() && bad == n; ++i)
      if (words_out[i] != 1) bad = i;
    if (comm.all_reduce(bad == n ? 0.0 : 1.0, dppf::reduce_op::max) != 0.0) {
      if (bad != n) std::fprintf(stderr, "rank %d: %s N=%zu: element %zu is wrong\n", rank, c.impl.c_str(), n, bad);
      return 1;
    }
    const std::size_t k = std::clamp<std::size_t>(c.bytes_per_repeat / (n * sizeof(float)), 1, 64);
    std::vector<double> times;
    for (int r = 0; r < c.repeats; ++r) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < k; ++i) op();
      const double mine = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(k);
      times.push_back(comm.all_reduce(mine, dppf::reduce_op::max));
    }
    if (rank == 0) {
      std::printf("{\"engine\": \"%s\", \"impl\": \"%s\", \"ranks\": %d, \"n\": %zu, \"bytes\": %zu, \"iterations\": %zu, \"times_s\": [",
                  c.engine.c_str(), c.impl.c_str(), m, n, n * sizeof(float), k);
      for (std::size_t i = 0; i < times.size(); ++i) std::printf("%s%.9g", i ? ", " : "", times[i]);
      std::printf("]}\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool mpi_engine = false;
    for (int i = 1; i + 1 < argc; ++i) mpi_engine = mpi_engine || (std::string(argv[i]) == "--engine" && std::string(argv[i + 1]) == "mpi");
    if (mpi_engine) {
#if defined(DPPF_BENCH_WITH_MPI)
      dppf::mpi_environment mpi(argc, argv);
      const config c = parse(argc, argv);
      dppf::mpi_communicator comm(MPI_COMM_WORLD);
      return run(c, comm, nullptr);
#else
      usage("--engine mpi: this build has no MPI");
#endif
    }
    const config c = parse(argc, argv);
    const int rank = std::atoi(env("RANK")), size = std::atoi(env("WORLD_SIZE"));
    dppf::gloo_communicator comm(store_from_env(), rank, size,
                                 {.timeout = std::chrono::seconds(120), .address = env("DPPF_GLOO_ADDR"), .iface = {}, .check_arguments = true});
    return run(c, comm, comm.native_handle());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dppf_bench_cluster_allreduce: %s\n", e.what());
    return 1;
  }
}
