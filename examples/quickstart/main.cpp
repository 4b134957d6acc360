// dppf quickstart: M workers in one process (dppf::thread_group), each training the same linear model
// on its own shard of a synthetic least-squares problem with dppf::sgd, averaging parameters
// with all_reduce(avg) after every round of local steps (LocalSGD by hand). Prints one JSON
// line; exits non-zero if training did not converge or the workers disagree at the end.
//
//   quickstart [workers=4] [rounds=25]

#include <dppf/dppf.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

constexpr std::size_t dim = 16;          // parameters of the linear model
constexpr std::size_t rows = 256;        // samples per worker
constexpr std::size_t batch = 8;         // mini-batch size
constexpr int local_steps = 8;           // SGD steps between two averagings

struct shard {
  std::vector<float> a;  // rows x dim, row-major
  std::vector<float> b;  // rows
};

// Worker r's data: b = a . x_true + small noise, with its own random rows.
shard make_shard(int rank, const std::vector<float>& x_true) {
  std::mt19937 gen(1000u + static_cast<unsigned>(rank));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  shard s{std::vector<float>(rows * dim), std::vector<float>(rows)};
  for (std::size_t k = 0; k < rows; ++k) {
    double y = 0.0;
    for (std::size_t j = 0; j < dim; ++j) {
      s.a[k * dim + j] = normal(gen);
      y += static_cast<double>(s.a[k * dim + j]) * x_true[j];
    }
    s.b[k] = static_cast<float>(y) + 0.01f * normal(gen);
  }
  return s;
}

// Half the mean squared residual over rows [begin, end); grad (if given) receives its gradient.
double loss(const shard& s, const std::vector<float>& x, std::size_t begin, std::size_t end, std::vector<float>* grad) {
  if (grad) grad->assign(dim, 0.0f);
  double total = 0.0;
  const double inv = 1.0 / static_cast<double>(end - begin);
  for (std::size_t k = begin; k < end; ++k) {
    double r = -static_cast<double>(s.b[k]);
    for (std::size_t j = 0; j < dim; ++j) r += static_cast<double>(s.a[k * dim + j]) * x[j];
    total += 0.5 * r * r * inv;
    if (grad)
      for (std::size_t j = 0; j < dim; ++j) (*grad)[j] += static_cast<float>(r * inv * s.a[k * dim + j]);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 4;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 25;
  if (workers < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: quickstart [workers >= 1] [rounds >= 1]\n");
    return 2;
  }

  std::vector<float> x_true(dim);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (auto& v : x_true) v = uniform(gen);

  struct report {
    double initial_loss = 0, final_loss = 0, distance = 0;
    bool agree = false;
  } out;

  dppf::thread_group group(workers);
  group.run([&](dppf::thread_communicator comm) {
    const shard data = make_shard(comm.rank(), x_true);
    std::vector<float> params(dim, 0.0f), grads(dim);
    dppf::host_executor ex;
    dppf::sgd opt{{.lr = 0.05, .momentum = 0.9}};
    auto state = opt.init(ex, params);

    const double initial = comm.all_reduce(loss(data, params, 0, rows, nullptr), dppf::reduce_op::avg);
    std::size_t next = 0;
    for (int round = 0; round < rounds; ++round) {
      for (int s = 0; s < local_steps; ++s) {
        loss(data, params, next, next + batch, &grads);
        next = (next + batch) % rows;
        opt.step(ex, params, grads, state);
      }
      comm.all_reduce(params, dppf::reduce_op::avg);  // every worker now holds the mean model
    }
    const double final_loss = comm.all_reduce(loss(data, params, 0, rows, nullptr), dppf::reduce_op::avg);

    // The workers must hold the very same model: compare a checksum across ranks.
    double checksum = 0.0;
    for (float v : params) checksum += static_cast<double>(v);
    const std::vector<double> sums = comm.all_gather(checksum);
    if (comm.rank() == 0) {
      out.initial_loss = initial;
      out.final_loss = final_loss;
      double d2 = 0.0;
      for (std::size_t j = 0; j < dim; ++j) d2 += (params[j] - x_true[j]) * (params[j] - x_true[j]);
      out.distance = std::sqrt(d2);
      out.agree = true;
      for (double v : sums) out.agree = out.agree && v == sums[0];
    }
  });

  const bool converged = out.final_loss < 1e-3 * out.initial_loss;
  std::printf("{\"example\": \"quickstart\", \"workers\": %d, \"parameters\": %zu, \"rounds\": %d, \"local_steps\": %d, "
              "\"initial_loss\": %.6g, \"final_loss\": %.6g, \"distance_to_solution\": %.6g, \"workers_agree\": %s, "
              "\"converged\": %s}\n",
              workers, dim, rounds, local_steps, out.initial_loss, out.final_loss, out.distance,
              out.agree ? "true" : "false", converged ? "true" : "false");
  return converged && out.agree ? 0 : 1;
}
