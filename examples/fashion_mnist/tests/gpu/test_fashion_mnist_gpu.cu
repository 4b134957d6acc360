// The Fashion-MNIST example's GPU path (examples/fashion_mnist/mlp_cuda.cuh and data_cuda.cuh)
// against the OpenBLAS MLP of mlp.hpp (float, and double as the reference) and plain double
// loops: loss, every gradient element, evaluate's sums and tie rule, the batch gather element by
// element, and the errors for arguments that do not fit the model. Where OpenBLAS is missing (a
// bare GPU image) mlp.hpp runs on the plain loops of examples/fashion_mnist/tests/gpu/fmnist_naive_blas/cblas.h.
//
// Tolerances. The GPU computes in float like mlp<float>; the reference is mlp<double> on the
// same (float) parameters and inputs, so only the rounding of float arithmetic separates them.
// Each gradient element is a sum of at most 784 products; its rounding error is a few units of
// float's 6e-8 times sqrt(terms) times the size of the terms. Measured on the CPU for every
// problem below, mlp<float> stays within 4.4e-7 of the double gradient (parameters and dLoss/dx;
// 7.4e-7 on the naive loops) relative to the largest element of the same tensor; we allow 1e-5
// of that maximum, over 13 times more, for cuBLAS's different summation order, while a wrong index, transpose or mask
// gives errors of order 1. Losses are accumulated in double from float logits: within 7e-8
// relative on the CPU, 1e-6 allowed here. In evaluate's problem the top two logits of every row
// are at least 1e-3 apart, so float rounding cannot change a prediction there.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dppf/device_array.cuh>

#include "data_cuda.cuh"
#include "../fashion_mnist_reference.hpp"
#include "mlp.hpp"
#include "mlp_cuda.cuh"
#include "support.hpp"

namespace {

constexpr double grad_tol = 1e-5;  // of the largest |element| of each tensor (see above)
constexpr double loss_tol = 1e-6;  // relative

struct stream_guard {
  cudaStream_t s = nullptr;
  stream_guard() { dppf::cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~stream_guard() { cudaStreamDestroy(s); }
};

// Random parameters (torch.nn.Linear's initialization with a seed, plus noise so biases are not
// tiny), inputs ~ N(0, 1) like normalized pixels, and uniform labels.
struct problem {
  std::vector<std::size_t> sizes;
  std::size_t batch;
  std::vector<float> params, x;
  std::vector<std::uint8_t> y;
  problem(std::vector<std::size_t> s, std::size_t b, std::uint64_t seed) : sizes(std::move(s)), batch(b) {
    fmnist::mlp<float> shape(sizes);
    params.resize(shape.size());
    shape.init(params, seed);
    std::mt19937_64 rng(seed + 1000);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& p : params) p += 0.02f * normal(rng);
    x.resize(batch * sizes.front());
    for (float& v : x) v = normal(rng);
    std::uniform_int_distribution<int> cls(0, static_cast<int>(sizes.back()) - 1);
    y.resize(batch);
    for (auto& v : y) v = static_cast<std::uint8_t>(cls(rng));
  }
};

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// The problem's data on the device.
struct device_problem {
  dppf::device_array<float> params, x, grads;
  fmnist::device_storage<std::uint8_t> y;
  device_problem(const problem& p, cudaStream_t s)
      : params(dppf::to_device(p.params, s)),
        x(dppf::to_device(p.x, s)),
        grads(p.params.size(), s),
        y(std::span<const std::uint8_t>(p.y), s) {}
  dppf::device_span<const float> cparams() const { return {params.data(), params.size()}; }
  dppf::device_span<float> vgrads() { return {grads.data(), grads.size()}; }
};

// Every element of `got` within grad_tol * (largest |want| of its tensor) of `want`.
template <class G>
void check_gradient(const dppf::parameter_layout& layout, const std::vector<G>& got, const std::vector<double>& want,
                    double tol, const char* what) {
  REQUIRE(got.size() == want.size());
  for (const dppf::segment& s : layout.segments()) {
    double scale = 0.0;
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i) scale = std::max(scale, std::abs(want[i]));
    REQUIRE(scale > 1e-6);  // an all-zero tensor would pass trivially
    std::size_t bad = 0;
    double worst = 0.0;
    for (std::size_t i = s.offset; i < s.offset + s.size; ++i) {
      const double err = std::abs(static_cast<double>(got[i]) - want[i]);
      worst = std::max(worst, err / scale);
      if (!(err <= tol * scale)) ++bad;
    }
    INFO(what << ": tensor " << s.name << ", largest error " << worst << " of the largest element " << scale);
    CHECK(bad == 0);
  }
}

