#pragma once
// Command-line value parsing shared by the examples: the whole text must be a number of the
// requested type, or std::invalid_argument says which flag and what it got.

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace example_cli {

template <class V>
V parse(const std::string& flag, const std::string& text) {
  V v{};
  if constexpr (std::is_floating_point_v<V>) {
    std::size_t used = 0;
    try {
      v = static_cast<V>(std::stod(text, &used));
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size()) throw std::invalid_argument(flag + " expects a number, got '" + text + "'");
  } else {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size())
      throw std::invalid_argument(flag + " expects an integer, got '" + text + "'");
  }
  return v;
}

}  // namespace example_cli
