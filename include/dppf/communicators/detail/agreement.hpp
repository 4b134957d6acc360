#pragma once
// How every communicator makes its ranks agree on a collective's arguments (which collective,
// buffer size and element size, reduce_op, root) and on whether some rank rejected its own, so
// that bad input raises on every rank together instead of hanging or corrupting the others.
// One verdict, one set of messages, for every communicator:
//
// * In-process groups (thread_group, device_group) see every rank's collective_args at their
//   rendezvous and call agree() on them: no extra communication.
// * Groups of processes (MPI, NCCL) encode their args into agreement_words integers whose
//   elementwise maximum over ranks (one small all-reduce) says whether they all agree:
//   every field x is sent as (x, -x), so max(x) == -max(-x) exactly when all ranks have the
//   same x. Only when they do not, an all-gather of the same encodings names the ranks that
//   differ (the error path pays for the message, the normal path does not).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../../communicator.hpp"
#include "../../error.hpp"

namespace dppf::detail {

enum class collective : std::uint8_t { buffer_all_reduce, broadcast, scalar_all_reduce, all_gather, barrier, all_to_all, buffer_all_gather };

inline const char* to_string(collective c) noexcept {
  switch (c) {
    case collective::buffer_all_reduce: return "all_reduce of a buffer";
    case collective::broadcast: return "broadcast";
    case collective::scalar_all_reduce: return "all_reduce of a scalar";
    case collective::all_gather: return "all_gather";
    case collective::barrier: return "barrier";
    case collective::all_to_all: return "all_to_all";
    case collective::buffer_all_gather: return "all_gather of a buffer";
  }
  return "?";
}

/// One rank's arguments to a collective. Fields a collective does not use stay at their
/// defaults, so they agree trivially.
struct collective_args {
  collective kind = collective::barrier;
  std::size_t n = 0;             // buffer elements
  std::size_t element_size = 0;  // bytes per element
  reduce_op op = reduce_op::sum;
  int root = 0;
  bool rejected = false;  // this rank found its own arguments invalid
};

/// What every rank learns: the highest rank that rejected its own arguments (-1: none), and
/// whether the others' arguments are identical.
struct agreement {
  int rejected_rank = -1;
  bool same = true;
};

inline constexpr std::size_t agreement_fields = 5;  // kind, n, element_size, op, root
inline constexpr std::size_t agreement_words = 2 * agreement_fields + 1;
using agreement_vector = std::array<std::int64_t, agreement_words>;

/// {x, -x} for every field, then rank + 1 if this rank rejected its arguments (else 0).
inline agreement_vector encode(const collective_args& a, int rank) noexcept {
  const std::int64_t fields[agreement_fields] = {static_cast<std::int64_t>(a.kind), static_cast<std::int64_t>(a.n),
                                                 static_cast<std::int64_t>(a.element_size), static_cast<std::int64_t>(a.op),
                                                 a.root};
  agreement_vector v{};
  for (std::size_t f = 0; f < agreement_fields; ++f) {
    v[2 * f] = fields[f];
    v[2 * f + 1] = -fields[f];
  }
  v[agreement_words - 1] = a.rejected ? rank + 1 : 0;
  return v;
}

/// One rank's args back from its own encoding (an entry of an all-gather).
inline collective_args decode(const agreement_vector& v) noexcept {
  return {.kind = static_cast<collective>(v[0]),
          .n = static_cast<std::size_t>(v[2]),
          .element_size = static_cast<std::size_t>(v[4]),
          .op = static_cast<reduce_op>(v[6]),
          .root = static_cast<int>(v[8]),
          .rejected = v[agreement_words - 1] != 0};
}

/// In place: v = elementwise max(v, other), the reduction MPI_MAX / ncclMax computes.
inline void combine(agreement_vector& v, const agreement_vector& other) noexcept {
  for (std::size_t k = 0; k < agreement_words; ++k) v[k] = other[k] > v[k] ? other[k] : v[k];
}

/// The verdict from the elementwise maximum of every rank's encoding.
inline agreement verdict(const agreement_vector& max) noexcept {
  agreement a{.rejected_rank = static_cast<int>(max[agreement_words - 1]) - 1, .same = true};
  for (std::size_t f = 0; f < agreement_fields; ++f) a.same = a.same && max[2 * f] == -max[2 * f + 1];
  return a;
}

/// The verdict over every rank's args, for groups that see them all (the same encoding, so the
/// same answer as the process groups get).
inline agreement agree(std::span<const collective_args> all) noexcept {
  agreement_vector max = encode(all[0], 0);
  for (std::size_t r = 1; r < all.size(); ++r) combine(max, encode(all[r], static_cast<int>(r)));
  return verdict(max);
}

/// "<who>: <what> differ across ranks (rank 0 has X, rank r has Y, ...; this is rank k)", for the
/// first field that differs, in the order collective, buffer size, reduce_op, root.
inline std::string mismatch_message(const char* who, std::span<const collective_args> all, int rank) {
  const collective_args& a0 = all[0];
  enum { kinds, sizes, ops, roots } field = roots;
  for (const collective_args& a : all) {
    if (a.kind != a0.kind) {
      field = kinds;
      break;
    }
  }
  if (field == roots)
    for (const collective_args& a : all)
      if (a.n != a0.n || a.element_size != a0.element_size) field = sizes;
  if (field == roots)
    for (const collective_args& a : all)
      if (a.op != a0.op) field = ops;
  const auto differs = [&](const collective_args& a) {
    switch (field) {
      case kinds: return a.kind != a0.kind;
      case sizes: return a.n != a0.n || a.element_size != a0.element_size;
      case ops: return a.op != a0.op;
      case roots: return a.root != a0.root;
    }
    return false;
  };
  const auto describe = [&](const collective_args& a) -> std::string {
    switch (field) {
      case kinds: return std::string("called ") + to_string(a.kind);
      case sizes: return std::to_string(a.n) + " elements of " + std::to_string(a.element_size) + " bytes";
      case ops: return std::string("reduce_op ") + dppf::to_string(a.op);
      case roots: return "root " + std::to_string(a.root);
    }
    return "?";
  };
  static const char* const names[] = {"collectives", "buffer sizes", "reduce_ops", "roots"};
  std::string msg = std::string(who) + ": " + names[field] + " differ across ranks (rank 0 " +
                    (field == kinds ? "" : "has ") + describe(a0);
  std::size_t listed = 0, more = 0;
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (!differs(all[r])) continue;
    if (listed++ < 4)
      msg += ", rank " + std::to_string(r) + (field == kinds ? " " : " has ") + describe(all[r]);
    else
      ++more;
  }
  if (more) msg += ", and " + std::to_string(more) + " more ranks differ";
  return msg + "; this is rank " + std::to_string(rank) + ")";
}

