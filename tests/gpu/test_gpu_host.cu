// The host side of the GPU code, run in CI without a GPU: what is decided on the host before any
// CUDA call (launch geometry, vector-load eligibility, argument checks and their agreement across
// device_group ranks). Buffers here are device_spans over made-up addresses that are never
// dereferenced: every path tested throws before a kernel is launched, so a regression that
// launched one would fail with a CUDA error (no device, or an illegal address), not pass.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dppf/algorithms.hpp>
#include <dppf/executors/cuda.cuh>
#include <dppf/communicators/device_group.cuh>
#include <dppf/optimizers/sgd.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

template <class T>
dppf::device_span<T> fake(std::uintptr_t address, std::size_t n) {
  return {reinterpret_cast<T*>(address), n};
}

// Stand-ins for the CUDA device calls: device 0 is current, a made-up stream is on device 3, and
// cudaSetDevice records the device per thread (so a test sees what each worker thread set).
thread_local int current_device = -1;
cudaError_t stub_get_device(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t stub_stream_device(cudaStream_t, int* d) {
  *d = 3;
  return cudaSuccess;
}
cudaError_t stub_set_device(int d) {
  current_device = d;
  return cudaSuccess;
}
cudaError_t stub_fail_set_device(int) { return cudaErrorInvalidDevice; }
cudaError_t stub_fail_stream_device(cudaStream_t, int*) { return cudaErrorInvalidResourceHandle; }
const dppf::detail::cuda_device_calls stub_calls{stub_get_device, stub_stream_device, stub_set_device};
const auto fake_stream = reinterpret_cast<cudaStream_t>(std::uintptr_t{0x5000});

}  // namespace

TEST_CASE("cuda launch geometry covers every element with 64-bit sizes") {
  using dppf::detail::cuda_block;
  using dppf::detail::cuda_blocks;
  CHECK(cuda_blocks(0, 1024) == 1);
  CHECK(cuda_blocks(1, 1024) == 1);
  CHECK(cuda_blocks(256, 1024) == 1);
  CHECK(cuda_blocks(257, 1024) == 2);
  CHECK(cuda_blocks(std::size_t{1} << 40, 65536) == 65536);  // grid-stride beyond the cap
  // Below the cap, blocks * block >= work: no element is left to a thread that does not exist.
  for (const std::size_t work : {std::size_t{1}, std::size_t{255}, std::size_t{1000003}, (std::size_t{1} << 24) - 1}) {
    const std::size_t b = cuda_blocks(work, 65536);
    CHECK(b * cuda_block >= work);
    CHECK((b - 1) * cuda_block < work);
  }
}

TEST_CASE("cuda vector loads only on 16-byte aligned buffers of every type in the launch") {
  using dppf::detail::cuda_aligned;
  using dppf::detail::cuda_vector_lanes;
  CHECK(cuda_vector_lanes<float> == 4);
  CHECK(cuda_vector_lanes<const float, float> == 4);
  CHECK(cuda_vector_lanes<double> == 2);
  CHECK(cuda_vector_lanes<float, const double> == 2);
  const auto* f0 = reinterpret_cast<const float*>(std::uintptr_t{0x1000});
  auto* d0 = reinterpret_cast<double*>(std::uintptr_t{0x2000});
  CHECK(cuda_aligned(4, f0));
  CHECK_FALSE(cuda_aligned(4, f0 + 1));  // a misaligned offset falls back to scalar loads
  CHECK_FALSE(cuda_aligned(4, f0 + 2));
  CHECK(cuda_aligned(4, f0 + 4));
  CHECK(cuda_aligned(2, f0 + 2, d0));  // mixed: 2 lanes, 8 bytes of float, 16 of double
  CHECK_FALSE(cuda_aligned(2, f0 + 1, d0));
  CHECK_FALSE(cuda_aligned(2, f0, d0 + 1));
}

TEST_CASE("cuda kernel arguments: constness travels as a mask and tables fit the parameter space") {
  using dppf::detail::cuda_const_mask;
  CHECK(cuda_const_mask<float, const float, float>() == 0b010ull);
  CHECK(cuda_const_mask<const double, const double>() == 0b11ull);
  CHECK(cuda_const_mask<float>() == 0ull);
  // A multi-tensor table and the largest functor (AdamW's) stay inside the 4 KiB every
  // architecture accepts as kernel parameters.
  using table5 = dppf::detail::cuda_tensor_table<dppf::detail::cuda_table_capacity<float, const float, float, float, float>,
                                                 float, float, float, float, float>;
  using table1 = dppf::detail::cuda_tensor_table<dppf::detail::cuda_table_capacity<float>, float>;
  CHECK(sizeof(table5) + 256 <= 4096);
  CHECK(sizeof(table1) + 256 <= 4096);
  CHECK(sizeof(dppf::detail::device_group_table<double>) + 64 <= 4096);
}

