#pragma once
// Shared helpers for dppf's tests: seeded random data and exception-message checks.

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace dppf_test {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(normal(gen));
  return v;
}

// Runs f and checks that it throws E whose what() contains `needle`.
template <class E, class F>
void check_throws_with(F&& f, const std::string& needle) {
  bool thrown = false;
  try {
    f();
  } catch (const E& e) {
    thrown = true;
    INFO("message: " << std::string(e.what()));
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
  CHECK_MESSAGE(thrown, "expected an exception mentioning '" << needle << "'");
}

}  // namespace dppf_test
