#pragma once
// dppf::safetensors: reading and writing the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes
// of UTF-8 JSON {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}, then the data area of raw little-endian tensor bytes.
//
// A file is untrusted input. The reader checks everything before it allocates anything whose
// size comes from the file: the header length against the file size and a cap, the JSON with a
// strict parser of exactly the format's grammar (objects, strings with escapes, arrays of
// non-negative integers; nesting is fixed by the schema, so it cannot recurse), every dtype, every
// shape (element counts may not overflow), every data_offsets pair (inside the data area, equal
// to dtype size * elements, no overlaps, no gaps). Every failure is a dppf::checkpoint_error that
// names the source, the tensor and the problem. Writes are atomic: a temporary file in the same
// directory, fsync, rename over the target, fsync of the directory.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.hpp"

namespace dppf {

/// Element types of the safetensors format (F16, BF16 and the F8 types are kept as raw bytes).
enum class dtype : std::uint8_t { boolean, u8, i8, f8_e5m2, f8_e4m3, u16, i16, f16, bf16, u32, i32, f32, u64, i64, f64 };

inline constexpr std::array<std::pair<dtype, std::string_view>, 15> dtype_names{{
    {dtype::boolean, "BOOL"}, {dtype::u8, "U8"},   {dtype::i8, "I8"},   {dtype::f8_e5m2, "F8_E5M2"},
    {dtype::f8_e4m3, "F8_E4M3"}, {dtype::u16, "U16"}, {dtype::i16, "I16"}, {dtype::f16, "F16"},
    {dtype::bf16, "BF16"},   {dtype::u32, "U32"},  {dtype::i32, "I32"}, {dtype::f32, "F32"},
    {dtype::u64, "U64"},     {dtype::i64, "I64"},  {dtype::f64, "F64"},
}};

constexpr std::string_view to_string(dtype t) noexcept {
  for (const auto& [d, name] : dtype_names)
    if (d == t) return name;
  return "?";
}

constexpr std::optional<dtype> parse_dtype(std::string_view name) noexcept {
  for (const auto& [d, n] : dtype_names)
    if (n == name) return d;
  return std::nullopt;
}

/// Bytes per element.
constexpr std::size_t dtype_size(dtype t) noexcept {
  switch (t) {
    case dtype::boolean: case dtype::u8: case dtype::i8: case dtype::f8_e5m2: case dtype::f8_e4m3: return 1;
    case dtype::u16: case dtype::i16: case dtype::f16: case dtype::bf16: return 2;
    case dtype::u32: case dtype::i32: case dtype::f32: return 4;
    case dtype::u64: case dtype::i64: case dtype::f64: return 8;
  }
  return 0;
}

/// The dtype a C++ element type is stored as (no conversions: values round-trip bit for bit).
template <class T>
inline constexpr std::optional<dtype> dtype_of_v = std::nullopt;
template <> inline constexpr std::optional<dtype> dtype_of_v<bool> = dtype::boolean;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::uint8_t> = dtype::u8;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::int8_t> = dtype::i8;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::uint16_t> = dtype::u16;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::int16_t> = dtype::i16;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::uint32_t> = dtype::u32;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::int32_t> = dtype::i32;
template <> inline constexpr std::optional<dtype> dtype_of_v<float> = dtype::f32;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::uint64_t> = dtype::u64;
template <> inline constexpr std::optional<dtype> dtype_of_v<std::int64_t> = dtype::i64;
template <> inline constexpr std::optional<dtype> dtype_of_v<double> = dtype::f64;

template <class T>
concept tensor_element = dtype_of_v<std::remove_cv_t<T>>.has_value() && sizeof(T) == dtype_size(*dtype_of_v<std::remove_cv_t<T>>);

template <tensor_element T>
inline constexpr dtype dtype_of = *dtype_of_v<std::remove_cv_t<T>>;

/// Bounds the reader enforces before allocating anything.
struct safetensors_limits {
  std::uint64_t max_header_bytes = 100'000'000;  ///< the reference implementation's cap
  std::size_t max_rank = 64;                     ///< dimensions per tensor
};

/// One tensor's description in a file.
struct tensor_info {
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;
  std::uint64_t elements = 0;  ///< product of shape (1 for a scalar)
  std::uint64_t begin = 0;     ///< data_offsets, relative to the start of the data area
  std::uint64_t end = 0;
};

namespace detail {

inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Product of the shape, or nullopt on overflow (checked dimension by dimension, as the
// reference implementation does).
inline std::optional<std::uint64_t> element_count(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) {
    if (d != 0 && n > std::numeric_limits<std::uint64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  return n;
}

// Copies n elements of `size` bytes, reversing each element's bytes on a big-endian host
// (the format is little-endian).
inline void copy_little_endian(std::byte* dst, const std::byte* src, std::size_t n, std::size_t size) {
  if (n == 0) return;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(dst, src, n * size);
  } else {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t b = 0; b < size; ++b) dst[i * size + b] = src[i * size + size - 1 - b];
  }
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid (overlong
// forms, surrogates and code points above U+10FFFF are rejected).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = at(i);
  if (c < 0x80) return 1;
  std::size_t len;
  std::uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
  else return 0;
  if (s.size() - i < len) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((at(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (at(i + k) & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out += ch;
    }
  }
  out += '"';
}

// A strict parser of the safetensors header: exactly the JSON the format needs. The schema fixes
// the nesting (top object -> tensor object -> integer array, or top object -> metadata object ->
// string), so there is no recursion and no depth to exhaust. Allocations are bounded by the
// header's own length.
class header_parser {
 public:
  header_parser(std::string_view text, std::string_view source, const safetensors_limits& limits)
      : s_(text), source_(source), limits_(limits) {}

  void parse(std::map<std::string, tensor_info>& tensors, std::map<std::string, std::string>& metadata) {
    skip_ws();
    expect('{', "'{' (the header must be a JSON object)");
    bool seen_metadata = false;
    skip_ws();
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        skip_ws();
        std::string key = parse_string("a tensor name");
        skip_ws();
        expect(':', "':' after a key");
        skip_ws();
        if (key == "__metadata__") {
          if (seen_metadata) fail("\"__metadata__\" appears twice");
          seen_metadata = true;
          parse_metadata(metadata);
        } else {
          if (tensors.contains(key)) fail("tensor '" + key + "' appears twice");
          tensors.emplace(key, parse_tensor(key));
        }
        skip_ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}', "',' or '}' after a tensor entry");
        break;
      }
    }
    skip_ws();
    if (i_ != s_.size()) fail("unexpected bytes after the header object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw checkpoint_error("dppf: checkpoint " + std::string(source_) + ": header JSON at byte " + std::to_string(i_) +
                           ": " + what);
  }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
    throw checkpoint_error("dppf: checkpoint " + std::string(source_) + ": tensor '" + name + "': " + what);
  }

