#pragma once
// The Fashion-MNIST example's data on a GPU: the training set uploaded once (images count x dim
// floats, labels bytes), and the batch gather that copies the rows named by a device array of
// indices into the batch buffers in one kernel, so a training step moves no images over PCIe.
// Needs CUDA only (no zlib, no BLAS).

#include <cuda/std/limits>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <dppf/buffer.hpp>
#include <dppf/cuda_check.cuh>
#include <dppf/device_array.cuh>

namespace fmnist {

/// Labels and indices on the device: a dppf::device_array (stream-ordered, move-only, zero-filled)
/// with the host copies the example needs.
template <class T>
class device_storage : public dppf::device_array<T> {
 public:
  using dppf::device_array<T>::device_array;
  device_storage() = default;
  /// A copy of `host` (waits for the copy, so the source may go away).
  device_storage(std::span<const T> host, cudaStream_t stream) : dppf::device_array<T>(host.size(), stream) {
    assign(host);
  }

  /// Overwrites the first host.size() elements with `host` (e.g. a batch's indices) and waits.
  void assign(std::span<const T> host) {
    if (host.size() > this->size())
      throw std::invalid_argument("fmnist::device_storage::assign: " + std::to_string(host.size()) +
                                  " elements do not fit in " + std::to_string(this->size()));
    if (host.empty()) return;
    dppf::cuda_check(
        cudaMemcpyAsync(this->data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, this->stream()),
        "fmnist::device_storage::assign: cudaMemcpyAsync");
    dppf::cuda_check(cudaStreamSynchronize(this->stream()), "fmnist::device_storage::assign: cudaStreamSynchronize");
  }

  /// The elements in a std::vector, copied after the work queued on the stream (waits).
  std::vector<T> to_host() const {
    std::vector<T> out(this->size());
    if (out.empty()) return out;
    dppf::cuda_check(
        cudaMemcpyAsync(out.data(), this->data(), out.size() * sizeof(T), cudaMemcpyDeviceToHost, this->stream()),
        "fmnist::device_storage::to_host: cudaMemcpyAsync");
    dppf::cuda_check(cudaStreamSynchronize(this->stream()), "fmnist::device_storage::to_host: cudaStreamSynchronize");
    return out;
  }
};

/// A data set resident on the device: count images of dim floats (row-major) and their labels.
struct device_dataset {
  std::size_t count = 0;
  std::size_t dim = 0;
  dppf::device_array<float> x;
  device_storage<std::uint8_t> y;
};

/// Uploads labels.size() images of dim floats (images, row-major) and their labels on `stream`
/// (waits for the copies). backend_cuda.cuh adds the overload for an fmnist::dataset.
inline device_dataset to_device(std::span<const float> images, std::span<const std::uint8_t> labels, std::size_t dim,
                                cudaStream_t stream = nullptr) {
  if (dim == 0 || images.size() != labels.size() * dim)
    throw std::invalid_argument("fmnist::to_device: " + std::to_string(images.size()) + " pixels for " +
                                std::to_string(labels.size()) + " labels and images of " + std::to_string(dim));
  return {labels.size(), dim, dppf::to_device(images, stream), device_storage<std::uint8_t>(labels, stream)};
}

namespace detail {

// Element e of the batch is pixel e % dim of row e / dim; the thread at pixel 0 also copies the
// label. An index past the data set gives NaN pixels and label 0xFF, which mlp_cuda rejects as a
// label out of range (a clear error instead of a read out of bounds).
template <class T>
__global__ void __launch_bounds__(256)
    gather_rows_kernel(const T* images, const std::uint8_t* labels, std::size_t count, std::size_t dim,
                       const std::size_t* indices, std::size_t batch, T* xb, std::uint8_t* yb) {
  const std::size_t n = batch * dim;
  const std::size_t stride = std::size_t(blockDim.x) * gridDim.x;
  for (std::size_t e = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const std::size_t row = e / dim, col = e - row * dim;
    const std::size_t k = indices[row];
    const bool ok = k < count;
    xb[e] = ok ? images[k * dim + col] : ::cuda::std::numeric_limits<T>::quiet_NaN();
    if (col == 0) yb[row] = ok ? labels[k] : std::uint8_t(0xFF);
  }
}

}  // namespace detail

/// Copies images and labels of rows indices[0..batch) (a device array) into xb (batch x dim) and
/// yb (batch), in one kernel queued on `stream`. images holds count x dim floats.
inline void gather_batch(dppf::device_span<const float> images, const std::uint8_t* labels, std::size_t dim,
                         const std::size_t* indices, std::size_t batch, dppf::device_span<float> xb, std::uint8_t* yb,
                         cudaStream_t stream = nullptr) {
  const std::string who = "fmnist::gather_batch: ";
  if (dim == 0) throw std::invalid_argument(who + "the image size (dim) must be positive");
  if (images.size() % dim != 0)
    throw std::invalid_argument(who + "the images hold " + std::to_string(images.size()) +
                                " floats, not a multiple of dim = " + std::to_string(dim));
  if (xb.size() != batch * dim)
    throw std::invalid_argument(who + "the batch buffer has " + std::to_string(xb.size()) + " floats but batch " +
                                std::to_string(batch) + " x dim " + std::to_string(dim) + " = " +
                                std::to_string(batch * dim) + " are needed");
  if (batch == 0) return;
  if (!indices || !yb || !labels || !images.data() || !xb.data())
    throw std::invalid_argument(who + "null device pointer (images, labels, indices, xb or yb)");
  const std::size_t n = batch * dim;
  const std::size_t blocks = std::min<std::size_t>((n + 255) / 256, 65536);
  detail::gather_rows_kernel<float><<<unsigned(blocks), 256, 0, stream>>>(images.data(), labels, images.size() / dim, dim,
                                                                          indices, batch, xb.data(), yb);
  dppf::cuda_check_launch("fmnist::gather_batch: kernel launch");
}

/// As above from a resident data set.
inline void gather_batch(const device_dataset& d, const std::size_t* indices, std::size_t batch,
                         dppf::device_span<float> xb, std::uint8_t* yb, cudaStream_t stream = nullptr) {
  if (d.x.size() != d.count * d.dim)
    throw std::invalid_argument("fmnist::gather_batch: the data set's images do not hold count x dim floats");
  gather_batch(dppf::device_span<const float>(d.x.data(), d.x.size()), d.y.data(), d.dim, indices, batch, xb, yb, stream);
}

}  // namespace fmnist
