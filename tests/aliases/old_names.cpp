// A 0.1 program, spelled as it was: it must still compile and give the 0.2 results, with one
// deprecation warning per old name that names the new one (tests/aliases.cmake checks both).
#include <dppf/dppf.hpp>

#include <cstdio>
#include <vector>

int main() {
  dppf::threads group(2);
  std::vector<std::vector<float>> out(2);
  group.run([&](dppf::thread_member comm) {
    std::vector<float> x(8, 1.0f), g(8);
    dppf::host ex;
    dppf::counting<dppf::single> alone{dppf::single{}};
    dppf::trainer tr{dppf::sgd{{.lr = 0.5}}, dppf::local_sgd{}, alone, ex, {.tau = 2}};
    for (int s = 0; s < 4; ++s) {
      for (std::size_t i = 0; i < x.size(); ++i) g[i] = x[i] - static_cast<float>(comm.rank());
      tr.step(x, g);
    }
    dppf::host_parallel par;
    dppf::scale(par, x, 2.0f);
    out[static_cast<std::size_t>(comm.rank())] = x;
  });
  // Each worker alone (single communicator) halves its distance to its target every step, then
  // doubles: x = 2 * (r + (1 - r) / 16).
  bool ok = true;
  for (int r = 0; r < 2; ++r)
    for (float v : out[static_cast<std::size_t>(r)]) ok = ok && v == 2.0f * (static_cast<float>(r) + (1.0f - static_cast<float>(r)) / 16.0f);
  std::printf("0.1 names: %s\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