  int peek() const { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : -1; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c, const char* what) {
    if (peek() != static_cast<unsigned char>(c)) fail(std::string("expected ") + what);
    ++i_;
  }

  unsigned hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("invalid hex digit in \\u escape");
    }
    return v;
  }

  std::string parse_string(const char* what) {
    if (peek() != '"') fail(std::string("expected ") + what + " (a string)");
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character in a string");
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) fail("unterminated escape");
        const char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            std::uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (s_.size() - i_ < 2 || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("unpaired high surrogate in \\u escape");
              i_ += 2;
              const std::uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired high surrogate in \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: fail("invalid escape in a string");
        }
        continue;
      }
      const std::size_t n = utf8_sequence(s_, i_);
      if (n == 0) fail("invalid UTF-8 in a string");
      out.append(s_.substr(i_, n));
      i_ += n;
    }
  }

  std::uint64_t parse_uint(const std::string& name, const char* field) {
    if (peek() < '0' || peek() > '9') fail_tensor(name, std::string(field) + ": expected a non-negative integer");
    if (peek() == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9')
      fail_tensor(name, std::string(field) + ": integer with a leading zero");
    std::uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[i_] - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
        fail_tensor(name, std::string(field) + ": integer does not fit in 64 bits");
      v = v * 10 + d;
      ++i_;
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E')
      fail_tensor(name, std::string(field) + ": expected an integer, not a fraction or exponent");
    return v;
  }

  std::vector<std::uint64_t> parse_uint_array(const std::string& name, const char* field, std::size_t max_items) {
    if (peek() != '[') fail_tensor(name, std::string(field) + ": expected an array of integers");
    ++i_;
    std::vector<std::uint64_t> out;
    skip_ws();
    if (peek() == ']') {
      ++i_;
      return out;
    }
    for (;;) {
      skip_ws();
      if (out.size() == max_items)
        fail_tensor(name, std::string(field) + ": more than " + std::to_string(max_items) + " entries");
      out.push_back(parse_uint(name, field));
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ']') fail_tensor(name, std::string(field) + ": expected ',' or ']'");
      ++i_;
      return out;
    }
  }

  tensor_info parse_tensor(const std::string& name) {
    if (peek() != '{') fail_tensor(name, "expected an object with dtype, shape and data_offsets");
    ++i_;
    tensor_info t;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    skip_ws();
    if (peek() != '}') {
      for (;;) {
        skip_ws();
        const std::string field = parse_string("a field name");
        skip_ws();
        expect(':', "':' after a key");
        skip_ws();
        if (field == "dtype") {
          if (has_dtype) fail_tensor(name, "dtype appears twice");
          has_dtype = true;
          const std::string d = parse_string("a dtype");
          const auto parsed = parse_dtype(d);
          if (!parsed) fail_tensor(name, "unknown dtype '" + d + "'");
          t.type = *parsed;
        } else if (field == "shape") {
          if (has_shape) fail_tensor(name, "shape appears twice");
          has_shape = true;
          t.shape = parse_uint_array(name, "shape", limits_.max_rank);
        } else if (field == "data_offsets") {
          if (has_offsets) fail_tensor(name, "data_offsets appears twice");
          has_offsets = true;
          const auto o = parse_uint_array(name, "data_offsets", 2);
          if (o.size() != 2) fail_tensor(name, "data_offsets must have 2 entries, has " + std::to_string(o.size()));
          t.begin = o[0];
          t.end = o[1];
        } else {
          fail_tensor(name, "unknown field '" + field + "'");
        }
        skip_ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}', "',' or '}' in a tensor entry");
        break;
      }
    } else {
      ++i_;
    }
    if (!has_dtype) fail_tensor(name, "missing dtype");
    if (!has_shape) fail_tensor(name, "missing shape");
    if (!has_offsets) fail_tensor(name, "missing data_offsets");
    return t;
  }

  void parse_metadata(std::map<std::string, std::string>& metadata) {
    expect('{', "an object of strings for \"__metadata__\"");
    skip_ws();
    if (peek() == '}') {
      ++i_;
      return;
    }
    for (;;) {
      skip_ws();
      std::string key = parse_string("a metadata key");
      skip_ws();
      expect(':', "':' after a key");
      skip_ws();
      std::string value = parse_string("a metadata value");
      if (!metadata.emplace(std::move(key), std::move(value)).second) fail("a metadata key appears twice");
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}', "',' or '}' in \"__metadata__\"");
      return;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string_view source_;
  const safetensors_limits& limits_;
};

