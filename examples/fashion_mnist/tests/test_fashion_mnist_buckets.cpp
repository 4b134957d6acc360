// The example's ddp with gradient buckets (--bucket-mb): the MLP's and the CNN's backward pass
// report every segment once, from the last layer to the first, each when its gradient is already
// final; ddp trained with buckets (several per pass, a boundary inside a parameter) ends at the
// same model, bit for bit, as with one all-reduce after the backward pass (threads add the ranks
// in the same order either way); train_s is the step loops' time only.

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "train.hpp"

namespace {

const fmnist::dataset& train_subset() {
  static const fmnist::dataset d = fmnist::load_split(FMNIST_DATA_DIR, "train", 1200);
  return d;
}
const fmnist::dataset& test_subset() {
  static const fmnist::dataset d = fmnist::load_split(FMNIST_DATA_DIR, "t10k", 300);
  return d;
}

fmnist::run_options ddp(const std::string& model, double bucket_mb) {
  fmnist::run_options o;
  o.method = "ddp";
  o.workers = 3;
  o.epochs = 2;
  o.batch = 16;
  o.model = model;
  o.sizes = model == "mlp" ? std::vector<std::size_t>{784, 96, 48, 10} : std::vector<std::size_t>{784, 24, 10};
  o.channels = {4, 6};
  o.seed = std::random_device{}() % 1000 + 1;
  o.sharpness_samples = 0;
  o.bucket_mb = bucket_mb;
  return o;
}

}  // namespace

static_assert(fmnist::detail::bucketed_ddp<dppf::data_parallel, dppf::thread_communicator, fmnist::host_replica>,
              "the threads run of ddp must take the bucketed path, or the comparison below compares nothing");

TEST_CASE("fashion_mnist buckets: the backward pass reports each segment once, last layer first, when final") {
  for (const std::string model : {"mlp", "cnn"}) {
    INFO("model " << model);
    const fmnist::run_options o = ddp(model, 1.0);
    fmnist::host_replica rep(o, train_subset(), test_subset());
    const dppf::parameter_layout& layout = rep.layout();
    std::vector<std::size_t> indices(o.batch);
    for (std::size_t i = 0; i < indices.size(); ++i) indices[i] = 7 * i + 3;
    std::fill(rep.grads().begin(), rep.grads().end(), std::nanf(""));
    std::vector<std::pair<std::size_t, std::size_t>> reports;
    std::vector<std::vector<float>> seen;  // each reported range's values when reported
    const double loss = rep.loss_and_grad(indices, [&](std::size_t a, std::size_t b) {
      reports.emplace_back(a, b);
      const std::size_t lo = layout[a].offset, hi = layout[b - 1].offset + layout[b - 1].size;
      seen.emplace_back(rep.grads().begin() + static_cast<std::ptrdiff_t>(lo), rep.grads().begin() + static_cast<std::ptrdiff_t>(hi));
    });
    CHECK(std::isfinite(loss));
    // Layers from the last: (weight, bias) pairs 2l, 2l + 1 in descending l.
    REQUIRE(reports.size() == layout.size() / 2);
    for (std::size_t k = 0; k < reports.size(); ++k) {
      const std::size_t l = layout.size() / 2 - 1 - k;
      CHECK(reports[k] == std::pair<std::size_t, std::size_t>(2 * l, 2 * l + 2));
    }
    // What was reported was final: the same bits as after the pass, and as a pass without reports.
    std::vector<float> plain_grads;
    {
      fmnist::host_replica again(o, train_subset(), test_subset());
      CHECK(again.loss_and_grad(indices) == loss);
      plain_grads = again.grads();
    }
    CHECK(std::memcmp(plain_grads.data(), rep.grads().data(), plain_grads.size() * sizeof(float)) == 0);
    std::size_t differ = 0;
    for (std::size_t k = 0; k < reports.size(); ++k) {
      const std::size_t lo = layout[reports[k].first].offset;
      differ += std::memcmp(seen[k].data(), plain_grads.data() + lo, seen[k].size() * sizeof(float)) != 0;
    }
    CHECK(differ == 0);
  }
}

TEST_CASE("fashion_mnist buckets: ddp with buckets ends at the model of one all-reduce, bit for bit") {
  for (const std::string model : {"mlp", "cnn"}) {
    // 0.004 MiB = 1048 floats: several buckets per pass, boundaries inside the weights.
    const fmnist::run_result plain = fmnist::train(ddp(model, 0.0), train_subset(), test_subset());
    for (const double mb : {0.004, 25.0}) {
      fmnist::run_options o = ddp(model, mb);
      o.seed = plain.options.seed;
      const fmnist::run_result bucketed = fmnist::train(o, train_subset(), test_subset());
      INFO("model " << model << ", --bucket-mb " << mb << ", seed " << o.seed);
      REQUIRE(plain.x_bar.size() == bucketed.x_bar.size());
      REQUIRE(!plain.x_bar.empty());
      CHECK(std::memcmp(plain.x_bar.data(), bucketed.x_bar.data(), plain.x_bar.size() * sizeof(float)) == 0);
      CHECK(plain.last().test_acc == bucketed.last().test_acc);
      CHECK(plain.comm_bytes == bucketed.comm_bytes);
      CHECK(plain.steps == bucketed.steps);
      CHECK(bucketed.train_s > 0.0);
      CHECK(bucketed.train_s <= bucketed.wall_s);
    }
  }
}
