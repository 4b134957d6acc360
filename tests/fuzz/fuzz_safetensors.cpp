// libFuzzer target for the safetensors reader. Build and run with scripts/fuzz.sh:
//   clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/fuzz_safetensors.cpp
// Any exception other than dppf::checkpoint_error (std::bad_alloc from an unbounded allocation,
// std::length_error, ...) escapes and is reported by libFuzzer as a crash, as are sanitizer
// findings and the round-trip aborts in exercise().

#include "exercise_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    dppf_fuzz::exercise(std::as_bytes(std::span<const std::uint8_t>(data, size)));
  } catch (const dppf::checkpoint_error&) {
  }
  return 0;
}