// GPU against mlp<float> and mlp<double> on one problem; with_input_grad: also dLoss/dx.
void check_against_host(fmnist::mlp_cuda& gpu, const problem& pr, cudaStream_t s, bool with_input_grad = true) {
  INFO("layers " << pr.sizes.size() - 1 << ", inputs " << pr.sizes.front() << ", batch " << pr.batch);
  device_problem d(pr, s);
  const std::size_t nx = pr.batch * pr.sizes.front();
  dppf::device_array<float> dx(with_input_grad ? nx : 0, s);
  const double loss = gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, d.vgrads(), dx.data());
  const std::vector<float> g = dppf::to_host(d.grads, s);

  fmnist::mlp<float> hf(pr.sizes);
  std::vector<float> gf(hf.size()), dxf(nx);
  const double loss_f = hf.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, gf, dxf.data());
  fmnist::mlp<double> hd(pr.sizes);
  const std::vector<double> pd = widen(pr.params), xd = widen(pr.x);
  std::vector<double> gd(hd.size()), dxd(nx);
  const double loss_d = hd.loss_and_grad(pd, xd.data(), pr.y.data(), pr.batch, gd, dxd.data());

  CHECK(loss == doctest::Approx(loss_d).epsilon(loss_tol));
  CHECK(loss == doctest::Approx(loss_f).epsilon(loss_tol));
  check_gradient(gpu.layout(), g, gd, grad_tol, "GPU against mlp<double>");
  // Both float results are within grad_tol of the double one, so within twice that of each other.
  check_gradient(gpu.layout(), g, widen(gf), 2 * grad_tol, "GPU against mlp<float>");
  if (with_input_grad) {
    const auto input = dppf::parameter_layout::from_sizes({{"input gradient", nx}});
    const std::vector<float> gx = dppf::to_host(dx, s);
    check_gradient(input, gx, dxd, grad_tol, "GPU against mlp<double>");
    check_gradient(input, gx, widen(dxf), 2 * grad_tol, "GPU against mlp<float>");
  }
}

}  // namespace

TEST_CASE("mlp_cuda has mlp's layout") {
  stream_guard s;
  const fmnist::mlp_cuda gpu({784, 37, 19, 10}, s.s);
  const fmnist::mlp<float> host({784, 37, 19, 10});
  REQUIRE(gpu.layout().size() == host.layout().size());
  for (std::size_t k = 0; k < host.layout().size(); ++k) {
    CHECK(gpu.layout()[k].name == host.layout()[k].name);
    CHECK(gpu.layout()[k].offset == host.layout()[k].offset);
    CHECK(gpu.layout()[k].size == host.layout()[k].size);
  }
  CHECK(gpu.size() == host.size());
  CHECK(gpu.inputs() == 784);
  CHECK(gpu.classes() == 10);
  CHECK(gpu.layers() == 3);
  CHECK(gpu.stream() == s.s);

  // init draws mlp<float>::init's values.
  dppf::device_array<float> p(gpu.size(), s.s);
  gpu.init({p.data(), p.size()}, 42);
  std::vector<float> want(host.size());
  host.init(want, 42);
  CHECK(dppf::to_host(p, s.s) == want);
}

TEST_CASE("mlp_cuda loss and gradient match the OpenBLAS MLP, every element") {
  stream_guard s;
  struct shape {
    std::vector<std::size_t> sizes;
    std::size_t batch;
  };
  // Odd sizes; the example's default; no hidden layer; a tiny model.
  for (const shape& sh : {shape{{784, 37, 19, 10}, 33}, shape{{784, 512, 512, 10}, 64}, shape{{784, 10}, 5},
                          shape{{5, 3}, 7}, shape{{13, 8, 7, 6, 5}, 1}}) {
    fmnist::mlp_cuda gpu(sh.sizes, s.s);
    check_against_host(gpu, problem(sh.sizes, sh.batch, 11 + sh.batch), s.s);
  }
}