/// This rank's own problem with a buffer all-reduce's arguments ("" if none), found before the
/// agreement so that the others learn of it there.
inline std::string buffer_all_reduce_problem(const char* who, std::size_t n_in, std::size_t n_out, reduce_op op) {
  if (op != reduce_op::sum && op != reduce_op::avg)
    return std::string(who) + " of a buffer supports sum and avg, not " + dppf::to_string(op);
  if (n_in != n_out)
    return std::string(who) + " output has " + std::to_string(n_out) + " elements, expected " + std::to_string(n_in) +
           " (the input's size)";
  return {};
}

/// This rank's own problem with a broadcast root ("" if none).
inline std::string root_problem(const char* who, int root, int size) {
  if (root >= 0 && root < size) return {};
  return std::string(who) + ": root " + std::to_string(root) + " is outside [0, " + std::to_string(size) + ")";
}

/// Raises on this rank unless the verdict is that all agree: std::invalid_argument with this
/// rank's own `problem` if it has one; communication_error if another rank rejected its
/// arguments; std::invalid_argument naming what differs otherwise (then, and only then,
/// gather() is called for every rank's args). Every rank has the same verdict, so either all
/// ranks raise or none does.
template <class Gather>
void raise_unless_agreed(const char* who, int rank, const std::string& problem, agreement a, Gather&& gather) {
  if (!problem.empty()) throw_invalid(problem);
  if (a.rejected_rank >= 0)
    throw communication_error(std::string("dppf: ") + who + ": rank " + std::to_string(a.rejected_rank) +
                              " rejected its arguments, so rank " + std::to_string(rank) + " stops too");
  if (a.same) return;
  const std::vector<collective_args> all = gather();
  throw_invalid(mismatch_message(who, all, rank));
}

}  // namespace dppf::detail
