// dppf::thrust_executor<Policy> on the CPU: Thrust's OpenMP and sequential (cpp) systems, compiled by g++
// with THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP. The same test bodies run on the GPU
// executors (tests/gpu); here the host order makes the results bitwise equal to dppf::host.

#include <dppf/executors/thrust.hpp>

#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/omp/execution_policy.h>

#include <omp.h>

#include "gpu/executor_cases.hpp"

namespace {

struct host_mirror {
  template <class E, class T>
  static std::vector<T> upload(const E&, const std::vector<T>& v) {
    return v;
  }
  template <class E, class B>
  static auto download(const E&, const B& b) {
    return std::vector<std::remove_cv_t<dppf::buffer_element_t<const B&>>>(std::ranges::begin(b), std::ranges::end(b));
  }
};

using omp_policy = std::remove_cvref_t<decltype(thrust::omp::par)>;
using cpp_policy = std::remove_cvref_t<decltype(thrust::cpp::par)>;

static_assert(dppf::executor<dppf::thrust_executor<omp_policy>>);
static_assert(dppf::executor<dppf::thrust_executor<cpp_policy>>);
static_assert(std::same_as<dppf::thrust_executor<omp_policy>::memory_space, dppf::host_space>);
static_assert(std::same_as<dppf::buffer_t<dppf::thrust_executor<omp_policy>, float>, std::vector<float>>);

}  // namespace

TEST_CASE("thrust omp executor matches a double loop on every element") {
  const dppf::thrust_executor ex{thrust::omp::par};
  dppf_gpu_test::check_elementwise<host_mirror, float>(ex, true);
  dppf_gpu_test::check_elementwise<host_mirror, double>(ex, true);
}

TEST_CASE("thrust cpp executor matches a double loop on every element") {
  const dppf::thrust_executor ex{thrust::cpp::par};
  dppf_gpu_test::check_elementwise<host_mirror, float>(ex, true);
}

TEST_CASE("thrust omp reductions are identical for any thread count") {
  const auto x = dppf_test::random_vector<float>(1000003, 5);
  const dppf::thrust_executor ex{thrust::omp::par};
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = dppf::squared_norm(ex, x);
  omp_set_num_threads(3);
  const double three = dppf::squared_norm(ex, x);
  omp_set_num_threads(saved);
  CHECK(one == three);
  CHECK(one == dppf::squared_norm(dppf::host_executor{}, x));
}

TEST_CASE("thrust omp sgd and adamw steps equal dppf::host_executor") {
  const dppf::thrust_executor ex{thrust::omp::par};
  dppf_gpu_test::check_optimizers<host_mirror, float>(ex, true);
  dppf_gpu_test::check_optimizers<host_mirror, double>(ex, true);
}

TEST_CASE("thrust omp executor rejects buffers of different sizes") {
  dppf_gpu_test::check_size_mismatch<host_mirror, float>(dppf::thrust_executor{thrust::omp::par});
}
