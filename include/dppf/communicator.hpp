#pragma once
// The communicator concept: a group of ranks that all-reduce buffers (sum or average, in place
// or out of place), all-reduce and all-gather scalars, broadcast and meet at a barrier. Every
// implementation turns failures into dppf::communication_error on every rank.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "error.hpp"

namespace dppf {

/// Reduction of a collective. Buffers support sum and avg; scalars also min and max.
enum class reduce_op { sum, avg, min, max };

inline const char* to_string(reduce_op op) noexcept {
  switch (op) {
    case reduce_op::sum: return "sum";
    case reduce_op::avg: return "avg";
    case reduce_op::min: return "min";
    case reduce_op::max: return "max";
  }
  return "?";
}

template <class C>
concept communicator = requires(C& c, const C& cc, span_for<typename C::memory_space, float> x,
                                span_for<typename C::memory_space, const float> y, double v) {
  typename C::memory_space;
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.all_reduce(y, x, reduce_op::avg);  // out of place
  c.all_reduce(x, reduce_op::sum);     // in place
  { c.all_reduce(v, reduce_op::max) } -> std::convertible_to<double>;
  { c.all_gather(v) } -> std::same_as<std::vector<double>>;
  c.broadcast(x, 0);
  c.barrier();
};

/// A communicator whose members can change between collectives (elastic_communicator):
/// membership() names the current set of members and changes whenever the set does. State laid
/// out over one set (a compressed sync's chunks and reference) is rebuilt when it changes.
template <class C>
concept changing_membership = requires(const C& c) {
  { c.membership() } -> std::convertible_to<std::int64_t>;
};

/// The communicator's membership(), or 0 for one whose members never change.
template <class C>
std::int64_t membership_of(const C& comm) {
  if constexpr (changing_membership<C>)
    return static_cast<std::int64_t>(comm.membership());
  else
    return (void)comm, 0;
}

/// Raises std::invalid_argument on every rank unless every rank passes the same n. One
/// all-gather of a scalar, so mismatched sizes never leave a rank waiting in a later collective.
template <communicator C>
void require_same_size_on_all_ranks(C& comm, std::size_t n, const char* what) {
  const std::vector<double> sizes = comm.all_gather(static_cast<double>(n));
  for (std::size_t r = 0; r < sizes.size(); ++r)
    if (sizes[r] != sizes[0])
      detail::throw_invalid(std::string(what) + ": sizes differ across ranks (rank 0 has " +
                            std::to_string(static_cast<std::size_t>(sizes[0])) + ", rank " + std::to_string(r) +
                            " has " + std::to_string(static_cast<std::size_t>(sizes[r])) + "; this is rank " +
                            std::to_string(comm.rank()) + ")");
}

/// Raises on every rank when `failed` is true on any rank: the way a rank that detected bad
/// input tells the others, so every rank leaves the collective code path together.
template <communicator C>
void agree_or_throw(C& comm, bool failed, const std::string& what) {
  if (comm.all_reduce(failed ? 1.0 : 0.0, reduce_op::max) != 0.0) {
    if (failed) detail::throw_invalid(what);
    throw communication_error("dppf: another rank failed: " + what);
  }
}

/// The first line where two texts of "key=value" lines differ, as "<prefix>key is A <a_is> and B
/// <b_is>"; "" when they are equal.
inline std::string first_difference(const std::string& a, const std::string& b, const std::string& a_is, const std::string& b_is,
                                    const std::string& key_prefix = "") {
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const auto ea = std::min(a.find('\n', i), a.size()), eb = std::min(b.find('\n', j), b.size());
    const std::string la = a.substr(i, ea - i), lb = b.substr(j, eb - j);
    if (la != lb) {
      const auto key = la.substr(0, la.find('='));
      if (key != lb.substr(0, lb.find('='))) return "the texts are of different versions ('" + la + "' vs '" + lb + "')";
      return key_prefix + key + " is " + la.substr(std::min(key.size() + 1, la.size())) + " " + a_is + " and " +
             lb.substr(std::min(key.size() + 1, lb.size())) + " " + b_is;
    }
    i = std::min(ea + 1, a.size());  // a text that ended compares as empty lines
    j = std::min(eb + 1, b.size());
  }
  return {};
}

/// Collective: every rank learns `root`'s text of "key=value" lines (one double per byte, since
/// every communicator moves doubles; the same sizes on every rank, whatever the texts) and, when
/// any rank's differs, raises on every rank: invalid_argument naming the first difference where
/// it differs, communication_error on the others.
template <communicator C>
void require_same_text(C& comm, const std::string& mine, int root, const std::string& what) {
  const auto n = static_cast<std::size_t>(comm.all_gather(static_cast<double>(mine.size()))[static_cast<std::size_t>(root)]);
  std::vector<double> bytes(n);
  if (comm.rank() == root)
    for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(mine[i]);
  if (n > 0) comm.broadcast(std::span<double>(bytes), root);
  std::string theirs(n, ' ');
  for (std::size_t i = 0; i < n; ++i) theirs[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
  const std::string diff =
      first_difference(mine, theirs, "on this rank (" + std::to_string(comm.rank()) + ")", "on rank " + std::to_string(root));
  agree_or_throw(comm, !diff.empty(), diff.empty() ? what : what + ": " + diff);
}

}  // namespace dppf
