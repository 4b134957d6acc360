#pragma once
// What the fuzzer and the corpus replay do with one input: parse it as a safetensors file, read
// every tensor through the typed API, and check that writing a parsed file and parsing it again
// gives the same bytes. Malformed input must end in dppf::checkpoint_error and nothing else.

#include <dppf/checkpoint/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace dppf_fuzz {

template <class T>
void read_as(const dppf::safetensors& st, const std::string& name) {
  std::vector<T> out(static_cast<std::size_t>(st.info(name).elements));
  st.read(name, std::span<T>(out));
}

inline void read_bools(const dppf::safetensors& st, const std::string& name) {
  const auto n = static_cast<std::size_t>(st.info(name).elements);
  std::unique_ptr<bool[]> out(new bool[n > 0 ? n : 1]);
  st.read(name, std::span<bool>(out.get(), n));
}

// Throws dppf::checkpoint_error for a malformed file; aborts if a valid file does not round-trip.
inline void exercise(std::span<const std::byte> bytes) {
  // A small header cap keeps the fuzzer fast; the logic is the same at any cap.
  dppf::safetensors_limits limits;
  limits.max_header_bytes = 1 << 20;
  const dppf::safetensors st = dppf::safetensors::parse(bytes, "<fuzz>", limits);
  for (const auto& [name, info] : st.tensors()) {
    switch (info.type) {
      case dppf::dtype::boolean: read_bools(st, name); break;
      case dppf::dtype::u8: read_as<std::uint8_t>(st, name); break;
      case dppf::dtype::i8: read_as<std::int8_t>(st, name); break;
      case dppf::dtype::u16: read_as<std::uint16_t>(st, name); break;
      case dppf::dtype::i16: read_as<std::int16_t>(st, name); break;
      case dppf::dtype::u32: read_as<std::uint32_t>(st, name); break;
      case dppf::dtype::i32: read_as<std::int32_t>(st, name); break;
      case dppf::dtype::f32: read_as<float>(st, name); break;
      case dppf::dtype::u64: read_as<std::uint64_t>(st, name); break;
      case dppf::dtype::i64: read_as<std::int64_t>(st, name); break;
      case dppf::dtype::f64: read_as<double>(st, name); break;
      default: (void)st.bytes(name); break;  // raw-byte dtypes (F16, BF16, F8)
    }
  }
  // A file we accepted must survive our own writer and reader unchanged.
  const std::vector<std::byte> again = st.serialize();
  const dppf::safetensors back = dppf::safetensors::parse(again, "<fuzz round trip>", limits);
  if (back.serialize() != again || back.metadata() != st.metadata() || back.size() != st.size()) std::abort();
  for (const auto& [name, info] : st.tensors()) {
    const auto a = st.bytes(name);
    const auto b = back.bytes(name);
    if (back.info(name).type != info.type || back.info(name).shape != info.shape || a.size() != b.size() ||
        !std::equal(a.begin(), a.end(), b.begin()))
      std::abort();
  }
}

}  // namespace dppf_fuzz
