// The all-reduce through dppf::mpi_communicator (average, out of place: what a DPPF sync runs), beside a raw
// MPI_Allreduce (sum, in place) for the overhead of dppf's argument checks and scaling.
// Run it under mpiexec, e.g.
//   mpiexec --allow-run-as-root --oversubscribe -n 4 dppf_bench_mpi --benchmark_out=mpi.json
//
// Every rank runs the same fixed number of iterations (ranks must agree on the collectives they
// call); each iteration's time is the slowest rank's, as nccl-tests reports. Only rank 0 reports.
// Algorithm bandwidth = N * 4 bytes / time; bus bandwidth = algorithm * 2 (M - 1) / M.

#include <benchmark/benchmark.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <dppf/communicators/mpi.hpp>

#include "bench_support.hpp"

namespace {

using namespace dppf_bench;

// Keeps the other ranks quiet: they run every benchmark but report nothing.
class null_reporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

template <class Op>
void timed_collective(benchmark::State& state, MPI_Comm world, Op op) {
  const auto n = static_cast<std::size_t>(state.range(0));
  int m = 1;
  MPI_Comm_size(world, &m);
  for (auto _ : state) {
    MPI_Barrier(world);
    const auto t0 = std::chrono::steady_clock::now();
    op();
    const double mine = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double slowest = 0.0;
    MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, world);
    state.SetIterationTime(slowest);
  }
  const double total = static_cast<double>(n * sizeof(float)) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
  state.counters["bus_bandwidth"] = benchmark::Counter(total * 2.0 * (m - 1) / m, benchmark::Counter::kIsRate);
  state.counters["workers"] = m;
}

void bm_dppf_mpi(benchmark::State& state, dppf::mpi_communicator* comm) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> x(n), mean(n);
  fill_random(x, static_cast<std::uint64_t>(comm->rank()));
  timed_collective(state, MPI_COMM_WORLD, [&] { comm->all_reduce(x, mean, dppf::reduce_op::avg); });
}

void bm_raw_mpi(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> x(n);
  fill_random(x, 7);
  timed_collective(state, MPI_COMM_WORLD, [&] {
    MPI_Allreduce(MPI_IN_PLACE, x.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  });
}

// A fixed iteration count per size, the same on every rank: about 2^27 elements moved in all.
std::int64_t iterations_for(std::int64_t n) { return std::clamp<std::int64_t>((std::int64_t{1} << 27) / n, 3, 200); }

}  // namespace

int main(int argc, char** argv) {
  dppf::mpi_environment env(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Only rank 0 writes --benchmark_out: google-benchmark opens (and truncates) that file on every
  // process that sees the flag, even with a reporter that writes nothing.
  if (rank != 0)
    argc = static_cast<int>(std::remove_if(argv + 1, argv + argc, [](const char* a) {
                              return std::string_view(a).starts_with("--benchmark_out");
                            }) - argv);
  benchmark::Initialize(&argc, argv);
  dppf::mpi_communicator comm(MPI_COMM_WORLD);
  for (int e = 16; e <= 26; e += 2) {
    const std::int64_t n = std::int64_t{1} << e;
    benchmark::RegisterBenchmark("all_reduce/mpi", bm_dppf_mpi, &comm)
        ->Arg(n)
        ->ArgName("N")
        ->Iterations(iterations_for(n))
        ->UseManualTime();
    benchmark::RegisterBenchmark("all_reduce/raw_mpi_sum_in_place", bm_raw_mpi)
        ->Arg(n)
        ->ArgName("N")
        ->Iterations(iterations_for(n))
        ->UseManualTime();
  }
  if (comm.rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    null_reporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();
  return 0;
}
