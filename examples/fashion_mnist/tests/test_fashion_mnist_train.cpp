// End to end on the real Fashion-MNIST files: short runs of the example's training driver on a
// subset must learn (a stated test accuracy of x_bar), be deterministic, and communicate what
// each method's rule says.

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "train.hpp"

namespace {

const fmnist::dataset& train_subset() {
  static const fmnist::dataset d = fmnist::load_split(FMNIST_DATA_DIR, "train", 8000);
  return d;
}
const fmnist::dataset& test_subset() {
  static const fmnist::dataset d = fmnist::load_split(FMNIST_DATA_DIR, "t10k", 2000);
  return d;
}

fmnist::run_options small(const std::string& method) {
  fmnist::run_options o;
  o.method = method;
  o.workers = 2;
  o.tau = 4;
  o.epochs = 2;
  o.batch = 32;
  o.lr = 0.02;
  o.sizes = {784, 128, 10};
  o.seed = 3;
  o.sharpness_samples = 0;  // the estimators are checked once, below
  return o;
}

}  // namespace

TEST_CASE("fashion_mnist: every method reaches 75% test accuracy on x_bar after 2 epochs on 8000 images") {
  // Chance is 0.10. Over seeds 1-6 every method landed in 0.78-0.85 with this setting (seed 3,
  // used here, is the worst of them for dppf: 0.782).
  for (const std::string m : {"dppf", "local_sgd", "elastic", "leader", "grawa", "diloco", "ddp", "single"}) {
    const fmnist::run_result r = fmnist::train(small(m), train_subset(), test_subset());
    INFO("method " << m << " test acc " << r.last().test_acc << " train acc " << r.last().train_acc);
    REQUIRE(r.epochs.size() == 2);
    CHECK(r.last().test_acc >= 0.75);
    CHECK(r.last().train_acc >= 0.75);
    CHECK(r.last().train_loss < 0.6);  // ln 10 = 2.30 at the start
    const std::int64_t steps_per_epoch = static_cast<std::int64_t>(8000 / (m == "single" ? 1 : 2) / 32);
    CHECK(r.steps == 2 * steps_per_epoch);
  }
}

TEST_CASE("fashion_mnist: communication per method follows its rule") {
  const std::size_t n = 784 * 128 + 128 + 128 * 10 + 10;
  const std::uint64_t bytes = n * sizeof(float);
  const fmnist::run_result dp = fmnist::train(small("dppf"), train_subset(), test_subset());
  const fmnist::run_result ddp = fmnist::train(small("ddp"), train_subset(), test_subset());
  const fmnist::run_result single = fmnist::train(small("single"), train_subset(), test_subset());
  // dppf: one all-reduce of the parameters every tau = 4 steps (plus scalars); ddp: one of the
  // gradients every step.
  CHECK(dp.syncs == dp.steps / 4);
  CHECK(dp.comm_bytes >= static_cast<std::uint64_t>(dp.syncs) * bytes);
  CHECK(dp.comm_bytes < static_cast<std::uint64_t>(dp.syncs) * bytes + 1024 * static_cast<std::uint64_t>(dp.syncs + 1));
  CHECK(ddp.comm_bytes >= static_cast<std::uint64_t>(ddp.steps) * bytes);
  CHECK(ddp.comm_bytes < static_cast<std::uint64_t>(ddp.steps) * bytes + 1024);
  CHECK(single.syncs == 0);
  CHECK(single.comm_bytes < 1024);
  CHECK(dp.last().relaxed_mv > 0.0);
  CHECK(ddp.last().relaxed_mv == 0.0);
}

TEST_CASE("fashion_mnist: the same seed gives bitwise the same run, another seed a different one") {
  const fmnist::run_result a = fmnist::train(small("dppf"), train_subset(), test_subset());
  const fmnist::run_result b = fmnist::train(small("dppf"), train_subset(), test_subset());
  auto o = small("dppf");
  o.seed = 4;
  const fmnist::run_result c = fmnist::train(o, train_subset(), test_subset());
  for (std::size_t e = 0; e < a.epochs.size(); ++e) {
    CHECK(a.epochs[e].train_loss == b.epochs[e].train_loss);
    CHECK(a.epochs[e].test_loss == b.epochs[e].test_loss);
    CHECK(a.epochs[e].relaxed_mv == b.epochs[e].relaxed_mv);
    CHECK(a.epochs[e].train_loss != c.epochs[e].train_loss);
  }
}