// POSIX file handle that closes itself (errors on the write path are checked explicitly).
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] inline void throw_io(const std::string& what, const std::string& path, int err) {
  throw checkpoint_error("dppf: checkpoint " + path + ": " + what + ": " + std::strerror(err));
}

inline void write_all(int fd, const std::byte* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_io("write failed", path, errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

inline void read_all(int fd, std::byte* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_io("read failed", path, errno);
    }
    if (r == 0) throw checkpoint_error("dppf: checkpoint " + path + ": file shrank while it was read");
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

}  // namespace detail

/// A set of named tensors and string metadata: what a safetensors file holds. Build one with
/// add() and write it with save(); read one with load() or parse() and copy tensors out with read().
class safetensors {
 public:
  safetensors() = default;

  // --- building ---

  /// Adds a tensor from raw little-endian bytes (bytes.size() must be dtype_size * elements).
  void add_bytes(std::string name, dtype type, std::vector<std::uint64_t> shape, std::span<const std::byte> bytes) {
    require_new_name(name);
    const auto n = detail::element_count(shape);
    if (!n || *n > std::numeric_limits<std::uint64_t>::max() / dtype_size(type))
      detail::throw_invalid("safetensors::add: tensor '" + name + "': shape " + detail::shape_string(shape) +
                            " has too many elements");
    if (bytes.size() != *n * dtype_size(type))
      detail::throw_invalid("safetensors::add: tensor '" + name + "': " + std::to_string(bytes.size()) +
                            " bytes given, dtype " + std::string(to_string(type)) + " and shape " +
                            detail::shape_string(shape) + " need " + std::to_string(*n * dtype_size(type)));
    tensor_info t{type, std::move(shape), *n, data_.size(), data_.size() + bytes.size()};
    data_.insert(data_.end(), bytes.begin(), bytes.end());
    tensors_.emplace(std::move(name), std::move(t));
  }

  /// Adds a tensor of C++ values (shape defaults to {values.size()}), stored bit for bit.
  template <tensor_element T>
  void add(std::string name, std::span<const T> values, std::optional<std::vector<std::uint64_t>> shape = std::nullopt) {
    std::vector<std::uint64_t> s = shape ? std::move(*shape) : std::vector<std::uint64_t>{values.size()};
    const auto n = detail::element_count(s);
    if (!n || *n != values.size())
      detail::throw_invalid("safetensors::add: tensor '" + name + "': shape " + detail::shape_string(s) + " does not hold " +
                            std::to_string(values.size()) + " elements");
    std::vector<std::byte> bytes(values.size() * sizeof(T));
    detail::copy_little_endian(bytes.data(), reinterpret_cast<const std::byte*>(values.data()), values.size(), sizeof(T));
    add_bytes(std::move(name), dtype_of<T>, std::move(s), bytes);
  }
  /// Any contiguous range of such values (std::vector, std::span, std::array, ...).
  template <std::ranges::contiguous_range R>
    requires std::ranges::sized_range<R> && tensor_element<std::ranges::range_value_t<R>>
  void add(std::string name, const R& values, std::optional<std::vector<std::uint64_t>> shape = std::nullopt) {
    using T = std::ranges::range_value_t<R>;
    add(std::move(name), std::span<const T>(std::ranges::data(values), std::ranges::size(values)), std::move(shape));
  }

  /// Adds a scalar (shape []).
  template <tensor_element T>
  void add_scalar(std::string name, T value) {
    add(std::move(name), std::span<const T>(&value, 1), std::vector<std::uint64_t>{});
  }

  /// Sets a metadata entry (stored under "__metadata__"; keys and values must be UTF-8).
  void set_metadata(std::string key, std::string value) {
    if (!detail::valid_utf8(key) || !detail::valid_utf8(value))
      detail::throw_invalid("safetensors::set_metadata: key '" + key + "': keys and values must be valid UTF-8");
    metadata_[std::move(key)] = std::move(value);
  }

  // --- inspecting ---

  bool contains(const std::string& name) const { return tensors_.contains(name); }
  std::size_t size() const noexcept { return tensors_.size(); }
  const std::map<std::string, tensor_info>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// The tensor's description; throws checkpoint_error naming the tensor when it is absent.
  const tensor_info& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) throw checkpoint_error(prefix() + "no tensor '" + name + "'");
    return it->second;
  }
  /// The metadata value; throws checkpoint_error naming the key when it is absent.
  const std::string& metadata(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) throw checkpoint_error(prefix() + "no metadata entry '" + key + "'");
    return it->second;
  }
  /// The tensor's raw little-endian bytes.
  std::span<const std::byte> bytes(const std::string& name) const {
    const tensor_info& t = info(name);
    return std::span<const std::byte>(data_).subspan(t.begin, t.end - t.begin);
  }
  /// Where this set came from ("<memory>" or the path it was loaded from), for messages.
  const std::string& source() const noexcept { return source_; }

  // --- reading into live buffers ---

  /// Throws checkpoint_error unless tensor `name` exists, has dtype_of<T> and n elements.
  template <tensor_element T>
  void check(const std::string& name, std::size_t n) const {
    const tensor_info& t = info(name);
    if (t.type != dtype_of<T>)
      throw checkpoint_error(prefix() + "tensor '" + name + "' has dtype " + std::string(to_string(t.type)) +
                             ", the live buffer has " + std::string(to_string(dtype_of<T>)));
    if (t.elements != n)
      throw checkpoint_error(prefix() + "tensor '" + name + "' has " + std::to_string(t.elements) +
                             " elements (shape " + detail::shape_string(t.shape) + "), the live buffer has " +
                             std::to_string(n));
  }

  /// Copies tensor `name` into out after check(); nothing is written when a check fails.
  template <tensor_element T>
    requires(!std::is_const_v<T>)
  void read(const std::string& name, std::span<T> out) const {
    check<T>(name, out.size());
    const std::span<const std::byte> b = bytes(name);
    if constexpr (std::is_same_v<T, bool>) {
      // Only 0 and 1 are bools; anything else would be undefined behaviour once read as bool.
      for (std::size_t i = 0; i < b.size(); ++i)
        if (b[i] != std::byte{0} && b[i] != std::byte{1})
          throw checkpoint_error(prefix() + "tensor '" + name + "': BOOL element " + std::to_string(i) +
                                 " is neither 0 nor 1");
    }
    detail::copy_little_endian(reinterpret_cast<std::byte*>(out.data()), b.data(), out.size(), sizeof(T));
  }

  /// The tensor as a vector of T (dtype must be dtype_of<T>).
  template <tensor_element T>
    requires(!std::is_same_v<T, bool>)
  std::vector<T> read(const std::string& name) const {
    std::vector<T> out(static_cast<std::size_t>(info(name).elements));
    read(name, std::span<T>(out));
    return out;
  }

  /// A scalar tensor (shape [] or one element) of dtype_of<T>.
  template <tensor_element T>
  T scalar(const std::string& name) const {
    T v{};
    read(name, std::span<T>(&v, 1));
    return v;
  }

  // --- serialization ---

  /// The JSON header, padded with spaces to a multiple of 8 bytes, with the offsets tensors get
  /// in the data area: sorted by decreasing element size, then name, so every tensor is aligned
  /// to its element size (as the reference writer does).
  std::pair<std::string, std::vector<const std::pair<const std::string, tensor_info>*>> layout() const {
    std::vector<const std::pair<const std::string, tensor_info>*> order;
    for (const auto& e : tensors_) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
      return dtype_size(a->second.type) > dtype_size(b->second.type);
    });
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      for (const auto& [k, v] : metadata_) {
        if (!first) h += ',';
        first = false;
        detail::append_json_string(h, k);
        h += ':';
        detail::append_json_string(h, v);
      }
      h += '}';
      first = false;
    }
    std::uint64_t offset = 0;
    for (const auto* e : order) {
      const tensor_info& t = e->second;
      if (!first) h += ',';
      first = false;
      detail::append_json_string(h, e->first);
      h += ":{\"dtype\":\"";
      h += to_string(t.type);
      h += "\",\"shape\":[";
      for (std::size_t i = 0; i < t.shape.size(); ++i) {
        if (i) h += ',';
        h += std::to_string(t.shape[i]);
      }
      const std::uint64_t size = t.end - t.begin;
      h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + size) + "]}";
      offset += size;
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    return {std::move(h), std::move(order)};
  }

  /// The whole file as bytes.
  std::vector<std::byte> serialize() const {
    auto [header, order] = layout();
    std::vector<std::byte> out;
    out.reserve(8 + header.size() + data_.size());
    append_length(out, header.size());
    for (char c : header) out.push_back(static_cast<std::byte>(c));
    for (const auto* e : order)
      out.insert(out.end(), data_.begin() + static_cast<std::ptrdiff_t>(e->second.begin),
                 data_.begin() + static_cast<std::ptrdiff_t>(e->second.end));
    return out;
  }

  /// Writes the file atomically: a temporary file next to `path` is written and fsync'ed, then
  /// renamed over `path`, and the directory is fsync'ed. On any failure the temporary file is
  /// removed, `path` is left as it was, and checkpoint_error says what failed.
  void save(const std::filesystem::path& path) const {
    auto [header, order] = layout();
    const std::string target = path.string();
    std::filesystem::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    static std::atomic<std::uint64_t> counter{0};  // unique per process; the pid makes it unique per host
    const std::string tmp = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(++counter);
    detail::fd_guard f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)};
    if (f.fd < 0) detail::throw_io("cannot create temporary file " + tmp, target, errno);
    try {
      std::vector<std::byte> head;
      append_length(head, header.size());
      for (char c : header) head.push_back(static_cast<std::byte>(c));
      detail::write_all(f.fd, head.data(), head.size(), target);
      for (const auto* e : order)
        detail::write_all(f.fd, data_.data() + e->second.begin, e->second.end - e->second.begin, target);
      if (::fsync(f.fd) != 0) detail::throw_io("fsync failed", target, errno);
      const int fd = f.fd;
      f.fd = -1;
      if (::close(fd) != 0) detail::throw_io("close failed", target, errno);
      if (::rename(tmp.c_str(), target.c_str()) != 0) detail::throw_io("rename from " + tmp + " failed", target, errno);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
    // The rename is durable only once the directory entry is.
    detail::fd_guard d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd < 0 || ::fsync(d.fd) != 0) detail::throw_io("fsync of directory " + dir.string() + " failed", target, errno);
  }

  /// Parses and validates a whole file held in memory.
  static safetensors parse(std::span<const std::byte> file, std::string source = "<memory>",
                           const safetensors_limits& limits = {}) {
    safetensors st;
    st.source_ = std::move(source);
    const std::uint64_t header_size = st.check_length(file.size(), file.first(std::min<std::size_t>(8, file.size())), limits);
    const std::string_view header(reinterpret_cast<const char*>(file.data()) + 8, static_cast<std::size_t>(header_size));
    st.parse_header(header, file.size() - 8 - header_size, limits);
    const auto data = file.subspan(8 + static_cast<std::size_t>(header_size));
    st.data_.assign(data.begin(), data.end());
    return st;
  }

  /// Reads and validates a file. Nothing sized by the file's contents is allocated before the
  /// header length has been checked against the file's real size and limits.max_header_bytes.
  static safetensors load(const std::filesystem::path& path, const safetensors_limits& limits = {}) {
    safetensors st;
    st.source_ = path.string();
    detail::fd_guard f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) detail::throw_io("cannot open", st.source_, errno);
    struct ::stat info {};
    if (::fstat(f.fd, &info) != 0) detail::throw_io("cannot stat", st.source_, errno);
    if (!S_ISREG(info.st_mode)) throw checkpoint_error(st.prefix() + "not a regular file");
    const auto file_size = static_cast<std::uint64_t>(info.st_size);
    std::array<std::byte, 8> length{};
    detail::read_all(f.fd, length.data(), static_cast<std::size_t>(std::min<std::uint64_t>(8, file_size)), st.source_);
    const std::uint64_t header_size =
        st.check_length(file_size, std::span<const std::byte>(length).first(std::min<std::uint64_t>(8, file_size)), limits);
    std::string header(static_cast<std::size_t>(header_size), '\0');
    detail::read_all(f.fd, reinterpret_cast<std::byte*>(header.data()), header.size(), st.source_);
    const std::uint64_t data_size = file_size - 8 - header_size;
    st.parse_header(header, data_size, limits);
    // The header's offsets cover exactly data_size bytes: the data area is the file's own size.
    st.data_.resize(static_cast<std::size_t>(data_size));
    detail::read_all(f.fd, st.data_.data(), st.data_.size(), st.source_);
    std::byte extra;
    if (::read(f.fd, &extra, 1) > 0) throw checkpoint_error(st.prefix() + "file grew while it was read");
    return st;
  }

 private:
  std::string prefix() const { return "dppf: checkpoint " + source_ + ": "; }

  void require_new_name(const std::string& name) const {
    if (name == "__metadata__") detail::throw_invalid("safetensors::add: \"__metadata__\" is reserved");
    if (!detail::valid_utf8(name)) detail::throw_invalid("safetensors::add: tensor names must be valid UTF-8");
    if (tensors_.contains(name)) detail::throw_invalid("safetensors::add: tensor '" + name + "' already added");
  }

  static void append_length(std::vector<std::byte>& out, std::uint64_t n) {
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<std::byte>((n >> (8 * b)) & 0xFF));
  }

  // The header length from the first 8 bytes, checked against the file size and the cap.
  std::uint64_t check_length(std::uint64_t file_size, std::span<const std::byte> first, const safetensors_limits& limits) const {
    if (file_size < 8)
      throw checkpoint_error(prefix() + "file has " + std::to_string(file_size) +
                             " bytes, fewer than the 8-byte header length field");
    std::uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = (n << 8) | std::to_integer<std::uint64_t>(first[static_cast<std::size_t>(b)]);
    if (n > limits.max_header_bytes)
      throw checkpoint_error(prefix() + "header length " + std::to_string(n) + " exceeds the limit of " +
                             std::to_string(limits.max_header_bytes) + " bytes");
    if (n > file_size - 8)
      throw checkpoint_error(prefix() + "header length " + std::to_string(n) + " runs past the end of the file (" +
                             std::to_string(file_size - 8) + " bytes follow the length field)");
    return n;
  }

  // Parses the header and checks every tensor against a data area of data_size bytes.
  void parse_header(std::string_view header, std::uint64_t data_size, const safetensors_limits& limits) {
    detail::header_parser(header, source_, limits).parse(tensors_, metadata_);
    std::vector<std::pair<const std::string*, const tensor_info*>> by_offset;
    by_offset.reserve(tensors_.size());
    for (auto& [name, t] : tensors_) {
      const auto n = detail::element_count(t.shape);
      if (!n || *n > std::numeric_limits<std::uint64_t>::max() / dtype_size(t.type))
        throw checkpoint_error(prefix() + "tensor '" + name + "': shape " + detail::shape_string(t.shape) +
                               " has too many elements");
      t.elements = *n;
      if (t.end < t.begin)
        throw checkpoint_error(prefix() + "tensor '" + name + "': data_offsets [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + "] end before they begin");
      if (t.end > data_size)
        throw checkpoint_error(prefix() + "tensor '" + name + "': data_offsets [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + "] run past the data area of " + std::to_string(data_size) +
                               " bytes");
      const std::uint64_t need = *n * dtype_size(t.type);
      if (t.end - t.begin != need)
        throw checkpoint_error(prefix() + "tensor '" + name + "': data_offsets [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + "] hold " + std::to_string(t.end - t.begin) + " bytes, dtype " +
                               std::string(to_string(t.type)) + " and shape " + detail::shape_string(t.shape) +
                               " need " + std::to_string(need));
      by_offset.emplace_back(&name, &t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
      return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
    });
    // The format requires the tensors to tile the data area: no overlap, no gap, no tail.
    std::uint64_t covered = 0;
    const std::string* last = nullptr;
    for (const auto& [name, t] : by_offset) {
      if (t->begin < covered)
        throw checkpoint_error(prefix() + "tensors '" + *last + "' and '" + *name + "' overlap (data_offsets [" +
                               std::to_string(t->begin) + ", " + std::to_string(t->end) + "] start before byte " +
                               std::to_string(covered) + ")");
      if (t->begin > covered)
        throw checkpoint_error(prefix() + "data area bytes [" + std::to_string(covered) + ", " +
                               std::to_string(t->begin) + ") belong to no tensor (gap before tensor '" + *name + "')");
      covered = t->end;
      last = name;
    }
    if (covered != data_size)
      throw checkpoint_error(prefix() + "data area has " + std::to_string(data_size) + " bytes but the tensors cover " +
                             std::to_string(covered));
  }

  std::string source_ = "<memory>";
  std::map<std::string, tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::byte> data_;
};

}  // namespace dppf
