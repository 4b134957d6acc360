#pragma once
// The flags of a training run (fmnist::run_options) that both Fashion-MNIST trainers take, the
// hand-written one and the LibTorch one, parsed in one place.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/cli.hpp"
#include "train.hpp"

namespace fmnist {

/// Sets the run option that `flag` names from `value` and says whether `flag` was one of them.
inline bool parse_run_flag(const example_cli::program& cli, const std::string& flag, const std::string& value, run_options& r) {
  if (flag == "--workers") r.workers = cli.parse<int>(flag, value);
  else if (flag == "--tau") r.tau = cli.parse<std::int64_t>(flag, value);
  else if (flag == "--alpha") r.alpha = cli.parse<double>(flag, value);
  else if (flag == "--lambda") r.lambda = cli.parse<double>(flag, value);
  else if (flag == "--lr") r.lr = cli.parse<double>(flag, value);
  else if (flag == "--momentum") r.momentum = cli.parse<double>(flag, value);
  else if (flag == "--weight-decay") r.weight_decay = cli.parse<double>(flag, value);
  else if (flag == "--outer-lr") r.outer_lr = cli.parse<double>(flag, value);
  else if (flag == "--outer-momentum") r.outer_momentum = cli.parse<double>(flag, value);
  else if (flag == "--push") r.push = value;
  else if (flag == "--push-warmup") r.push_warmup = cli.parse<std::int64_t>(flag, value);
  else if (flag == "--epochs") r.epochs = cli.parse<int>(flag, value);
  else if (flag == "--batch") r.batch = cli.parse<std::size_t>(flag, value);
  else if (flag == "--seed") r.seed = cli.parse<std::uint64_t>(flag, value);
  else if (flag == "--overlap-steps") r.overlap_steps = cli.parse<std::int64_t>(flag, value);
  else if (flag == "--sync-precision") {
    try {
      r.sync_precision = parse_sync_precision(value);
    } catch (const std::invalid_argument& e) {
      cli.usage(e.what());
    }
  }
  else return false;
  return true;
}

}  // namespace fmnist
