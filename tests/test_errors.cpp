// dppf's exception family: every exception is a dppf::error and a std::exception exactly once
// (catching by std::exception is never ambiguous), bad arguments are std::invalid_argument, and
// the library's own throw sites use the family.
#include <doctest/doctest.h>

#include <dppf/dppf.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

// Throws E, catches it as dppf::error and, separately, as std::exception and as Std; checks the
// message survives every way.
template <class E, class Std, class... A>
void check_caught_every_way(A&&... args) {
  const std::string text = E(args...).what();
  bool as_dppf = false, as_std = false, as_std_kind = false;
  try {
    throw E(args...);
  } catch (const dppf::error& e) {
    as_dppf = std::string(e.what()) == text;
  }
  try {
    throw E(args...);
  } catch (const std::exception& e) {
    as_std = std::string(e.what()) == text;
  }
  try {
    throw E(args...);
  } catch (const Std& e) {
    as_std_kind = std::string(e.what()) == text;
  }
  CHECK(as_dppf);
  CHECK(as_std);
  CHECK(as_std_kind);
}

}  // namespace

TEST_CASE("error family: each exception is a dppf::error and a std::exception once") {
  check_caught_every_way<dppf::invalid_argument_error, std::invalid_argument>("dppf: bad field");
  check_caught_every_way<dppf::communication_error, std::runtime_error>("dppf: peer lost");
  check_caught_every_way<dppf::timeout_error, std::runtime_error>("dppf: all_reduce timed out");
  check_caught_every_way<dppf::non_finite_error, std::runtime_error>("dppf: NaN on rank 2");
  check_caught_every_way<dppf::checkpoint_error, std::runtime_error>("dppf: truncated file");
  check_caught_every_way<dppf::cuda_error, std::runtime_error>(2, "dppf: cudaMalloc: out of memory");
  static_assert(std::is_base_of_v<dppf::communication_error, dppf::timeout_error>);
  static_assert(!std::is_base_of_v<std::exception, dppf::error>, "dppf::error must not add a second std::exception base");
  CHECK(dppf::cuda_error(2, "x").code() == 2);
}

TEST_CASE("error family: library throw sites raise family members") {
  // A bad option: invalid_argument_error, also catchable as std::invalid_argument.
  CHECK_THROWS_AS(dppf::trainer(dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, dppf::single_communicator{},
                                dppf::host_executor{}, {.tau = 0}),
                  dppf::invalid_argument_error);
  CHECK_THROWS_AS(dppf::trainer(dppf::sgd{{.lr = 0.1}}, dppf::local_sgd{}, dppf::single_communicator{},
                                dppf::host_executor{}, {.tau = 0}),
                  std::invalid_argument);
  // Mismatched sizes inside an algorithm.
  std::vector<float> a(3), b(4);
  CHECK_THROWS_AS((void)dppf::dot(dppf::host_executor{}, a, b), dppf::error);
  // A missing checkpoint file.
  CHECK_THROWS_AS(dppf::safetensors::load("/nonexistent/dppf-no-such-file.safetensors"), dppf::checkpoint_error);
}
