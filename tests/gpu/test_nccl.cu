// dppf::nccl_communicator with one rank (any GPU machine) and, where several GPUs exist, one rank per GPU on
// threads of this process.

#include <dppf/executors/cuda.cuh>
#include <dppf/communicators/nccl.cuh>

#include <cfloat>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "gpu/executor_cases.hpp"

static_assert(dppf::communicator<dppf::nccl_communicator>);

TEST_CASE("nccl communicator with one rank is the identity") {
  cudaStream_t s = nullptr;
  dppf::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
  {
    dppf::nccl_communicator comm(dppf::nccl_communicator::unique_id(), 0, 1, s, {.timeout = std::chrono::seconds(60)});
    CHECK(comm.rank() == 0);
    CHECK(comm.size() == 1);
    const auto h = dppf_test::random_vector<float>(1000003, 3);
    auto x = dppf::to_device(h, s);
    auto y = dppf::cuda_executor{s}.allocate<float>(h.size());
    comm.all_reduce(x, y, dppf::reduce_op::avg);
    CHECK(dppf::to_host(y, s) == h);
    comm.all_reduce(x, dppf::reduce_op::sum);
    CHECK(dppf::to_host(x, s) == h);
    comm.broadcast(x, 0);
    CHECK(dppf::to_host(x, s) == h);
    CHECK(comm.all_reduce(2.5, dppf::reduce_op::avg) == 2.5);
    CHECK(comm.all_reduce(-1.0, dppf::reduce_op::min) == -1.0);
    CHECK(comm.all_gather(7.0) == std::vector<double>{7.0});
    comm.barrier();
    dppf_test::check_throws_with<std::invalid_argument>([&] { comm.all_reduce(x, dppf::reduce_op::max); },
                                                        "nccl::all_reduce of a buffer supports sum and avg, not max");
    auto short_y = dppf::cuda_executor{s}.allocate<float>(5);
    dppf_test::check_throws_with<std::invalid_argument>([&] { comm.all_reduce(x, short_y, dppf::reduce_op::avg); },
                                                        "output has 5 elements");
  }
  cudaStreamDestroy(s);
}

TEST_CASE("nccl communicator rejects a bad rank and size") {
  const ncclUniqueId id{};
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::nccl_communicator(id, 1, 1); }, "rank");
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::nccl_communicator(id, 0, 0); }, "size");
}

// Run as its own CTest entry (test_nccl_timeout, with a short TIMEOUT): if aborting a pending
// initialization ever hung, it would cost that entry's minute, not the other NCCL tests.
TEST_CASE("nccl: a rank that never arrives makes initialization time out and raise, not hang") {
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  dppf_test::check_throws_with<dppf::communication_error>(
      [&] { dppf::nccl_communicator comm(id, 0, 2, nullptr, {.timeout = std::chrono::seconds(3)}); },
      "ncclCommInitRankConfig timed out after 3000 ms on rank 0 of 2 (communicator aborted)");
}

TEST_CASE("nccl averages one buffer per GPU like a double loop") {
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices < 2) {
    MESSAGE("skipped: one GPU");
    return;
  }
  const std::size_t n = 1000003;
  std::vector<std::vector<float>> in, out(static_cast<std::size_t>(devices));
  for (int r = 0; r < devices; ++r) in.push_back(dppf_test::random_vector<float>(n, 40 + std::uint64_t(r)));
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  std::vector<std::thread> pool;
  std::vector<std::string> errors(static_cast<std::size_t>(devices));
  for (int r = 0; r < devices; ++r)
    pool.emplace_back([&, r] {
      try {
        dppf::cuda_check(cudaSetDevice(r), "cudaSetDevice");
        dppf::nccl_communicator comm(id, r, devices, nullptr, {.timeout = std::chrono::seconds(60)});
        auto x = dppf::to_device(in[std::size_t(r)]);
        comm.all_reduce(x, dppf::reduce_op::avg);
        out[std::size_t(r)] = dppf::to_host(x);
      } catch (const std::exception& e) {
        errors[std::size_t(r)] = e.what();
      }
    });
  for (auto& t : pool) t.join();
  for (const auto& e : errors) CHECK(e == "");
  // NCCL's summation order is its own: |err| <= devices eps sum |x| (float accumulation).
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0, mag = 0;
    for (int r = 0; r < devices; ++r) {
      acc += in[std::size_t(r)][i];
      mag += std::abs(in[std::size_t(r)][i]);
    }
    for (int r = 0; r < devices; ++r)
      bad += !(std::abs(out[std::size_t(r)][i] - acc / devices) <= devices * FLT_EPSILON * mag / devices + FLT_MIN);
  }
  CHECK(bad == 0);
}

TEST_CASE("nccl: ranks that name different broadcast roots, or one rank's bad root, raise on every rank, with no hang") {
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices < 2) {
    MESSAGE("skipped: one GPU");
    return;
  }
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  std::vector<std::string> differ(static_cast<std::size_t>(devices)), bad(differ.size()), errors(differ.size());
  std::vector<std::vector<float>> after(differ.size());
  std::vector<std::thread> pool;
  for (int r = 0; r < devices; ++r)
    pool.emplace_back([&, r] {
      const auto k = std::size_t(r);
      try {
        dppf::cuda_check(cudaSetDevice(r), "cudaSetDevice");
        dppf::nccl_communicator comm(id, r, devices, nullptr, {.timeout = std::chrono::seconds(60)});
        auto x = dppf::to_device(std::vector<float>(9, float(r)));
        try {
          comm.broadcast(x, r);  // every rank names itself
        } catch (const std::invalid_argument& e) {
          differ[k] = e.what();
        }
        try {
          comm.broadcast(x, r == 1 ? devices : 0);
        } catch (const std::exception& e) {
          bad[k] = e.what();
        }
        after[k] = dppf::to_host(x);
      } catch (const std::exception& e) {
        errors[k] = e.what();
      }
    });
  for (auto& t : pool) t.join();
  for (int r = 0; r < devices; ++r) {
    const auto k = std::size_t(r);
    CAPTURE(r);
    CHECK(errors[k] == "");
    CHECK(differ[k].find("nccl::broadcast: roots differ across ranks (rank 0 has root 0, rank 1 has root 1") != std::string::npos);
    CHECK(bad[k].find(r == 1 ? "root " + std::to_string(devices) + " is outside" : "rank 1 rejected its arguments") != std::string::npos);
    CHECK(after[k] == std::vector<float>(9, float(r)));  // nothing was broadcast
  }
}
