// A program written against dppf's public API the way an outside trainer uses it (the shape of
// docs/architecture.md): buffers, an executor, an exact optimizer, an in-process group. It checks every
// result against a plain loop and exits non-zero on any mismatch.
#include <dppf/dppf.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  // The version macros agree with the package version CMake found.
  expect(std::strcmp(DPPF_CONSUMER_EXPECTED_VERSION, "") != 0, "the package version is known");
  char version[32];
  std::snprintf(version, sizeof version, "%d.%d.%d", DPPF_VERSION_MAJOR, DPPF_VERSION_MINOR, DPPF_VERSION_PATCH);
  expect(std::strcmp(version, DPPF_CONSUMER_EXPECTED_VERSION) == 0, "dppf/version.hpp matches the CMake package version");

  // One SGD step with momentum and weight decay against the torch.optim.SGD formula.
  const std::size_t n = 5;
  std::vector<float> params(n), grads(n);
  for (std::size_t i = 0; i < n; ++i) {
    params[i] = 0.5f * static_cast<float>(i) - 1.0f;
    grads[i] = 0.25f * static_cast<float>(i * i) - 0.75f;
  }
  const std::vector<float> p0 = params;
  dppf::host_executor ex;
  dppf::sgd opt{{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  auto state = opt.init(ex, params.size());
  opt.step(ex, params, grads, state);
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(grads[i]) + 5e-4 * p0[i];  // first step: buffer = d
    const double expected = p0[i] - 0.1 * (d + 0.9 * d);            // Nesterov
    expect(std::fabs(params[i] - expected) <= 1e-6 * (1.0 + std::fabs(expected)), "sgd step matches the formula");
  }

  // Three workers average their buffers.
  dppf::thread_group group(3);
  std::vector<std::vector<double>> results(3);
  group.run([&](auto comm) {
    std::vector<double> x(4);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = comm.rank() * 10.0 + static_cast<double>(i);
    comm.all_reduce(x, dppf::reduce_op::avg);
    results[static_cast<std::size_t>(comm.rank())] = x;
  });
  for (const auto& x : results)
    for (std::size_t i = 0; i < 4; ++i) expect(x[i] == 10.0 + static_cast<double>(i), "threads all_reduce avg");

  // Invalid options raise std::invalid_argument naming the field.
  bool raised = false;
  try {
    dppf::sgd bad{{.lr = -1.0}};
  } catch (const std::invalid_argument& e) {
    raised = std::strstr(e.what(), "lr") != nullptr;
  }
  expect(raised, "a negative lr raises std::invalid_argument naming lr");

  std::printf("consumer: %s (%d failures)\n", failures == 0 ? "ok" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
