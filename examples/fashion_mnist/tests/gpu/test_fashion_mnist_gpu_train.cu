// fmnist::train (train.hpp) on the GPU backend of backend_cuda.cuh (data resident, mlp_cuda,
// dppf::cuda_executor, dppf::device_group) against the CPU backend (OpenBLAS, dppf::host_executor, dppf::thread_group):
// whole training runs on a learnable synthetic set, and the replica's own checks. Needs the
// example's dependencies (OpenBLAS, zlib); test_fashion_mnist_gpu checks the model itself.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include <dppf/communicators/device_group.cuh>

#include "backend_cuda.cuh"
#include "mlp.hpp"
#include "support.hpp"
#include "train.hpp"

namespace {

struct stream_guard {
  cudaStream_t s = nullptr;
  stream_guard() { dppf::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~stream_guard() { cudaStreamDestroy(s); }
};

// A learnable synthetic set: class c's images are 0.1 * pattern_c plus N(0, 1) noise.
fmnist::dataset synthetic_set(std::size_t n, std::uint64_t seed) {
  fmnist::dataset d;
  d.count = n;
  d.dim = 784;
  std::mt19937_64 pg(12345);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> pattern(10 * 784);
  for (float& v : pattern) v = normal(pg);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> cls(0, 9);
  for (std::size_t i = 0; i < n; ++i) {
    const int c = cls(rng);
    d.y.push_back(static_cast<std::uint8_t>(c));
    for (std::size_t j = 0; j < 784; ++j) d.x.push_back(0.1f * pattern[static_cast<std::size_t>(c) * 784 + j] + normal(rng));
  }
  return d;
}

}  // namespace

TEST_CASE("fashion_mnist training on the GPU backend matches the CPU backend") {
  // Tolerances: the two runs differ only by float rounding in the gradients (cuBLAS against
  // OpenBLAS) and in the optimizer and sync kernels. On the CPU, perturbing every gradient element
  // by N(0, (1e-6 max|g|)^2) -- more than the measured float error -- moves these runs' losses by
  // at most 1.5e-6 relative and x_bar by at most 5e-5 (|x| + rms(x)), and changes no prediction;
  // we allow 1e-4, 1e-3 and two predictions of the set.
  stream_guard s;
  const fmnist::dataset train = synthetic_set(640, 1), test = synthetic_set(200, 2);
  fmnist::run_options o;
  o.workers = 2;
  o.tau = 2;
  o.epochs = 2;
  o.batch = 16;
  o.sizes = {784, 32, 10};
  o.sharpness_samples = 0;
  const fmnist::cuda_backend gpu(train, test, s.s);
  for (const char* method : {"dppf", "ddp"}) {
    CAPTURE(method);
    o.method = method;
    const fmnist::run_result want = fmnist::train(o, train, test, {}, o.workers, fmnist::host_backend{train, test},
                                                  [](auto&& f, int m) { dppf::thread_group(m).run(f); });
    const fmnist::run_result got = fmnist::train(o, train, test, {}, o.workers, gpu,
                                                 [&](auto&& f, int m) { dppf::device_group(m, s.s).run(f); });
    REQUIRE(got.epochs.size() == want.epochs.size());
    for (std::size_t e = 0; e < want.epochs.size(); ++e) {
      CAPTURE(e);
      const fmnist::epoch_record &g = got.epochs[e], &w = want.epochs[e];
      CHECK(g.train_loss == doctest::Approx(w.train_loss).epsilon(1e-4));
      CHECK(g.test_loss == doctest::Approx(w.test_loss).epsilon(1e-4));
      CHECK(g.minibatch_loss == doctest::Approx(w.minibatch_loss).epsilon(1e-4));
      CHECK(g.relaxed_mv == doctest::Approx(w.relaxed_mv).epsilon(1e-4));
      CHECK(std::abs(g.train_acc - w.train_acc) <= 2.0 / 640 + 1e-12);
      CHECK(std::abs(g.test_acc - w.test_acc) <= 2.0 / 200 + 1e-12);
      CHECK(g.comm_bytes == w.comm_bytes);
    }
    CHECK(want.last().train_acc > 0.5);  // it learned something, so the comparison means something
    CHECK(got.steps == want.steps);
    CHECK(got.syncs == want.syncs);
    REQUIRE(got.x_bar.size() == want.x_bar.size());
    double sq = 0.0;
    for (float v : want.x_bar) sq += static_cast<double>(v) * v;
    const double rms = std::sqrt(sq / static_cast<double>(want.x_bar.size()));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < want.x_bar.size(); ++i)
      bad += std::abs(static_cast<double>(got.x_bar[i]) - want.x_bar[i]) <= 1e-3 * (std::abs(want.x_bar[i]) + rms) ? 0 : 1;
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda_replica runs only the MLP and checks its ranges") {
  stream_guard s;
  const fmnist::dataset train = synthetic_set(64, 3), test = synthetic_set(10, 4);
  const fmnist::cuda_backend gpu(train, test, s.s);
  fmnist::run_options o;
  o.model = "cnn";
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)gpu.make_replica(o); },
                                                      "--model cnn: only the MLP runs on the GPU");
  o.model = "mlp";
  o.batch = 8;
  o.sizes = {784, 16, 10};
  fmnist::cuda_replica rep = gpu.make_replica(o);
  // The replica starts from mlp<float>::init, like the CPU workers.
  fmnist::mlp<float> host(o.sizes);
  std::vector<float> want(host.size());
  host.init(want, o.seed);
  CHECK(rep.to_host(rep.params()) == want);
  const std::vector<std::size_t> nine(9, 0);
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)rep.loss_and_grad(nine); },
                                                      "cuda_replica::loss_and_grad: 9 indices for a batch of 8");
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)rep.evaluate_xbar(true, 5, 6); },
                                                      "cuda_replica::evaluate_xbar: examples [5, 11) past the 10");
  fmnist::dataset bad = test;
  bad.count = 11;
  dppf_test::check_throws_with<std::invalid_argument>([&] { (void)fmnist::to_device(bad, s.s); },
                                                      "fmnist::to_device: the data set has 10 labels for 11 images");
}
