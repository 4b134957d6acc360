// The elastic mode's data dealing (elastic_run.hpp, --lost-shard), against a reference written
// here from the rules as docs/elastic.md states them: drop is the plain trainer's shard of slot
// id mod M0, reshuffled once per epoch; redeal splits each step's block of M0 x batch images of
// the epoch's order over the current members, so the parts are disjoint and, with the founders
// all there, an epoch covers its blocks exactly once.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "elastic_run.hpp"

namespace {

fmnist::run_options options() {
  fmnist::run_options o;
  o.batch = 16;
  o.seed = 7;
  return o;
}

}  // namespace

TEST_CASE("fashion_mnist elastic deal: drop gives each worker the plain trainer's shard order of slot id mod M0") {
  const auto o = options();
  const std::size_t count = 1000;
  const int founders = 4;
  fmnist::elastic_deal deal(o, count, founders, false);
  const std::size_t shard = count / founders;
  REQUIRE(deal.steps_per_epoch() == static_cast<std::int64_t>(shard / o.batch));
  // The reference: one permutation, slot k's slice, shuffled once more every epoch.
  std::vector<std::size_t> perm(count);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  std::mt19937_64 engine(o.seed ^ 0x9e3779b97f4a7c15ull);
  std::shuffle(perm.begin(), perm.end(), engine);
  for (const std::int64_t id : {1, 6}) {  // a founder, and a newcomer that takes slot 6 mod 4 = 2
    const std::size_t slot = static_cast<std::size_t>(id) % founders;
    std::vector<std::size_t> order(perm.begin() + static_cast<std::ptrdiff_t>(slot * shard),
                                   perm.begin() + static_cast<std::ptrdiff_t>((slot + 1) * shard));
    std::mt19937_64 rng(o.seed * 1000003ull + slot);
    fmnist::elastic_deal mine(o, count, founders, false);
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng);
      for (std::int64_t s = 0; s < mine.steps_per_epoch(); ++s) {
        const auto got = mine.batch(epoch * mine.steps_per_epoch() + s, id, /*rank=*/0, /*members=*/3);
        REQUIRE(got.size() == o.batch);
        for (std::size_t i = 0; i < o.batch; ++i) CHECK(got[i] == order[static_cast<std::size_t>(s) * o.batch + i]);
      }
    }
  }
}

TEST_CASE("fashion_mnist elastic deal: redeal splits each step's block over the members, disjoint, each epoch once") {
  const auto o = options();
  const std::size_t count = 1000;
  const int founders = 4;
  const std::size_t block = o.batch * founders;
  for (const int members : {4, 3, 1, 5}) {
    CAPTURE(members);
    std::vector<fmnist::elastic_deal> deals;
    for (int r = 0; r < members; ++r) deals.emplace_back(o, count, founders, true);
    const std::int64_t spe = deals[0].steps_per_epoch();
    for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
      std::multiset<std::size_t> seen;
      for (std::int64_t s = 0; s < spe; ++s) {
        std::set<std::size_t> step_images;
        for (int r = 0; r < members; ++r) {
          const auto got = deals[static_cast<std::size_t>(r)].batch(epoch * spe + s, /*id=*/r + 10, r, members);
          REQUIRE(got.size() == block / static_cast<std::size_t>(members));
          for (const auto i : got) {
            CHECK(i < count);
            CHECK(step_images.insert(i).second);  // no image twice in one step
            seen.insert(i);
          }
        }
      }
      // No image twice in an epoch; with the founders' count, exactly the blocks' images.
      std::set<std::size_t> distinct(seen.begin(), seen.end());
      CHECK(distinct.size() == seen.size());
      if (members == founders) CHECK(seen.size() == static_cast<std::size_t>(spe) * block);
      CHECK(seen.size() >= static_cast<std::size_t>(spe) * (block - static_cast<std::size_t>(members) + 1));
    }
  }
  // The epochs' orders differ (a fresh shuffle each epoch).
  fmnist::elastic_deal deal(o, count, founders, true);
  const auto first = std::vector<std::size_t>(deal.batch(0, 0, 0, 4).begin(), deal.batch(0, 0, 0, 4).end());
  const auto second = deal.batch(deal.steps_per_epoch(), 0, 0, 4);
  CHECK_FALSE(std::equal(first.begin(), first.end(), second.begin()));
}
