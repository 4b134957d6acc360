// The C++ half of the LocalSGD check against PyTorch (localsgd_reference.py runs it): M worker
// threads train the example's MLP with dppf's sgd on flat_parameters and local_sgd every tau
// steps, on fixed minibatches (worker r, step s: training images [(s M + r) B, (s M + r + 1) B)
// modulo the first N). Writes DIR/init.bin (the initial parameters, float32, in named_parameters
// order), DIR/layout.txt (name and size per line) and DIR/worker<r>.bin (each worker's final ones).
// usage: libtorch_localsgd DATA_DIR OUT_DIR M TAU STEPS BATCH LR MOMENTUM SEED

#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <dppf/dppf.hpp>

#include "common/cli.hpp"
#include "fashion_mnist/idx.hpp"
#include "flat_parameters.hpp"
#include "models.hpp"

namespace {
void write(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (!f) throw std::runtime_error("cannot write " + path);
}
}  // namespace

int main(int argc, char** argv) try {
  if (argc != 10) {
    std::cerr << "usage: libtorch_localsgd DATA_DIR OUT_DIR M TAU STEPS BATCH LR MOMENTUM SEED\n";
    return 2;
  }
  using example_cli::parse;
  const std::string data = argv[1], out = argv[2];
  const int m = parse<int>("M", argv[3]);
  const auto tau = parse<std::int64_t>("TAU", argv[4]);
  const int steps = parse<int>("STEPS", argv[5]);
  const auto batch = parse<std::size_t>("BATCH", argv[6]);
  const double lr = parse<double>("LR", argv[7]), momentum = parse<double>("MOMENTUM", argv[8]);
  const auto seed = parse<std::uint64_t>("SEED", argv[9]);
  const std::size_t n = 4096;
  const fmnist::dataset train = fmnist::load_split(data, "train", n);
  const torch_example::model_options mo{.name = "mlp", .hidden = {64, 64}};
  {
    torch_example::model init = torch_example::make_model(mo, seed);
    flat_torch::flat_parameters flat(*init.module);
    write(out + "/init.bin", flat.params());
    std::ofstream layout(out + "/layout.txt");
    for (const auto& s : flat.layout().segments()) layout << s.name << " " << s.size << "\n";
  }
  dppf::thread_group group(m);
  group.run([&](dppf::thread_communicator comm) {
    torch::set_num_threads(1);
    const int r = comm.rank();
    torch_example::model net = torch_example::make_model(mo, seed);
    flat_torch::flat_parameters flat(*net.module);
    dppf::trainer tr{dppf::sgd{{.lr = lr, .momentum = momentum}}, dppf::local_sgd{}, std::move(comm), dppf::host_executor{},
                     {.tau = tau}};
    for (int s = 0; s < steps; ++s) {
      const std::size_t begin = ((static_cast<std::size_t>(s) * m + r) * batch) % (n - n % batch);
      const auto x = torch::from_blob(const_cast<float*>(train.x.data() + begin * 784), {static_cast<std::int64_t>(batch), 784});
      const auto y = torch::from_blob(const_cast<std::uint8_t*>(train.y.data() + begin), {static_cast<std::int64_t>(batch)},
                                      torch::kUInt8).to(torch::kLong);
      flat.zero_grad();
      const torch::Tensor loss = torch::nn::functional::cross_entropy(net.forward(x), y);
      loss.backward();
      flat.check();
      tr.step(flat.params(), flat.grads(), loss.item<double>());
    }
    write(out + "/worker" + std::to_string(r) + ".bin", flat.params());
  });
  return 0;
} catch (const std::exception& e) {
  std::cerr << "libtorch_localsgd: " << e.what() << "\n";
  return 1;
}
