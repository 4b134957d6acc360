// The host side of the Fashion-MNIST example's GPU path (mlp_cuda.cuh, data_cuda.cuh): every
// argument check runs before anything touches the GPU, so these cases run on any machine (CI has
// no GPU) and prove it: the pointers they pass are never dereferenced, and no CUDA context is
// needed until a call's arguments are accepted. The numbers themselves are checked on a GPU by
// test_fashion_mnist_gpu.

#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "data_cuda.cuh"
#include "mlp.hpp"
#include "mlp_cuda.cuh"
#include "support.hpp"

namespace {

// Stand-ins for device pointers: the checks must reject the call before using them.
template <class T>
T* fake(std::uintptr_t at) {
  return reinterpret_cast<T*>(at);
}

bool has_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace

TEST_CASE("mlp_cuda checks sizes and pointers before touching the GPU") {
  using dppf_test::check_throws_with;
  fmnist::mlp_cuda gpu({784, 37, 19, 10});
  const fmnist::mlp<float> host({784, 37, 19, 10});
  REQUIRE(gpu.size() == host.size());
  CHECK(gpu.layout()[5].offset == host.layout()[5].offset);
  const std::size_t n = gpu.size();
  const std::string covers = " but the layout covers " + std::to_string(n);
  const dppf::device_span<const float> params(fake<const float>(0x10000), n);
  const dppf::device_span<float> grads(fake<float>(0x20000), n);
  const float* x = fake<const float>(0x30000);
  const std::uint8_t* y = fake<const std::uint8_t>(0x40000);

  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad({params.data(), n - 1}, x, y, 4, grads); },
                                           "mlp_cuda::loss_and_grad: parameters has " + std::to_string(n - 1) +
                                               " elements" + covers);
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad(params, x, y, 4, {grads.data(), n + 1}); },
                                           "mlp_cuda::loss_and_grad: gradients has " + std::to_string(n + 1) +
                                               " elements" + covers);
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad(params, x, y, 0, grads); },
                                           "mlp_cuda::loss_and_grad: the batch is empty");
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(params, x, y, std::size_t(INT_MAX) + 1, grads); },
      "mlp_cuda::loss_and_grad: 2147483648 rows per pass exceed cuBLAS's int range");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad(params, nullptr, y, 4, grads); },
                                           "mlp_cuda::loss_and_grad: null device pointer (parameters, x or y)");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad(params, x, nullptr, 4, grads); },
                                           "mlp_cuda::loss_and_grad: null device pointer (parameters, x or y)");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad({nullptr, n}, x, y, 4, grads); },
                                           "mlp_cuda::loss_and_grad: null device pointer (parameters, x or y)");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.loss_and_grad(params, x, y, 4, {nullptr, n}); },
                                           "mlp_cuda::loss_and_grad: the gradients are a null device pointer");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.evaluate({params.data(), 2}, x, y, 10); },
                                           "mlp_cuda::evaluate: parameters has 2 elements" + covers);
  check_throws_with<std::invalid_argument>([&] { (void)gpu.evaluate(params, x, y, 10, 0); },
                                           "mlp_cuda::evaluate: chunk must be positive");
  check_throws_with<std::invalid_argument>([&] { (void)gpu.evaluate(params, nullptr, y, 10); },
                                           "mlp_cuda::evaluate: null device pointer");
  check_throws_with<std::invalid_argument>([&] { gpu.init({grads.data(), n - 3}, 1); },
                                           "mlp_cuda::init: parameters has " + std::to_string(n - 3) + " elements");
  // No examples: zero sums, and still no GPU work.
  const fmnist::eval_sums none = gpu.evaluate(params, x, y, 0);
  CHECK(none.loss == 0.0);
  CHECK(none.correct == 0.0);
  CHECK(none.count == 0.0);
}

TEST_CASE("mlp_cuda rejects layer sizes mlp rejects, and sizes beyond cuBLAS's int range") {
  using dppf_test::check_throws_with;
  check_throws_with<std::invalid_argument>([] { fmnist::mlp_cuda bad({784}); },
                                           "mlp: needs at least an input and an output size");
  check_throws_with<std::invalid_argument>([] { fmnist::mlp_cuda bad({784, 0, 10}); }, "mlp: layer sizes must be positive");
  check_throws_with<std::invalid_argument>([] { fmnist::mlp_cuda bad({std::size_t(INT_MAX) + 1, 2}); },
                                           "mlp_cuda: layer size 2147483648 exceeds cuBLAS's int range");
}