TEST_CASE("cuda executor rejects mismatched buffers before any launch") {
  const dppf::cuda_executor ex{};
  const auto x = fake<const float>(0x10000, 5);
  const auto y = fake<float>(0x20000, 4);
  dppf_test::check_throws_with<std::invalid_argument>([&] { dppf::axpy(ex, 1.0f, x, y); }, "different sizes (5 and 4)");
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)dppf::dot(ex, x, y); }, "different sizes (5 and 4)");
}

TEST_CASE("cuda multi-tensor apply checks every tensor before the first launch") {
  const dppf::cuda_executor ex{};
  const dppf::detail::sgd_update<float> f{-0.1f, 0.9f, 1.0f, 0.0f, false, false, false};
  constexpr std::size_t cap = dppf::detail::cuda_table_capacity<float, const float, float>;
  std::vector<dppf::device_span<float>> p, m;
  std::vector<dppf::device_span<const float>> g;
  for (std::size_t t = 0; t < 2 * cap + 3; ++t) {
    p.push_back(fake<float>(0x100000 + t * 0x1000, 7));
    g.push_back(fake<const float>(0x800000 + t * 0x1000, 7));
    m.push_back(fake<float>(0xf00000 + t * 0x1000, 7));
  }
  // The bad tensor is in the third launch's group: the first two must not have been launched.
  const std::size_t bad = 2 * cap + 1;
  m[bad] = m[bad].subspan(0, 6);
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(p), std::span<const dppf::device_span<const float>>(g),
                                std::span<const dppf::device_span<float>>(m));
      },
      "tensor " + std::to_string(bad) + ")");
  // Lists of different lengths.
  m.pop_back();
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] {
        ex.transform_lists_each(f, std::span<const dppf::device_span<float>>(p), std::span<const dppf::device_span<const float>>(g),
                                std::span<const dppf::device_span<float>>(m));
      },
      "tensor counts");
}

TEST_CASE("device_group: one rank's bad arguments raise on every rank before any device work") {
  // A short timeout: a rank left waiting at a barrier would fail with a timeout, not pass.
  dppf::device_group group(3, nullptr, {.timeout = std::chrono::seconds(20)}, stub_calls);
  std::vector<std::string> caught(3);
  group.run([&](dppf::device_communicator c) {
    const auto r = std::size_t(c.rank());
    const auto x = fake<const float>(0x10000 * (r + 1), 8);
    const auto y = fake<float>(0x100000 * (r + 1), r == 1 ? 9 : 8);
    try {
      c.all_reduce(x, y, dppf::reduce_op::avg);
    } catch (const std::exception& e) {
      caught[r] = e.what();
    }
  });
  CHECK(caught[1].find("output has 9 elements, expected 8") != std::string::npos);
  CHECK(caught[0].find("device_group::all_reduce: rank 1 rejected its arguments, so rank 0 stops too") != std::string::npos);
  CHECK(caught[2].find("device_group::all_reduce: rank 1 rejected its arguments, so rank 2 stops too") != std::string::npos);

  std::vector<std::string> op(3), root(3);
  group.run([&](dppf::device_communicator c) {
    const auto r = std::size_t(c.rank());
    auto x = fake<float>(0x10000 * (r + 1), 8);
    try {
      c.all_reduce(x, r == 2 ? dppf::reduce_op::max : dppf::reduce_op::sum);
    } catch (const std::exception& e) {
      op[r] = e.what();
    }
    try {
      c.broadcast(x, r == 0 ? 7 : 0);
    } catch (const std::exception& e) {
      root[r] = e.what();
    }
  });
  CHECK(op[2].find("supports sum and avg, not max") != std::string::npos);
  CHECK(op[0].find("rank 2 rejected") != std::string::npos);
  CHECK(root[0].find("device_group::broadcast: root 7 is outside [0, 3)") != std::string::npos);
  CHECK(root[1].find("rank 0 rejected") != std::string::npos);
  CHECK(root[2].find("rank 0 rejected") != std::string::npos);
}

TEST_CASE("device_group: buffer sizes that differ across ranks raise on every rank") {
  dppf::device_group group(2, nullptr, {.timeout = std::chrono::seconds(20)}, stub_calls);
  std::vector<std::string> caught(2);
  group.run([&](dppf::device_communicator c) {
    const auto r = std::size_t(c.rank());
    auto x = fake<float>(0x10000 * (r + 1), r == 0 ? 4 : 5);
    try {
      c.all_reduce(x, dppf::reduce_op::sum);
    } catch (const std::invalid_argument& e) {
      caught[r] = e.what();
    }
  });
  for (const auto& e : caught) CHECK(e.find("rank 0 has 4 elements of 4 bytes, rank 1 has 5 elements") != std::string::npos);
}

