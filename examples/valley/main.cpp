// examples/valley: M workers on a landscape with a sharp basin and a wide basin, noisy gradients.
// DPPF's push keeps the workers lambda/alpha apart, which does not fit in the sharp basin, so they
// settle together in the wide one; LocalSGD and plain SGD settle in the sharp basin they start
// near. Prints one JSON object as the last line of stdout; --svg draws the picture (2-D only);
// --sweep K repeats the run for K seeds and counts how often each method finds the wide basin.

#include <dppf/dppf.hpp>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "landscape.hpp"
#include "svg.hpp"

namespace {

struct config {
  std::string method = "dppf";
  int workers = 4;
  double alpha = 0.3;
  double lambda = 0.3;
  std::int64_t tau = 4;
  std::uint64_t seed = 1;
  int steps = 3000;
  double lr = 0.01;
  double noise = 1.0;
  std::size_t dims = 2;
  int sweep = 0;
  std::string svg;
};

const char* usage_text =
    "usage: valley [--method dppf|local_sgd|elastic|leader|grawa|diloco|single] [--workers M]\n"
    "              [--alpha A] [--lambda L] [--tau T] [--seed S] [--steps K] [--lr LR]\n"
    "              [--noise SIGMA] [--dims D] [--sweep SEEDS] [--svg PATH]\n";

const example_cli::program cli{"valley", usage_text};

config parse_args(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") cli.help();
    if (i + 1 >= argc) cli.usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--method") c.method = value;
    else if (flag == "--workers") c.workers = cli.parse<int>(flag, value);
    else if (flag == "--alpha") c.alpha = cli.parse<double>(flag, value);
    else if (flag == "--lambda") c.lambda = cli.parse<double>(flag, value);
    else if (flag == "--tau") c.tau = cli.parse<std::int64_t>(flag, value);
    else if (flag == "--seed") c.seed = cli.parse<std::uint64_t>(flag, value);
    else if (flag == "--steps") c.steps = cli.parse<int>(flag, value);
    else if (flag == "--lr") c.lr = cli.parse<double>(flag, value);
    else if (flag == "--noise") c.noise = cli.parse<double>(flag, value);
    else if (flag == "--dims") c.dims = cli.parse<std::size_t>(flag, value);
    else if (flag == "--sweep") c.sweep = cli.parse<int>(flag, value);
    else if (flag == "--svg") c.svg = value;
    else cli.usage("unknown flag " + flag);
  }
  if (c.workers < 1) cli.usage("--workers must be >= 1");
  if (c.steps < 1) cli.usage("--steps must be >= 1");
  if (c.dims < 2) cli.usage("--dims must be >= 2");
  if (c.method == "single") c.workers = 1;
  return c;
}

struct outcome {
  std::vector<std::vector<std::vector<double>>> paths;  // [worker][sample][coordinate]
  std::vector<std::vector<double>> mean_path;
  std::vector<double> x_bar;
  double final_loss = 0;
  std::string basin;
  int workers_in_wide = 0;
  double mean_distance = 0;
  std::int64_t syncs = 0;
  std::uint64_t bytes = 0;
};

// Calls f(rule) with the consensus policy the method names.
template <class F>
void with_rule(const config& c, F&& f) {
  if (c.method == "dppf") f(dppf::pull_push{{.alpha = c.alpha, .lambda = c.lambda}});
  else if (c.method == "local_sgd" || c.method == "single") f(dppf::local_sgd{});
  else if (c.method == "elastic") f(dppf::elastic{{.alpha = c.alpha, .beta = std::min(1.0, c.alpha * c.workers)}});
  else if (c.method == "leader") f(dppf::leader{{.pull = c.alpha}});
  else if (c.method == "grawa") f(dppf::grawa{{.alpha = c.alpha}});
  else if (c.method == "diloco") f(dppf::diloco{});
  else cli.usage("unknown method '" + c.method + "'");
}