TEST_CASE("mlp_cuda reuses its workspace across batch sizes") {
  stream_guard s;
  const std::vector<std::size_t> sizes{784, 37, 19, 10};
  fmnist::mlp_cuda gpu(sizes, s.s);
  for (std::size_t batch : {33u, 70u, 5u, 33u, 129u})
    check_against_host(gpu, problem(sizes, batch, 100 + batch), s.s, batch % 2 == 0);  // with and without dLoss/dx
}

TEST_CASE("mlp_cuda gives the same bits run to run") {
  stream_guard s;
  const problem pr({784, 37, 19, 10}, 33, 5);
  fmnist::mlp_cuda gpu(pr.sizes, s.s);
  device_problem d(pr, s.s);
  const double l1 = gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, d.vgrads());
  const std::vector<float> g1 = dppf::to_host(d.grads, s.s);
  const double l2 = gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, d.vgrads());
  const std::vector<float> g2 = dppf::to_host(d.grads, s.s);
  CHECK(l1 == l2);
  CHECK(g1 == g2);
}

TEST_CASE("mlp_cuda objects on several host threads share one stream, as device_group workers do") {
  // Each thread owns its model (cuBLAS handle, workspace) and data, all queued on one stream
  // concurrently, and reallocates its workspace in between (evaluate in small chunks, a larger
  // batch). One stream is active, so cuBLAS gives the same bits as the same calls made one after
  // the other; a race between the objects' buffers or handles would change them.
  stream_guard s;
  constexpr int threads = 4, rounds = 3;
  const std::vector<std::size_t> sizes{784, 37, 19, 10};
  std::vector<problem> problems;
  for (int t = 0; t < threads; ++t) problems.emplace_back(sizes, 16 + 5 * static_cast<std::size_t>(t), 300 + t);

  struct outcome {
    std::vector<double> losses;
    std::vector<std::vector<float>> grads;
    std::vector<double> eval_loss;
  };
  const auto work = [&](const problem& pr, outcome& out) {
    fmnist::mlp_cuda gpu(sizes, s.s);
    device_problem d(pr, s.s);
    for (int r = 0; r < rounds; ++r) {
      out.losses.push_back(gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, d.vgrads()));
      out.grads.push_back(dppf::to_host(d.grads, s.s));
      out.eval_loss.push_back(gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), pr.batch, 3 + static_cast<std::size_t>(r)).loss);
    }
  };
  std::vector<outcome> want(threads), got(threads);
  for (int t = 0; t < threads; ++t) work(problems[static_cast<std::size_t>(t)], want[static_cast<std::size_t>(t)]);
  {
    std::vector<std::exception_ptr> errors(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const auto k = static_cast<std::size_t>(t);
        try {
          work(problems[k], got[k]);
        } catch (...) {
          errors[k] = std::current_exception();
        }
      });
    for (auto& th : pool) th.join();
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  for (int t = 0; t < threads; ++t) {
    CAPTURE(t);
    const auto k = static_cast<std::size_t>(t);
    REQUIRE(got[k].losses.size() == static_cast<std::size_t>(rounds));
    for (int r = 0; r < rounds; ++r) {
      CAPTURE(r);
      const auto j = static_cast<std::size_t>(r);
      CHECK(got[k].losses[j] == want[k].losses[j]);
      CHECK(got[k].grads[j] == want[k].grads[j]);
      CHECK(got[k].eval_loss[j] == want[k].eval_loss[j]);
      CHECK(got[k].grads[j] == want[k].grads[0]);  // same inputs every round
    }
  }
  // The sequential results are the model's (not only self-consistent).
  fmnist::mlp_cuda gpu(sizes, s.s);
  check_against_host(gpu, problems[0], s.s);
}