TEST_CASE("device_group: ranks that name different broadcast roots, or reduce_ops, raise on every rank before any device work") {
  // Each rank naming itself as root used to make every rank copy its buffer into the others'.
  dppf::device_group group(3, nullptr, {.timeout = std::chrono::seconds(20)}, stub_calls);
  std::vector<std::string> roots(3), ops(3);
  group.run([&](dppf::device_communicator c) {
    const auto r = std::size_t(c.rank());
    auto x = fake<float>(0x10000 * (r + 1), 8);
    try {
      c.broadcast(x, c.rank());
    } catch (const std::invalid_argument& e) {
      roots[r] = e.what();
    }
    try {
      c.all_reduce(x, r == 1 ? dppf::reduce_op::avg : dppf::reduce_op::sum);
    } catch (const std::invalid_argument& e) {
      ops[r] = e.what();
    }
  });
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(roots[r] == "dppf: device_group::broadcast: roots differ across ranks (rank 0 has root 0, rank 1 has root 1, rank 2 has "
                      "root 2; this is rank " + std::to_string(r) + ")");
    CHECK(ops[r] == "dppf: device_group::all_reduce: reduce_ops differ across ranks (rank 0 has reduce_op sum, rank 1 has "
                    "reduce_op avg; this is rank " + std::to_string(r) + ")");
  }
}

TEST_CASE("device_group: the device is the stream's, and every worker thread makes it current") {
  using dppf::detail::stream_device;
  CHECK(stream_device(nullptr, stub_calls) == 0);  // the default stream: the current device
  CHECK(stream_device(cudaStreamPerThread, stub_calls) == 0);
  CHECK(stream_device(cudaStreamLegacy, stub_calls) == 0);
  CHECK(stream_device(fake_stream, stub_calls) == 3);  // any other stream: its own device

  dppf::device_group group(4, fake_stream, {.timeout = std::chrono::seconds(20)}, stub_calls);
  CHECK(group.device() == 3);
  std::vector<int> seen(4, -1);
  group.run([&](dppf::device_communicator c) { seen[std::size_t(c.rank())] = current_device; });
  CHECK(seen == std::vector<int>(4, 3));
  CHECK(dppf::device_group(2, nullptr, {}, stub_calls).device() == 0);

  // A failed cudaSetDevice raises there, naming the device, and aborts the others (no hang).
  dppf::device_group failing(3, fake_stream, {.timeout = std::chrono::seconds(20)},
                             {stub_get_device, stub_stream_device, stub_fail_set_device});
  dppf_test::check_throws_with<dppf::cuda_error>([&] { failing.run([](dppf::device_communicator c) { c.barrier(); }); },
                                                 "cudaSetDevice(3) on worker");
  // A stream whose device cannot be found: the group is not made.
  dppf_test::check_throws_with<dppf::cuda_error>(
      [&] { dppf::device_group g(2, fake_stream, {}, {stub_get_device, stub_fail_stream_device, stub_set_device}); },
      "device_group: cudaStreamGetDevice");
}

TEST_CASE("cuda reductions: a thread's elements and their order depend on n and the grid only, and cover every element once") {
  using dppf::detail::cuda_thread_elements;
  // The kernel's two load paths (vector loads for aligned buffers, scalar ones otherwise) both
  // visit these elements in this order, so the same data at another offset sums to the same
  // bits. Replayed here for the grids the executor uses.
  for (const std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{4097}, std::size_t{3000017}}) {
    const std::size_t blocks = dppf::detail::cuda_blocks(n, dppf::detail::cuda_reduce_blocks);
    const std::size_t threads = blocks * dppf::detail::cuda_block;
    CAPTURE(n);
    std::vector<unsigned char> seen(n, 0);
    std::size_t bad_order = 0, bad_chunk = 0;
    for (std::size_t tid = 0; tid < threads; ++tid) {
      std::size_t last = 0;
      bool first = true;
      const auto visit = [&](std::size_t i) {
        bad_order += !first && i <= last;  // increasing within a thread
        first = false;
        last = i;
        if (i < n) ++seen[i];
      };
      cuda_thread_elements<4>(n, tid, threads,
                              [&](std::size_t j) {
                                bad_chunk += j % threads != tid;  // chunk j belongs to thread j mod threads
                                for (std::size_t k = 0; k < 4; ++k) visit(4 * j + k);
                              },
                              visit);
    }
    CHECK(bad_order == 0);
    CHECK(bad_chunk == 0);
    CHECK(std::count(seen.begin(), seen.end(), 1) == std::ptrdiff_t(n));
  }
}
