#pragma once
// Command-line value parsing shared by the examples: the whole text must be a number of the
// requested type, or std::invalid_argument says which flag and what it got; lists are
// comma-separated.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

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

/// What every example's flag loop needs: a usage error (the problem, then the usage text, exit
/// 2), --help (exit 0) and values parsed or refused with the usage.
struct program {
  const char* name;
  const char* usage_text;

  [[noreturn]] void usage(const std::string& problem) const {
    std::cerr << name << ": " << problem << "\n" << usage_text;
    std::exit(2);
  }
  [[noreturn]] void help() const {
    std::cout << usage_text;
    std::exit(0);
  }
  template <class V>
  V parse(const std::string& flag, const std::string& text) const {
    try {
      return example_cli::parse<V>(flag, text);
    } catch (const std::invalid_argument& e) {
      usage(e.what());
    }
  }
};

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string::size_type start = 0;
  while (start <= s.size()) {
    const auto end = std::min(s.find(',', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace example_cli