TEST_CASE("mlp_cuda evaluate matches a double loop: summed loss and correct predictions") {
  stream_guard s;
  problem pr({784, 37, 19, 10}, 101, 9);
  const std::size_t c = pr.sizes.back();
  const std::vector<double> logits = fmnist_reference::mlp_logits(pr.sizes, widen(pr.params), widen(pr.x), pr.batch);
  // Labels: the reference's argmax on even rows, another class on odd rows. Rows whose top two
  // logits are closer than float rounding could move them may go either way.
  std::size_t want_correct = 0, near_ties = 0;
  double want_loss = 0.0;
  for (std::size_t i = 0; i < pr.batch; ++i) {
    const double* z = logits.data() + i * c;
    const std::size_t arg = static_cast<std::size_t>(std::max_element(z, z + c) - z);
    double second = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < c; ++j)
      if (j != arg) second = std::max(second, z[j]);
    if (z[arg] - second < 1e-4) ++near_ties;
    pr.y[i] = static_cast<std::uint8_t>(i % 2 == 0 ? arg : (arg + 1) % c);
    want_correct += i % 2 == 0 ? 1 : 0;
    const double m = z[arg];
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) sum += std::exp(z[j] - m);
    want_loss += m + std::log(sum) - z[pr.y[i]];
  }
  REQUIRE(near_ties <= 2);  // the seed gives clear winners, so the count below is a real check

  fmnist::mlp<float> hf(pr.sizes);
  const fmnist::eval_sums host = hf.evaluate(pr.params, pr.x.data(), pr.y.data(), pr.batch);
  fmnist::mlp_cuda gpu(pr.sizes, s.s);
  device_problem d(pr, s.s);
  for (std::size_t chunk : {500u, 32u, 1u, 101u}) {
    INFO("chunk " << chunk);
    const fmnist::eval_sums e = gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), pr.batch, chunk);
    CHECK(e.count == static_cast<double>(pr.batch));
    CHECK(e.loss == doctest::Approx(want_loss).epsilon(loss_tol));
    CHECK(e.loss == doctest::Approx(host.loss).epsilon(loss_tol));
    CHECK(std::abs(e.correct - static_cast<double>(want_correct)) <= static_cast<double>(near_ties));
    CHECK(std::abs(e.correct - host.correct) <= static_cast<double>(near_ties));
    CHECK(gpu.loss(d.cparams(), d.x.data(), d.y.data(), pr.batch) == doctest::Approx(want_loss / 101.0).epsilon(loss_tol));
  }
  const fmnist::eval_sums none = gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), 0);
  CHECK(none.loss == 0.0);
  CHECK(none.correct == 0.0);
  CHECK(none.count == 0.0);
}

TEST_CASE("mlp_cuda evaluate takes the first of tied logits, like std::max_element") {
  stream_guard s;
  // Zero output weights make every row's logits exactly the output biases.
  const std::vector<std::size_t> sizes{6, 4, 5};
  for (const std::vector<float>& bias : {std::vector<float>{0, 2, 1, 2, 2}, std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, 0.5f}}) {
    problem pr(sizes, 23, 3);
    fmnist::mlp<float> hf(sizes);
    const dppf::segment& w = hf.layout()[2];
    const dppf::segment& b = hf.layout()[3];
    std::fill_n(pr.params.begin() + static_cast<std::ptrdiff_t>(w.offset), w.size, 0.0f);
    std::copy(bias.begin(), bias.end(), pr.params.begin() + static_cast<std::ptrdiff_t>(b.offset));
    for (std::size_t i = 0; i < pr.batch; ++i) pr.y[i] = static_cast<std::uint8_t>(i % 5);
    const std::size_t first_max = static_cast<std::size_t>(std::max_element(bias.begin(), bias.end()) - bias.begin());
    double want_correct = 0.0, want_loss = 0.0;
    double lse = 0.0;
    for (float v : bias) lse += std::exp(static_cast<double>(v) - bias[first_max]);
    lse = bias[first_max] + std::log(lse);
    for (std::size_t i = 0; i < pr.batch; ++i) {
      want_correct += pr.y[i] == first_max ? 1.0 : 0.0;
      want_loss += lse - bias[pr.y[i]];
    }
    REQUIRE(want_correct > 0.0);

    fmnist::mlp_cuda gpu(sizes, s.s);
    device_problem d(pr, s.s);
    const fmnist::eval_sums e = gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), pr.batch, 7);
    INFO("first maximum at class " << first_max);
    CHECK(e.correct == want_correct);
    CHECK(e.correct == hf.evaluate(pr.params, pr.x.data(), pr.y.data(), pr.batch).correct);
    CHECK(e.loss == doctest::Approx(want_loss).epsilon(1e-12));
  }
}

