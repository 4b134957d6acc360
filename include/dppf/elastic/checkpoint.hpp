#pragma once
// Checkpoints of an elastic run: one file for the whole group, resumable by any number of workers.
//
// * save_elastic (collective over the current members): the parameters are the members' mean
//   (a committed all-reduce, so a failure during it regroups and runs it again); the optimizer
//   state, the rule's state and the counters are those of the designated member, rank 0 of the
//   current generation (the rule's state is replicated, so any member's is the group's). The
//   metadata records the generation (dppf.elastic.generation) and its member count
//   (dppf.elastic.members). No compressed sync's state and no overlapped sync in flight: they
//   are the saving member's, over the saving generation; a resumed group starts a compressed
//   state again from the loaded mean, and goes on from the mean of the live parameters (the
//   sync in flight is dropped; the members keep it). Every member returns its set (the same parameters; its own
//   optimizer state): rank 0's is the checkpoint (save_elastic(path, ...) writes it there only).
// * load_elastic (collective over the current members, after elastic_trainer::start): every
//   member, however many there are now, loads that one file: the mean parameters and the
//   designated member's optimizer and rule state and counters (all-or-nothing, as load_trainer).
//   A failure while loading raises on every member (it is not survived: resume again).

#include <filesystem>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../checkpoint/trainer_checkpoint.hpp"
#include "../error.hpp"
#include "trainer.hpp"

namespace dppf {

/// What an elastic checkpoint's metadata says about the group that saved it.
struct elastic_checkpoint_info {
  std::int64_t generation = 0;  ///< the generation at the save
  int members = 0;              ///< its member count
};

template <class Optimizer, class Rule, executor Exec, host_buffer P>
safetensors save_elastic(elastic_trainer<Optimizer, Rule, Exec>& tr, const P& params) {
  using T = std::remove_cv_t<buffer_element_t<const P&>>;
  const std::size_t n = std::ranges::size(params);
  detail::require_not_empty(n, "save_elastic: parameters");
  std::vector<T> mean(n);
  const std::span<const T> x(std::ranges::data(params), n);
  auto& group = tr.group();
  // Not admitting newcomers: the group must be the same as the one the tensors describe.
  group.run_committed([&] { group.comm().all_reduce(x, std::span<T>(mean), reduce_op::avg); }, [] {}, false);
  safetensors out = detail::save_trainer(tr.inner(), mean, detail::own_sync_state::left_out);
  out.set_metadata("dppf.checkpoint", "elastic 1");
  out.set_metadata("dppf.elastic.generation", std::to_string(group.generation().number));
  out.set_metadata("dppf.elastic.members", std::to_string(group.size()));
  return out;
}

/// save_elastic, then rank 0 writes `path` (atomically); collective, returns on every member.
template <class Optimizer, class Rule, executor Exec, host_buffer P>
elastic_checkpoint_info save_elastic(const std::filesystem::path& path, elastic_trainer<Optimizer, Rule, Exec>& tr, const P& params) {
  const safetensors out = save_elastic(tr, params);
  if (tr.group().rank() == 0) out.save(path);
  return {tr.group().generation().number, tr.group().size()};
}

/// The generation and member count an elastic checkpoint was saved with.
inline elastic_checkpoint_info elastic_checkpoint_of(const safetensors& in) {
  if (in.metadata("dppf.checkpoint") != "elastic 1")
    throw checkpoint_error("dppf: checkpoint " + in.source() + ": not an elastic checkpoint (metadata dppf.checkpoint is '" +
                           in.metadata("dppf.checkpoint") + "', expected 'elastic 1')");
  elastic_checkpoint_info info;
  try {
    info.generation = std::stoll(in.metadata("dppf.elastic.generation"));
    info.members = std::stoi(in.metadata("dppf.elastic.members"));
  } catch (const std::exception&) {
    throw checkpoint_error("dppf: checkpoint " + in.source() + ": malformed dppf.elastic.generation or dppf.elastic.members");
  }
  return info;
}

template <class Optimizer, class Rule, executor Exec, host_buffer P>
elastic_checkpoint_info load_elastic(safetensors in, elastic_trainer<Optimizer, Rule, Exec>& tr, P&& params) {
  const elastic_checkpoint_info info = elastic_checkpoint_of(in);
  // Every member loads the same file as if it were its own rank's (the tensors are the group's).
  in.set_metadata("dppf.checkpoint", "trainer 1");
  in.set_metadata("dppf.rank", std::to_string(tr.group().rank()));
  in.set_metadata("dppf.world_size", std::to_string(tr.group().size()));
  load_trainer(in, tr.inner(), params);
  return info;
}

}  // namespace dppf