TEST_CASE("fashion_mnist: bad options are rejected before training, naming the flag") {
  auto o = small("sgdx");
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), doctest::Contains("--method: unknown method 'sgdx'"));
  o = small("dppf");
  o.batch = 5000;
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()),
                    "--batch: 5000 is larger than a worker's shard of 4000 examples");
  o = small("dppf");
  o.workers = 0;
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), "--workers: must be >= 1, got 0");
  o = small("dppf");
  o.alpha = 1.5;
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), doctest::Contains("alpha"));
  o = small("dppf");
  o.model = "resnet";
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), "--model: unknown model 'resnet' (mlp or cnn)");
  o.model = "cnn";
  o.channels = {4, 4, 4};
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), doctest::Contains("odd side"));
  o = small("dppf");
  o.push = "sideways";
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), "--push: unknown mode 'sideways' (constant or inverse_mv)");
  o = small("dppf");
  o.push_warmup = -1;
  CHECK_THROWS_WITH(fmnist::train(o, train_subset(), test_subset()), "--push-warmup: must be >= 0");
}

TEST_CASE("fashion_mnist: --push and --push-warmup reach DPPF's rule") {
  auto o = small("dppf");
  o.epochs = 1;
  o.lambda = 0.5;
  const fmnist::run_result pushed = fmnist::train(o, train_subset(), test_subset());
  o.push = "inverse_mv";
  const fmnist::run_result inverse = fmnist::train(o, train_subset(), test_subset());
  o.push = "constant";
  o.push_warmup = 1000;  // longer than the run: the push never acts
  const fmnist::run_result warm = fmnist::train(o, train_subset(), test_subset());
  o.push_warmup = 0;
  o.lambda = 0.0;
  const fmnist::run_result pull_only = fmnist::train(o, train_subset(), test_subset());
  CHECK(pushed.last().relaxed_mv != inverse.last().relaxed_mv);
  CHECK(pushed.last().relaxed_mv > pull_only.last().relaxed_mv);  // a push of 0.5 spreads the workers
  // With the push off throughout, the run is the pull-only run, bit for bit.
  CHECK(warm.last().relaxed_mv == pull_only.last().relaxed_mv);
  CHECK(warm.last().test_loss == pull_only.last().test_loss);
  CHECK(warm.x_bar == pull_only.x_bar);
}

TEST_CASE("fashion_mnist: the CNN option learns and reports the same metrics") {
  // Chance is 0.10. Over seeds 1-6, one epoch on 8000 images put x_bar at 0.67-0.78 test accuracy
  // for dppf and 0.75-0.81 for ddp; seed 1 gave 0.774 and 0.7925.
  for (const std::string m : {"dppf", "ddp"}) {
    auto o = small(m);
    o.seed = 1;
    o.model = "cnn";
    o.sizes = {784, 32, 10};
    o.epochs = 1;
    o.lr = 0.05;
    const fmnist::run_result r = fmnist::train(o, train_subset(), test_subset());
    INFO("method " << m << " test acc " << r.last().test_acc);
    CHECK(r.last().test_acc >= 0.70);
    CHECK(r.last().train_loss < 1.0);
    CHECK(r.x_bar.size() == 8 * 25 + 8 + 16 * 8 * 25 + 16 + 16 * 49 * 32 + 32 + 32 * 10 + 10);
  }
}

TEST_CASE("fashion_mnist: IMV and the Hessian's top eigenvalue of x_bar are reported, or null when switched off") {
  auto o = small("dppf");
  o.epochs = 1;
  o.sharpness_samples = 256;
  const fmnist::run_result r = fmnist::train(o, train_subset(), test_subset());
  REQUIRE(r.imv.has_value());
  REQUIRE(r.hessian_top.has_value());
  CHECK(std::isfinite(*r.imv));
  CHECK(*r.imv > 0.0);
  CHECK(std::isfinite(*r.hessian_top));
  CHECK(*r.hessian_top > 0.0);  // near a minimum of the training loss the top curvature is positive
  CHECK(r.x_bar.size() == 784 * 128 + 128 + 128 * 10 + 10);
  o.sharpness_samples = 0;
  const fmnist::run_result none = fmnist::train(o, train_subset(), test_subset());
  CHECK_FALSE(none.imv.has_value());
  CHECK_FALSE(none.hessian_top.has_value());
  CHECK(none.last().test_acc == r.last().test_acc);  // estimating changes nothing about training
}