TEST_CASE("gather_batch copies the indexed images and labels, every element") {
  stream_guard s;
  struct shape {
    std::size_t count, dim, batch;
  };
  // Odd sizes, repeated indices; the last one has more elements than the grid (grid-stride loop).
  for (const shape& sh : {shape{57, 784, 33}, shape{1000, 13, 7}, shape{1000, 784, 30000}}) {
    INFO("count " << sh.count << " dim " << sh.dim << " batch " << sh.batch);
    struct {
      std::vector<float> x;
      std::vector<std::uint8_t> y;
    } host;
    host.x = dppf_test::random_vector<float>(sh.count * sh.dim, sh.count + sh.dim);
    std::mt19937_64 rng(sh.batch);
    std::uniform_int_distribution<int> cls(0, 9);
    for (std::size_t i = 0; i < sh.count; ++i) host.y.push_back(static_cast<std::uint8_t>(cls(rng)));
    std::uniform_int_distribution<std::size_t> pick(0, sh.count - 1);
    std::vector<std::size_t> idx(sh.batch);
    for (auto& k : idx) k = pick(rng);
    idx.front() = sh.count - 1;  // the last row
    if (sh.batch > 1) idx.back() = 0;

    const fmnist::device_dataset dev = fmnist::to_device(host.x, host.y, sh.dim, s.s);
    CHECK(dev.count == sh.count);
    CHECK(dev.dim == sh.dim);
    const fmnist::device_storage<std::size_t> didx(std::span<const std::size_t>(idx), s.s);
    dppf::device_array<float> xb(sh.batch * sh.dim, s.s);
    fmnist::device_storage<std::uint8_t> yb(sh.batch, s.s);
    fmnist::gather_batch(dev, didx.data(), sh.batch, {xb.data(), xb.size()}, yb.data(), s.s);

    const std::vector<float> got = dppf::to_host(xb, s.s);
    const std::vector<std::uint8_t> got_y = yb.to_host();
    std::size_t wrong = 0, wrong_y = 0;
    for (std::size_t i = 0; i < sh.batch; ++i) {
      for (std::size_t j = 0; j < sh.dim; ++j) wrong += got[i * sh.dim + j] != host.x[idx[i] * sh.dim + j] ? 1 : 0;
      wrong_y += got_y[i] != host.y[idx[i]] ? 1 : 0;
    }
    CHECK(wrong == 0);
    CHECK(wrong_y == 0);
  }
}

TEST_CASE("gather_batch marks an index past the data set, which mlp_cuda reports as a bad label") {
  stream_guard s;
  const problem pr({784, 37, 19, 10}, 9, 21);
  const fmnist::device_dataset dev = fmnist::to_device(pr.x, pr.y, 784, s.s);
  std::vector<std::size_t> idx{0, 1, 2, 3, pr.batch, 5};  // index 4 is past the end
  const fmnist::device_storage<std::size_t> didx(std::span<const std::size_t>(idx), s.s);
  dppf::device_array<float> xb(idx.size() * 784, s.s);
  fmnist::device_storage<std::uint8_t> yb(idx.size(), s.s);
  fmnist::gather_batch(dev, didx.data(), idx.size(), {xb.data(), xb.size()}, yb.data(), s.s);
  const std::vector<float> got = dppf::to_host(xb, s.s);
  const std::vector<std::uint8_t> labels = yb.to_host();
  CHECK(labels == std::vector<std::uint8_t>{pr.y[0], pr.y[1], pr.y[2], pr.y[3], 0xFF, pr.y[5]});
  CHECK(std::all_of(got.begin() + 4 * 784, got.begin() + 5 * 784, [](float v) { return std::isnan(v); }));
  CHECK(got[5 * 784] == pr.x[5 * 784]);

  fmnist::mlp_cuda gpu(pr.sizes, s.s);
  device_problem d(pr, s.s);
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), xb.data(), yb.data(), idx.size(), d.vgrads()); },
      "mlp_cuda::loss_and_grad: 1 labels are not below the 10 classes");
}

