// The host side of dppf::nccl_communicator, run in CI without a GPU: the tables that turn dppf's
// reduce_op and element types into NCCL's. A single-rank run cannot check them (the sum and the
// average of one rank are the same buffer), so they are checked here, entry by entry, against
// NCCL's own enumerators.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dppf/async_communicator.hpp>
#include <dppf/communicators/nccl.cuh>

#include <cstdint>
#include <stdexcept>

#include "support.hpp"

using dppf::reduce_op;
using dppf::detail::nccl_op;
using dppf::detail::nccl_type;

// Compile-time: the tables are constexpr, so a wrong entry fails the build too.
static_assert(nccl_op(reduce_op::sum) == ncclSum);
static_assert(nccl_op(reduce_op::avg) == ncclAvg);
static_assert(nccl_type<float>() == ncclFloat32);
static_assert(nccl_type<double>() == ncclFloat64);
// The overlapped sync needs the asynchronous refinement (start_all_reduce and its handle).
static_assert(dppf::async_communicator<dppf::nccl_communicator>);
static_assert(dppf::collective_handle<dppf::nccl_all_reduce_handle>);

TEST_CASE("nccl: every reduce_op maps to the NCCL reduction of the same meaning, and no two share one") {
  CHECK(nccl_op(reduce_op::sum) == ncclSum);
  CHECK(nccl_op(reduce_op::avg) == ncclAvg);
  CHECK(nccl_op(reduce_op::min) == ncclMin);
  CHECK(nccl_op(reduce_op::max) == ncclMax);
  const reduce_op all[] = {reduce_op::sum, reduce_op::avg, reduce_op::min, reduce_op::max};
  for (const reduce_op a : all)
    for (const reduce_op b : all) CHECK((a == b) == (nccl_op(a) == nccl_op(b)));
  dppf_test::check_throws_with<std::invalid_argument>([] { (void)nccl_op(static_cast<reduce_op>(42)); }, "invalid reduce_op 42");
}

TEST_CASE("nccl: element types map to NCCL types of the same size and kind") {
  CHECK(nccl_type<float>() == ncclFloat32);
  CHECK(nccl_type<double>() == ncclFloat64);
  CHECK(nccl_type<std::int64_t>() == ncclInt64);  // the argument agreement's integers
  CHECK(nccl_type<float>() != nccl_type<double>());
  // The agreement words are int64, all-reduced with ncclInt64 (the table above) and ncclMax.
  CHECK(sizeof(dppf::detail::agreement_vector) == dppf::detail::agreement_words * sizeof(std::int64_t));
}
