#pragma once
// The Fashion-MNIST example's workers on a GPU: fmnist::cuda_backend and fmnist::cuda_replica
// give fmnist::train (train.hpp) what host_backend and host_replica give it, with the data sets
// resident on the device (uploaded once), parameters, gradients and x_bar in device memory, the
// MLP on cuBLAS (mlp_cuda) and the dppf::cuda_executor executor, all on one stream.
//
// The communicator must take device buffers and order its work with that stream:
//   one GPU, M workers as threads:  dppf::device_group group(M, backend.stream()); group.run(f);
//   one process per GPU (MPI):      f(dppf::nccl_from_mpi(MPI_COMM_WORLD, backend.stream()))
// Only the MLP runs here (the CNN is CPU-only).

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <dppf/executors/cuda.cuh>
#include <dppf/device_array.cuh>

#include "data_cuda.cuh"
#include "mlp_cuda.cuh"
#include "train.hpp"

namespace fmnist {

/// Uploads `d` on `stream` (waits for the copies).
inline device_dataset to_device(const dataset& d, cudaStream_t stream = nullptr) {
  if (d.y.size() != d.count)
    throw std::invalid_argument("fmnist::to_device: the data set has " + std::to_string(d.y.size()) + " labels for " +
                                std::to_string(d.count) + " images");
  return to_device(d.x, d.y, d.dim, stream);
}

/// One worker's model and buffers on the device (see host_replica for the interface).
class cuda_replica {
 public:
  using executor_type = dppf::cuda_executor;

  cuda_replica(const run_options& o, const device_dataset& train, const device_dataset& test, cudaStream_t stream)
      : model_(mlp_sizes(o), stream),
        train_(train),
        test_(test),
        stream_(stream),
        params_(model_.size(), stream),
        grads_(model_.size(), stream),
        xbar_(model_.size(), stream),
        xb_(o.batch * train.dim, stream),
        yb_(o.batch, stream),
        idx_(o.batch, stream) {
    model_.init(dppf::view(params_), o.seed);  // mlp<float>::init's values: the host's start
  }

  executor_type executor() const { return executor_type{stream_}; }
  dppf::device_array<float>& params() { return params_; }
  dppf::device_array<float>& grads() { return grads_; }
  dppf::device_array<float>& xbar() { return xbar_; }

  /// Loss of the training examples `indices` (host indices into the training set) at params(),
  /// and its gradient into grads(): the indices are copied up, the batch gathered on the device.
  double loss_and_grad(std::span<const std::size_t> indices) {
    const std::size_t b = indices.size();
    if (b > idx_.size())
      throw std::invalid_argument("cuda_replica::loss_and_grad: " + std::to_string(b) + " indices for a batch of " +
                                  std::to_string(idx_.size()));
    idx_.assign(indices);
    gather_batch(train_, idx_.data(), b, {xb_.data(), b * train_.dim}, yb_.data(), stream_);
    return model_.loss_and_grad(dppf::view(std::as_const(params_)), xb_.data(), yb_.data(), b, dppf::view(grads_));
  }

  /// Sums of the loss and correct predictions of xbar() on n examples of one set from `begin`.
  eval_sums evaluate_xbar(bool test_set, std::size_t begin, std::size_t n) {
    const device_dataset& d = test_set ? test_ : train_;
    if (begin + n > d.count)
      throw std::invalid_argument("cuda_replica::evaluate_xbar: examples [" + std::to_string(begin) + ", " +
                                  std::to_string(begin + n) + ") past the " + std::to_string(d.count) + " of the set");
    return model_.evaluate(dppf::view(std::as_const(xbar_)), d.x.data() + begin * d.dim, d.y.data() + begin, n);
  }

  std::vector<float> to_host(const dppf::device_array<float>& b) const { return dppf::to_host(b, stream_); }

 private:
  static std::vector<std::size_t> mlp_sizes(const run_options& o) {
    if (o.model != "mlp")
      throw std::invalid_argument("--model " + o.model + ": only the MLP runs on the GPU (use --model mlp)");
    return o.sizes;
  }

  mlp_cuda model_;
  const device_dataset& train_;
  const device_dataset& test_;
  cudaStream_t stream_;
  dppf::device_array<float> params_, grads_, xbar_, xb_;
  device_storage<std::uint8_t> yb_;
  device_storage<std::size_t> idx_;
};

/// Workers on one GPU: the training and test sets uploaded once, shared (read-only) by every
/// replica; all work on `stream` (not owned; it must outlive the backend).
class cuda_backend {
 public:
  cuda_backend(const dataset& train, const dataset& test, cudaStream_t stream = nullptr)
      : train_(to_device(train, stream)), test_(to_device(test, stream)), stream_(stream) {}

  cudaStream_t stream() const noexcept { return stream_; }
  void prepare(int /*workers*/) const {}
  cuda_replica make_replica(const run_options& o) const { return {o, train_, test_, stream_}; }

 private:
  device_dataset train_, test_;
  cudaStream_t stream_;
};

}  // namespace fmnist