TEST_CASE("mlp_cuda rejects labels out of range") {
  stream_guard s;
  problem pr({784, 37, 19, 10}, 12, 8);
  pr.y[3] = 10;
  pr.y[7] = 200;
  fmnist::mlp_cuda gpu(pr.sizes, s.s);
  device_problem d(pr, s.s);
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, d.vgrads()); },
      "mlp_cuda::loss_and_grad: 2 labels are not below the 10 classes");
  dppf_test::check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), pr.batch, 5); },
      "mlp_cuda::evaluate: 2 labels are not below the 10 classes");
  // Rows before the bad one still evaluate.
  const fmnist::eval_sums ok = gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), 3);
  CHECK(ok.count == 3.0);
}

TEST_CASE("mlp_cuda rejects sizes that do not fit the layout before queuing any work") {
  stream_guard s;
  const problem pr({784, 37, 19, 10}, 4, 2);
  fmnist::mlp_cuda gpu(pr.sizes, s.s);
  device_problem d(pr, s.s);
  // A sentinel in the gradients: no failed call may write them.
  const std::vector<float> sentinel(d.grads.size(), 7.0f);
  d.grads = dppf::to_device(sentinel, s.s);
  const std::size_t n = gpu.size();
  const std::string covers = " but the layout covers " + std::to_string(n);
  using dppf_test::check_throws_with;

  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad({d.params.data(), n - 1}, d.x.data(), d.y.data(), pr.batch, d.vgrads()); },
      "mlp_cuda::loss_and_grad: parameters has " + std::to_string(n - 1) + " elements" + covers);
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, {d.grads.data(), n + 5}); },
      "mlp_cuda::loss_and_grad: gradients has " + std::to_string(n + 5) + " elements" + covers);
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), 0, d.vgrads()); },
      "mlp_cuda::loss_and_grad: the batch is empty");
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), nullptr, d.y.data(), pr.batch, d.vgrads()); },
      "mlp_cuda::loss_and_grad: null device pointer");
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.loss_and_grad(d.cparams(), d.x.data(), d.y.data(), pr.batch, {nullptr, n}); },
      "mlp_cuda::loss_and_grad: the gradients are a null device pointer");
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.evaluate({d.params.data(), 3}, d.x.data(), d.y.data(), pr.batch); },
      "mlp_cuda::evaluate: parameters has 3 elements" + covers);
  check_throws_with<std::invalid_argument>(
      [&] { (void)gpu.evaluate(d.cparams(), d.x.data(), d.y.data(), pr.batch, 0); },
      "mlp_cuda::evaluate: chunk must be positive");
  check_throws_with<std::invalid_argument>(
      [&] { gpu.init({d.grads.data(), 2 * n}, 1); }, "mlp_cuda::init: parameters has " + std::to_string(2 * n));
  check_throws_with<std::invalid_argument>([&] { fmnist::mlp_cuda bad({784}, s.s); },
                                           "mlp: needs at least an input and an output size");

  // The gather checks its buffers too.
  dppf::device_array<float> xb(3 * 784, s.s);
  fmnist::device_storage<std::uint8_t> yb(3, s.s);
  const std::vector<std::size_t> idx{0, 1, 2};
  const fmnist::device_storage<std::size_t> didx(std::span<const std::size_t>(idx), s.s);
  check_throws_with<std::invalid_argument>(
      [&] {
        fmnist::gather_batch({d.x.data(), d.x.size()}, d.y.data(), 784, didx.data(), 4, {xb.data(), xb.size()},
                             yb.data(), s.s);
      },
      "fmnist::gather_batch: the batch buffer has 2352 floats but batch 4 x dim 784 = 3136 are needed");
  check_throws_with<std::invalid_argument>(
      [&] {
        fmnist::gather_batch({d.x.data(), d.x.size() - 1}, d.y.data(), 784, didx.data(), 3, {xb.data(), xb.size()},
                             yb.data(), s.s);
      },
      "not a multiple of dim = 784");

  CHECK(dppf::to_host(d.grads, s.s) == sentinel);
  // And the model still works after the rejected calls.
  check_against_host(gpu, pr, s.s);
}
