// Replays every file of the fuzz corpus (tests/fuzz/corpus) through the reader on every build:
// good-* files load, bad-* files end in dppf::checkpoint_error, nothing else ever escapes.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/exercise_reader.hpp"

namespace {
std::vector<std::byte> slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) out[i] = static_cast<std::byte>(c[i]);
  return out;
}
}  // namespace

TEST_CASE("checkpoint reader survives the crafted corpus of bad files") {
  const std::filesystem::path dir = DPPF_FUZZ_CORPUS_DIR;
  std::size_t good = 0, bad = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    INFO("corpus file " << name);
    const auto bytes = slurp(entry.path());
    std::string error;
    try {
      dppf_fuzz::exercise(bytes);
      // The same bytes through the file path (load) must agree with the in-memory parse.
      (void)dppf::safetensors::load(entry.path());
    } catch (const dppf::checkpoint_error& e) {
      error = e.what();
    }
    if (name.starts_with("good-")) {
      ++good;
      CHECK_MESSAGE(error.empty(), "a valid file was rejected: " << error);
    } else if (name.starts_with("bad-")) {
      ++bad;
      CHECK_MESSAGE(!error.empty(), "a malformed file was accepted");
      CHECK(error.starts_with("dppf: checkpoint "));
    }
  }
  CHECK(good >= 5);
  CHECK(bad >= 50);
}