TEST_CASE("mlp_cuda without a GPU fails at its first real call, naming cuBLAS" * doctest::skip(has_gpu())) {
  fmnist::mlp_cuda gpu({5, 3});
  const std::size_t n = gpu.size();
  bool thrown = false;
  try {
    (void)gpu.loss_and_grad({fake<const float>(0x10000), n}, fake<const float>(0x30000), fake<const std::uint8_t>(0x40000),
                            2, {fake<float>(0x20000), n});
  } catch (const std::runtime_error& e) {  // fmnist::cublas_error, or dppf::cuda_error from the runtime
    thrown = true;
    INFO(e.what());
    CHECK(std::string(e.what()).find("fmnist::mlp_cuda: cublasCreate") != std::string::npos);
  }
  CHECK(thrown);
}

TEST_CASE("gather_batch checks its buffers before launching") {
  using dppf_test::check_throws_with;
  const dppf::device_span<const float> images(fake<const float>(0x10000), 10 * 784);
  const std::uint8_t* labels = fake<const std::uint8_t>(0x20000);
  const std::size_t* idx = fake<const std::size_t>(0x30000);
  const dppf::device_span<float> xb(fake<float>(0x40000), 4 * 784);
  std::uint8_t* yb = fake<std::uint8_t>(0x50000);

  check_throws_with<std::invalid_argument>([&] { fmnist::gather_batch(images, labels, 0, idx, 4, xb, yb); },
                                           "fmnist::gather_batch: the image size (dim) must be positive");
  check_throws_with<std::invalid_argument>(
      [&] { fmnist::gather_batch({images.data(), 10 * 784 - 1}, labels, 784, idx, 4, xb, yb); },
      "fmnist::gather_batch: the images hold 7839 floats, not a multiple of dim = 784");
  check_throws_with<std::invalid_argument>(
      [&] { fmnist::gather_batch(images, labels, 784, idx, 5, xb, yb); },
      "fmnist::gather_batch: the batch buffer has 3136 floats but batch 5 x dim 784 = 3920 are needed");
  check_throws_with<std::invalid_argument>([&] { fmnist::gather_batch(images, labels, 784, nullptr, 4, xb, yb); },
                                           "fmnist::gather_batch: null device pointer");
  check_throws_with<std::invalid_argument>([&] { fmnist::gather_batch(images, nullptr, 784, idx, 4, xb, yb); },
                                           "fmnist::gather_batch: null device pointer");
  check_throws_with<std::invalid_argument>([&] { fmnist::gather_batch(images, labels, 784, idx, 4, xb, nullptr); },
                                           "fmnist::gather_batch: null device pointer");
  // An empty batch is nothing to do.
  fmnist::gather_batch(images, labels, 784, idx, 0, {xb.data(), 0}, yb);

  const std::vector<float> pixels(3 * 784 - 1);
  const std::vector<std::uint8_t> three(3);
  check_throws_with<std::invalid_argument>([&] { (void)fmnist::to_device(pixels, three, 784); },
                                           "fmnist::to_device: 2351 pixels for 3 labels and images of 784");
  check_throws_with<std::invalid_argument>([&] { (void)fmnist::to_device(pixels, three, 0); },
                                           "fmnist::to_device: 2351 pixels for 3 labels and images of 0");
}

TEST_CASE("device_storage of nothing allocates nothing, and assign checks the size") {
  fmnist::device_storage<std::size_t> empty(0);
  CHECK(empty.size() == 0);
  CHECK(empty.data() == nullptr);
  CHECK(empty.to_host().empty());
  empty.assign(std::span<const std::size_t>{});  // nothing to copy
  const std::vector<std::size_t> three{1, 2, 3};
  dppf_test::check_throws_with<std::invalid_argument>([&] { empty.assign(three); },
                                                      "fmnist::device_storage::assign: 3 elements do not fit in 0");
  fmnist::device_storage<std::size_t> moved(std::move(empty));
  CHECK(moved.size() == 0);
}
