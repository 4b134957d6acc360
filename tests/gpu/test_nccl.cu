// dppf::nccl_communicator with one rank (any GPU machine) and, where several GPUs exist, one rank per GPU on
// threads of this process.

#include <dppf/executors/cuda.cuh>
#include <dppf/communicators/nccl.cuh>
#include <dppf/communicators/thread_group.hpp>
#include <dppf/consensus/pull_push.hpp>
#include <dppf/trainer.hpp>

#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gpu/executor_cases.hpp"

static_assert(dppf::communicator<dppf::nccl_communicator>);
static_assert(dppf::async_communicator<dppf::nccl_communicator>);

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

// A kernel that keeps the stream busy for about `ns` nanoseconds, then writes `value`.
__global__ void nccl_test_spin_then_write(float* x, float value, long long ns) {
  const long long t0 = clock64();
  // clock64 counts SM cycles; 2 GHz is an upper bound on Hopper's clock, so this spins >= ns/2.
  while (clock64() - t0 < 2 * ns) {
  }
  x[0] = value;
}

TEST_CASE("nccl start_all_reduce: the handle's result equals all_reduce's, in stream order, several at once") {
  cudaStream_t s = nullptr;
  dppf::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
  {
    // Unchecked sizes: a start queues at once instead of first agreeing (which would wait for
    // the stream's work), so the first test() below is known to come before the result.
    dppf::nccl_communicator comm(dppf::nccl_communicator::unique_id(), 0, 1, s,
                                 {.timeout = std::chrono::seconds(60), .check_sizes = false});
    const auto h = dppf_test::random_vector<float>(1 << 22, 5);
    auto x = dppf::to_device(h, s);
    auto y = dppf::cuda_executor{s}.allocate<float>(h.size());
    auto flag = dppf::to_device(std::vector<float>{0.0f}, s);
    // A slow kernel queued before the start, then x rewritten: the all-reduce must read x after both.
    const auto h2 = dppf_test::random_vector<float>(h.size(), 6);
    nccl_test_spin_then_write<<<1, 1, 0, s>>>(flag.data(), 1.0f, 500'000'000);  // about 0.25 to 0.5 s
    dppf::cuda_check_launch("spin kernel");
    dppf::cuda_check(cudaMemcpyAsync(x.data(), h2.data(), h2.size() * sizeof(float), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    auto started = comm.start_all_reduce(dppf::device_span<const float>(x.data(), x.size()), dppf::device_span<float>(y.data(), y.size()),
                                         dppf::reduce_op::avg);
    CHECK_FALSE(started.test());  // behind the spinning kernel
    started.wait();
    CHECK(dppf::to_host(flag, s) == std::vector<float>{1.0f});
    CHECK(dppf::to_host(y, s) == h2);  // one rank: the average is the buffer itself, every element
    // In place, sum, and several outstanding at once, waited out of order; a blocking collective
    // issued while they are in flight is queued behind them.
    auto a = comm.start_all_reduce(dppf::device_span<float>(x.data(), x.size()), dppf::reduce_op::sum);
    auto b = comm.start_all_reduce(dppf::device_span<const float>(x.data(), x.size()), dppf::device_span<float>(y.data(), y.size()),
                                   dppf::reduce_op::sum);
    CHECK(comm.all_reduce(3.0, dppf::reduce_op::sum) == 3.0);
    CHECK(b.test());  // the blocking collective ran after both
    b.wait();
    a.wait();
    CHECK(a.test());  // a waited handle stays done
    CHECK(dppf::to_host(x, s) == h2);
    CHECK(dppf::to_host(y, s) == h2);
    // A handle moved from is empty; the one moved into waits as the original would.
    auto c = comm.start_all_reduce(dppf::device_span<const float>(x.data(), x.size()), dppf::device_span<float>(y.data(), y.size()),
                                   dppf::reduce_op::avg);
    auto d = std::move(c);
    CHECK(c.test());
    d.wait();
    // Own bad arguments raise at the start, and leave the buffers as they were.
    auto short_y = dppf::cuda_executor{s}.allocate<float>(5);
    dppf_test::check_throws_with<std::invalid_argument>(
        [&] { (void)comm.start_all_reduce(dppf::device_span<const float>(x.data(), x.size()), dppf::device_span<float>(short_y.data(), 5), dppf::reduce_op::avg); },
        "output has 5 elements");
    dppf_test::check_throws_with<std::invalid_argument>(
        [&] { (void)comm.start_all_reduce(dppf::device_span<float>(x.data(), x.size()), dppf::reduce_op::max); },
        "supports sum and avg, not max");
    CHECK(dppf::to_host(x, s) == h2);
  }
  {
    // With the agreement (the default), the same result.
    dppf::nccl_communicator comm(dppf::nccl_communicator::unique_id(), 0, 1, s, {.timeout = std::chrono::seconds(60)});
    const auto h = dppf_test::random_vector<float>(100003, 7);
    auto x = dppf::to_device(h, s);
    auto y = dppf::cuda_executor{s}.allocate<float>(h.size());
    auto started = comm.start_all_reduce(dppf::device_span<const float>(x.data(), x.size()), dppf::device_span<float>(y.data(), y.size()),
                                         dppf::reduce_op::avg);
    started.wait();
    CHECK(dppf::to_host(y, s) == h);
  }
  cudaStreamDestroy(s);
}

TEST_CASE("nccl start_all_reduce averages one buffer per GPU like a double loop, with a blocking collective in between") {
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices < 2) {
    MESSAGE("skipped: one GPU");
    return;
  }
  const std::size_t n = 1000003;
  std::vector<std::vector<float>> in, out(static_cast<std::size_t>(devices));
  for (int r = 0; r < devices; ++r) in.push_back(dppf_test::random_vector<float>(n, 70 + std::uint64_t(r)));
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  std::vector<std::thread> pool;
  std::vector<std::string> errors(static_cast<std::size_t>(devices));
  std::vector<double> scalars(static_cast<std::size_t>(devices));
  for (int r = 0; r < devices; ++r)
    pool.emplace_back([&, r] {
      try {
        dppf::cuda_check(cudaSetDevice(r), "cudaSetDevice");
        dppf::nccl_communicator comm(id, r, devices, nullptr, {.timeout = std::chrono::seconds(60)});
        auto x = dppf::to_device(in[std::size_t(r)]);
        auto y = dppf::to_device(std::vector<float>(n, -1.0f));
        auto h = comm.start_all_reduce(dppf::device_span<const float>(x.data(), n), dppf::device_span<float>(y.data(), n), dppf::reduce_op::avg);
        scalars[std::size_t(r)] = comm.all_reduce(double(r), dppf::reduce_op::sum);  // queued behind it, in the same order
        h.wait();
        out[std::size_t(r)] = dppf::to_host(y);
      } catch (const std::exception& e) {
        errors[std::size_t(r)] = e.what();
      }
    });
  for (auto& t : pool) t.join();
  for (const auto& e : errors) CHECK(e == "");
  for (const double v : scalars) CHECK(v == devices * (devices - 1) / 2.0);
  std::size_t bad = 0;  // the tolerance of the blocking case above: NCCL's order is its own
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

TEST_CASE("nccl start_all_reduce: a rank that never starts it makes the others' wait raise timeout_error, not hang") {
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices < 2) {
    MESSAGE("skipped: one GPU");
    return;
  }
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  std::vector<std::string> errors(static_cast<std::size_t>(devices));
  std::vector<double> seconds(errors.size());
  std::vector<std::thread> pool;
  for (int r = 0; r < devices; ++r)
    pool.emplace_back([&, r] {
      try {
        dppf::cuda_check(cudaSetDevice(r), "cudaSetDevice");
        // Unchecked sizes: the start queues at once, so the wait is where the missing rank shows.
        dppf::nccl_communicator comm(id, r, devices, nullptr, {.timeout = std::chrono::seconds(3), .check_sizes = false});
        auto x = dppf::to_device(std::vector<float>(1 << 20, 1.0f));
        if (r == devices - 1) return;  // never starts it; its communicator is finalized or aborted on exit
        const auto t0 = std::chrono::steady_clock::now();
        auto h = comm.start_all_reduce(dppf::device_span<float>(x.data(), x.size()), dppf::reduce_op::sum);
        try {
          h.wait();
        } catch (const dppf::timeout_error& e) {
          errors[std::size_t(r)] = e.what();
        }
        seconds[std::size_t(r)] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } catch (const std::exception& e) {
        errors[std::size_t(r)] = std::string("unexpected: ") + e.what();
      }
    });
  for (auto& t : pool) t.join();
  for (int r = 0; r + 1 < devices; ++r) {
    CAPTURE(r);
    CHECK(errors[std::size_t(r)].find("start_all_reduce timed out after 3000 ms") != std::string::npos);
    CHECK(seconds[std::size_t(r)] < 3.0 + 5.0);
  }
}

TEST_CASE("nccl overlapped sync: the trainer over nccl and the cuda executor matches threads and the host") {
  // One rank per GPU (one on a one-GPU machine), DPPF's pull-push with the sync overlapped with
  // the next 2 of tau = 4 steps, against the same over thread_group and host_executor.
  int devices = 0;
  dppf::cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  const std::size_t n = 10007;
  const int steps = 13;
  const dppf::trainer_options options{.tau = 4, .overlap_steps = 2};
  const dppf::sgd sgd{{.lr = 0.1, .momentum = 0.9}};
  const auto rule = [] { return dppf::pull_push{{.alpha = 0.1, .lambda = 0.05}}; };
  std::vector<std::vector<float>> start, host_out(static_cast<std::size_t>(devices)),
      dev_out(static_cast<std::size_t>(devices));
  for (int r = 0; r < devices; ++r) start.push_back(dppf_test::random_vector<float>(n, 90 + std::uint64_t(r)));
  const auto grads = [&](int r, int k, const std::vector<float>& x) {
    auto g = dppf_test::random_vector<float>(n, 2000 + std::uint64_t(r * 100 + k), 0.01);
    for (std::size_t i = 0; i < n; ++i) g[i] += x[i] - float(r) * 0.1f;
    return g;
  };
  dppf::thread_group(devices).run([&](dppf::thread_communicator comm) {
    const auto r = std::size_t(comm.rank());
    std::vector<float> x = start[r];
    dppf::trainer tr{sgd, rule(), comm, dppf::host_executor{}, options};
    for (int k = 0; k < steps; ++k) tr.step(x, grads(comm.rank(), k, x), 1.0);
    tr.finish_sync(x);
    host_out[r] = x;
  });
  const ncclUniqueId id = dppf::nccl_communicator::unique_id();
  std::vector<std::string> errors(static_cast<std::size_t>(devices));
  std::vector<std::thread> pool;
  for (int r = 0; r < devices; ++r)
    pool.emplace_back([&, r] {
      try {
        dppf::cuda_check(cudaSetDevice(r), "cudaSetDevice");
        cudaStream_t s = nullptr;
        dppf::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        {
          auto x = dppf::to_device(start[std::size_t(r)], s);
          dppf::trainer tr{sgd, rule(), dppf::nccl_communicator(id, r, devices, s, {.timeout = std::chrono::seconds(60)}),
                           dppf::cuda_executor{s}, options};
          for (int k = 0; k < steps; ++k) tr.step(x, dppf::to_device(grads(r, k, dppf::to_host(x, s)), s), 1.0);
          tr.finish_sync(x);
          dev_out[std::size_t(r)] = dppf::to_host(x, s);
        }
        cudaStreamDestroy(s);
      } catch (const std::exception& e) {
        errors[std::size_t(r)] = e.what();
      }
    });
  for (auto& t : pool) t.join();
  std::size_t bad = 0;
  for (int r = 0; r < devices; ++r) {
    CAPTURE(r);
    CHECK(errors[std::size_t(r)] == "");
    if (dev_out[std::size_t(r)].size() != n) continue;
    // The tolerance of test_gpu's trainer cases (FMA and summation order, a few dozen ulps).
    double sq = 0;
    for (const float v : host_out[std::size_t(r)]) sq += double(v) * double(v);
    const double rms = std::sqrt(sq / double(n));
    for (std::size_t i = 0; i < n; ++i) {
      const double want = host_out[std::size_t(r)][i], got = dev_out[std::size_t(r)][i];
      bad += !(std::abs(got - want) <= 1e-5 * (std::abs(want) + rms));
    }
  }
  CHECK(bad == 0);
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