outcome run(const config& c, const valley::landscape& land) {
  outcome out;
  out.paths.resize(static_cast<std::size_t>(c.workers));
  const int record_every = std::max(1, c.steps / 400);
  std::vector<std::vector<double>> finals(static_cast<std::size_t>(c.workers));
  std::vector<dppf::trainer_stats> stats(static_cast<std::size_t>(c.workers));
  std::atomic<int> in_wide{0};
  with_rule(c, [&](auto rule) {
    dppf::thread_group group(c.workers);
    group.run([&](dppf::thread_communicator comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      std::mt19937_64 gen(c.seed * 7919 + r);
      std::normal_distribution<double> normal(0.0, c.noise);
      // Every worker starts at the same point, on the sharp basin's rim facing away from the wide one.
      std::vector<double> x(c.dims, 0.0), g(c.dims);
      x[0] = -0.12;
      x[1] = 0.05;
      // "single" is plain local SGD: one worker that never syncs.
      const std::int64_t tau = c.method == "single" ? c.steps + 1 : c.tau;
      dppf::trainer tr{dppf::sgd{{.lr = c.lr}}, rule, comm, dppf::host_executor{}, {.tau = tau}};
      for (int t = 0; t < c.steps; ++t) {
        const double loss = land.value_and_gradient(std::span<const double>(x), std::span<double>(g));
        for (double& gk : g) gk += normal(gen);
        tr.step(x, g, loss);
        if (t % record_every == 0) out.paths[r].push_back({x[0], x[1]});
      }
      stats[r] = tr.stats();
      if (land.basin(std::span<const double>(x)) == "wide") ++in_wide;
      tr.average(x);
      finals[r] = x;
    });
  });
  out.x_bar = finals[0];
  out.final_loss = land.value(std::span<const double>(out.x_bar));
  out.basin = land.basin(std::span<const double>(out.x_bar));
  out.workers_in_wide = in_wide;
  out.mean_distance = stats[0].mean_distance;
  out.syncs = stats[0].syncs;
  out.bytes = stats[0].bytes;
  for (std::size_t s = 0; s < out.paths[0].size(); ++s) {
    std::vector<double> m(2, 0.0);
    for (const auto& p : out.paths)
      for (int k = 0; k < 2; ++k) m[k] += p[s][k] / static_cast<double>(c.workers);
    out.mean_path.push_back(m);
  }
  return out;
}

std::string json(const config& c, const outcome& o) {
  std::ostringstream j;
  j.precision(6);
  j << "{\"method\": \"" << c.method << "\", \"workers\": " << c.workers << ", \"alpha\": " << c.alpha
    << ", \"lambda\": " << c.lambda << ", \"tau\": " << c.tau << ", \"steps\": " << c.steps
    << ", \"final_loss\": " << o.final_loss << ", \"basin\": \"" << o.basin
    << "\", \"workers_in_wide_basin\": " << o.workers_in_wide << ", \"mean_distance_to_average\": " << o.mean_distance << ", \"syncs\": " << o.syncs
    << ", \"bytes_communicated\": " << o.bytes << "}";
  return j.str();
}

}  // namespace

int main(int argc, char** argv) try {
  config c = parse_args(argc, argv);
  const auto land = valley::landscape::make(c.dims);
  if (c.sweep > 0) {
    int wide = 0, all_wide = 0;
    for (int s = 0; s < c.sweep; ++s) {
      config cs = c;
      cs.seed = c.seed + static_cast<std::uint64_t>(s);
      const auto o = run(cs, land);
      wide += o.basin == "wide";
      all_wide += o.workers_in_wide == cs.workers;
      std::cout << "seed " << cs.seed << ": " << o.basin << " (final loss " << o.final_loss << ", "
                << o.workers_in_wide << " of " << cs.workers << " workers in the wide basin)\n";
    }
    std::cout << "{\"method\": \"" << c.method << "\", \"workers\": " << c.workers << ", \"alpha\": " << c.alpha
              << ", \"lambda\": " << c.lambda << ", \"tau\": " << c.tau << ", \"steps\": " << c.steps
              << ", \"seeds\": " << c.sweep << ", \"wide\": " << wide << ", \"all_workers_wide\": " << all_wide << "}"
              << std::endl;
    return 0;
  }
  const auto o = run(c, land);
  if (!c.svg.empty()) {
    if (c.dims != 2) std::cerr << "valley: --svg draws the first two coordinates of a " << c.dims << "-D run\n";
    std::ofstream f(c.svg);
    if (!f) throw std::runtime_error("cannot write " + c.svg);
    f << valley::draw(land, o.paths, o.mean_path, c.method + ": " + o.basin + " basin");
    std::cerr << "valley: wrote " << c.svg << "\n";
  }
  std::cout << json(c, o) << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::cerr << "valley: error: " << e.what() << "\n";
  return 1;
}
