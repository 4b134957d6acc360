#pragma once
// parameter_layout: names the tensors (segments) inside one flat parameter buffer.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"

namespace dppf {

/// One named tensor inside a flat buffer: elements [offset, offset + size).
struct segment {
  std::string name;
  std::size_t offset = 0;
  std::size_t size = 0;
};

/// Segment offsets naming the tensors inside one flat buffer. Validated on construction:
/// segments are ordered, do not overlap, and cover the buffer exactly.
class parameter_layout {
 public:
  parameter_layout() = default;

  /// Throws std::invalid_argument naming the first segment that is out of order, overlaps,
  /// leaves a gap, or is empty.
  explicit parameter_layout(std::vector<segment> segments) : segments_(std::move(segments)) {
    std::size_t next = 0;
    for (std::size_t k = 0; k < segments_.size(); ++k) {
      const auto& s = segments_[k];
      const std::string who = "parameter_layout: segment " + std::to_string(k) + " ('" + s.name + "')";
      if (s.size == 0) detail::throw_invalid(who + " is empty");
      if (s.offset < next)
        detail::throw_invalid(who + " starts at " + std::to_string(s.offset) +
                              ", overlapping or before the previous segment, which ends at " +
                              std::to_string(next));
      if (s.offset > next)
        detail::throw_invalid(who + " starts at " + std::to_string(s.offset) + ", leaving a gap after " +
                              std::to_string(next));
      next = s.offset + s.size;
    }
    total_ = next;
  }

  /// Builds contiguous segments from (name, size) pairs.
  static parameter_layout from_sizes(const std::vector<std::pair<std::string, std::size_t>>& sizes) {
    std::vector<segment> segs;
    std::size_t offset = 0;
    for (const auto& [name, n] : sizes) {
      segs.push_back({name, offset, n});
      offset += n;
    }
    return parameter_layout(std::move(segs));
  }

  const std::vector<segment>& segments() const noexcept { return segments_; }
  std::size_t size() const noexcept { return segments_.size(); }
  const segment& operator[](std::size_t k) const { return segments_.at(k); }
  /// Total number of elements covered; a buffer used with this layout must have exactly this many.
  std::size_t total() const noexcept { return total_; }

  void require_covers(std::size_t buffer_size, const char* name) const {
    if (buffer_size != total_)
      detail::throw_invalid(std::string(name) + " has " + std::to_string(buffer_size) +
                            " elements but the layout covers " + std::to_string(total_));
  }

 private:
  std::vector<segment> segments_;
  std::size_t total_ = 0;
};

}  // namespace dppf
