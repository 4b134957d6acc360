// The safetensors reader and writer: bit-exact round trips of every dtype, the exact byte layout
// of the format, every validation error on crafted bytes, and atomic writes.

#include <doctest/doctest.h>

#include <dppf/checkpoint/safetensors.hpp>

#include <sys/resource.h>

#include <bit>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"
#include "test_checkpoint_files.hpp"

using dppf::checkpoint_error;
using dppf::dtype;
using dppf::safetensors;
using dppf_test::check_throws_with;

namespace {

// n values of T with every bit pattern drawn at random (NaN payloads, infinities, denormals and
// negative zeros included for floating point), so a conversion anywhere would show.
template <class T>
std::vector<T> random_bits(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<T> v(n);
  for (auto& x : v) {
    using U = std::conditional_t<sizeof(T) == 8, std::uint64_t,
                                 std::conditional_t<sizeof(T) == 4, std::uint32_t,
                                                    std::conditional_t<sizeof(T) == 2, std::uint16_t, std::uint8_t>>>;
    x = std::bit_cast<T>(static_cast<U>(gen()));
  }
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
void add_and_check(safetensors& st, const std::string& name, std::size_t n, std::uint64_t seed) {
  st.add(name, random_bits<T>(n, seed));
}

template <class T>
void check_round_trip(const safetensors& got, const std::string& name, std::size_t n, std::uint64_t seed) {
  INFO("tensor " << name);
  const std::vector<T> expected = random_bits<T>(n, seed);
  const std::vector<T> values = got.read<T>(name);
  CHECK(same_bits(values, expected));
  CHECK(got.info(name).type == dppf::dtype_of<T>);
  // The bytes in the file are the little-endian encoding of each value.
  const auto bytes = got.bytes(name);
  REQUIRE(bytes.size() == n * sizeof(T));
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t u = 0;
    std::memcpy(&u, &expected[i], sizeof(T));  // little-endian host (checked below)
    for (std::size_t b = 0; b < sizeof(T); ++b)
      CHECK(std::to_integer<std::uint64_t>(bytes[i * sizeof(T) + b]) == ((u >> (8 * b)) & 0xFF));
  }
}

std::vector<std::byte> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  std::memcpy(out.data(), c.data(), c.size());
  return out;
}

}  // namespace

static_assert(std::endian::native == std::endian::little, "these tests spell out little-endian bytes");

TEST_CASE("safetensors round trip of every dtype is bit-exact") {
  dppf_test::temp_dir dir("roundtrip");
  safetensors st;
  add_and_check<float>(st, "f32", 37, 1);
  add_and_check<double>(st, "f64", 29, 2);
  add_and_check<std::int64_t>(st, "i64", 13, 3);
  add_and_check<std::uint64_t>(st, "u64", 11, 4);
  add_and_check<std::int32_t>(st, "i32", 7, 5);
  add_and_check<std::uint32_t>(st, "u32", 5, 6);
  add_and_check<std::int16_t>(st, "i16", 3, 7);
  add_and_check<std::uint16_t>(st, "u16", 9, 8);
  add_and_check<std::int8_t>(st, "i8", 1, 9);
  add_and_check<std::uint8_t>(st, "u8", 17, 10);
  const bool flags[5] = {true, false, false, true, true};
  st.add("bool", std::span<const bool>(flags));
  // Half, bfloat16 and fp8 are kept as raw bytes.
  const auto raw16 = random_bits<std::uint8_t>(2 * 6, 11);
  const auto raw8 = random_bits<std::uint8_t>(3, 12);
  st.add_bytes("f16", dtype::f16, {2, 3}, std::as_bytes(std::span(raw16)));
  st.add_bytes("bf16", dtype::bf16, {3, 2}, std::as_bytes(std::span(raw16)));
  st.add_bytes("f8_e4m3", dtype::f8_e4m3, {3}, std::as_bytes(std::span(raw8)));
  st.add_bytes("f8_e5m2", dtype::f8_e5m2, {1, 3}, std::as_bytes(std::span(raw8)));
  // Shapes: a matrix, a scalar, empty tensors.
  st.add("matrix", random_bits<double>(12, 13), std::vector<std::uint64_t>{3, 4});
  st.add_scalar("scalar", std::int64_t{-42});
  st.add("empty", std::vector<float>{}, std::vector<std::uint64_t>{0, 5});
  st.add("empty2", std::vector<double>{});
  st.set_metadata("format", "dppf");
  st.set_metadata("note", "quotes \" backslash \\ newline \n tab \t bell \x07 unicode \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");

  const auto path = dir.path / "all.safetensors";
  st.save(path);
  const safetensors got = safetensors::load(path);

  CHECK(got.size() == st.size());
  check_round_trip<float>(got, "f32", 37, 1);
  check_round_trip<double>(got, "f64", 29, 2);
  check_round_trip<std::int64_t>(got, "i64", 13, 3);
  check_round_trip<std::uint64_t>(got, "u64", 11, 4);
  check_round_trip<std::int32_t>(got, "i32", 7, 5);
  check_round_trip<std::uint32_t>(got, "u32", 5, 6);
  check_round_trip<std::int16_t>(got, "i16", 3, 7);
  check_round_trip<std::uint16_t>(got, "u16", 9, 8);
  check_round_trip<std::int8_t>(got, "i8", 1, 9);
  check_round_trip<std::uint8_t>(got, "u8", 17, 10);
  bool back[5] = {};
  got.read("bool", std::span<bool>(back));
  for (int i = 0; i < 5; ++i) CHECK(back[i] == flags[i]);
  for (const char* name : {"f16", "bf16"}) {
    const auto b = got.bytes(name);
    CHECK(std::vector<std::byte>(b.begin(), b.end()) == std::vector<std::byte>(std::as_bytes(std::span(raw16)).begin(),
                                                                               std::as_bytes(std::span(raw16)).end()));
  }
  CHECK(got.info("f16").shape == std::vector<std::uint64_t>{2, 3});
  CHECK(got.info("bf16").type == dtype::bf16);
  CHECK(got.info("f8_e4m3").type == dtype::f8_e4m3);
  CHECK(got.info("f8_e5m2").shape == std::vector<std::uint64_t>{1, 3});
  check_round_trip<double>(got, "matrix", 12, 13);
  CHECK(got.info("matrix").shape == std::vector<std::uint64_t>{3, 4});
  CHECK(got.scalar<std::int64_t>("scalar") == -42);
  CHECK(got.info("scalar").shape.empty());
  CHECK(got.info("empty").elements == 0);
  CHECK(got.info("empty").shape == std::vector<std::uint64_t>{0, 5});
  CHECK(got.read<double>("empty2").empty());
  CHECK(got.metadata() == st.metadata());

  // The file is exactly what serialize() produces, and parsing those bytes gives the same set.
  const auto bytes = read_file(path);
  CHECK(bytes == st.serialize());
  const safetensors again = safetensors::parse(bytes);
  CHECK(again.serialize() == bytes);

  // Every tensor is aligned to its element size in the file (the writer sorts by dtype size).
  const std::uint64_t header = [&] {
    std::uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = n << 8 | std::to_integer<std::uint64_t>(bytes[static_cast<std::size_t>(b)]);
    return n;
  }();
  CHECK((8 + header) % 8 == 0);
  for (const auto& entry : got.tensors()) {
    INFO(entry.first);
    CHECK((8 + header + entry.second.begin) % dppf::dtype_size(entry.second.type) == 0);
  }
}

TEST_CASE("safetensors writes the byte layout of the format") {
  safetensors st;
  st.add("b", std::vector<float>{1.0f, -2.0f});
  st.add_scalar("a", std::int64_t{258});
  st.set_metadata("k", "v\"");
  // Written by hand from the format's description: 8-byte sizes first, then name order; the JSON
  // is padded with spaces to a multiple of 8; the data area is raw little-endian.
  const std::string json =
      R"({"__metadata__":{"k":"v\""},"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  std::string padded = json;
  while (padded.size() % 8) padded += ' ';
  std::vector<std::byte> expected;
  for (int b = 0; b < 8; ++b) expected.push_back(static_cast<std::byte>((padded.size() >> (8 * b)) & 0xFF));
  for (char c : padded) expected.push_back(static_cast<std::byte>(c));
  for (int v : {0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0})
    expected.push_back(static_cast<std::byte>(v));
  CHECK(st.serialize() == expected);
}

TEST_CASE("safetensors reader accepts any valid JSON spelling of a header") {
  // Whitespace everywhere, escapes (\u with a surrogate pair, \/), fields in any order, an empty
  // metadata object, keys needing escapes.
  const std::string header =
      " \t\r\n{ \"__metadata__\" : { } , \"w\\u00e9\\ud83d\\ude00\\/x\" : { \"data_offsets\" : [ 0 , 8 ] ,"
      " \"shape\" : [ 1 , 2 ] , \"dtype\" : \"F32\" } }  ";
  const auto file = dppf_test::safetensors_bytes(header, {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40});
  const safetensors st = safetensors::parse(file);
  const std::string name = "w\xc3\xa9\xf0\x9f\x98\x80/x";
  REQUIRE(st.contains(name));
  CHECK(st.read<float>(name) == std::vector<float>{1.0f, 2.0f});
  CHECK(st.info(name).shape == std::vector<std::uint64_t>{1, 2});
  CHECK(st.metadata().empty());
  // An empty set of tensors is a valid file too.
  CHECK(safetensors::parse(dppf_test::safetensors_bytes("{}", {})).size() == 0);
}

TEST_CASE("safetensors reader rejects every malformed file with a clear error") {
  struct bad {
    std::string header;
    std::vector<int> data;
    std::string message;
  };
  const std::string f32 = R"("dtype":"F32")";
  const std::vector<bad> cases = {
      {"", {}, "expected '{' (the header must be a JSON object)"},
      {"[]", {}, "expected '{'"},
      {"{", {}, "expected a tensor name (a string)"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]})", {0, 0, 0, 0}, "expected ',' or '}' after a tensor entry"},
      {"{} x", {}, "unexpected bytes after the header object"},
      {R"({"a":1})", {}, "tensor 'a': expected an object with dtype, shape and data_offsets"},
      {R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': unknown dtype 'F33'"},
      {R"({"a":{"dtype":{"x":1},"shape":[1],"data_offsets":[0,4]}})", {}, "expected a dtype (a string)"},
      {R"({"a":{)" + f32 + R"(,"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': missing shape"},
      {R"({"a":{"shape":[1],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': missing dtype"},
      {R"({"a":{)" + f32 + R"(,"shape":[1]}})", {0, 0, 0, 0}, "tensor 'a': missing data_offsets"},
      {R"({"a":{)" + f32 + R"(,"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': dtype appears twice"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4],"extra":1}})", {0, 0, 0, 0}, "tensor 'a': unknown field 'extra'"},
      {R"({"a":{)" + f32 + R"(,"shape":[-1],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': shape: expected a non-negative integer"},
      {R"({"a":{)" + f32 + R"(,"shape":[1.5],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "not a fraction or exponent"},
      {R"({"a":{)" + f32 + R"(,"shape":[1e0],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "not a fraction or exponent"},
      {R"({"a":{)" + f32 + R"(,"shape":[01],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "integer with a leading zero"},
      {R"({"a":{)" + f32 + R"(,"shape":[18446744073709551616],"data_offsets":[0,4]}})", {}, "integer does not fit in 64 bits"},
      {R"({"a":{)" + f32 + R"(,"shape":[1,],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': shape: expected a non-negative integer"},
      {R"({"a":{)" + f32 + R"(,"shape":[1 2],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': shape: expected ',' or ']'"},
      {R"({"a":{)" + f32 + R"(,"shape":1,"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': shape: expected an array of integers"},
      {R"({"a":{)" + f32 + R"(,"shape":[[1]],"data_offsets":[0,4]}})", {0, 0, 0, 0}, "tensor 'a': shape: expected a non-negative integer"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4,8]}})", {0, 0, 0, 0}, "data_offsets: more than 2 entries"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0]}})", {0, 0, 0, 0}, "data_offsets must have 2 entries, has 1"},
      {R"({"a":{)" + f32 + R"(,"shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})", {}, "tensor 'a': shape [4294967296, 4294967296, 2] has too many elements"},
      {R"({"a":{)" + f32 + R"(,"shape":[4611686018427387904],"data_offsets":[0,0]}})", {}, "has too many elements"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[4,0]}})", {0, 0, 0, 0}, "tensor 'a': data_offsets [4, 0] end before they begin"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]}})", {0, 0}, "tensor 'a': data_offsets [0, 4] run past the data area of 2 bytes"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})", {0, 0},
       "run past the data area"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,8]}})", {0, 0, 0, 0, 0, 0, 0, 0},
       "tensor 'a': data_offsets [0, 8] hold 8 bytes, dtype F32 and shape [1] need 4"},
      {R"({"a":{)" + f32 + R"(,"shape":[2],"data_offsets":[0,8]},"b":{)" + f32 + R"(,"shape":[1],"data_offsets":[4,8]}})",
       {0, 0, 0, 0, 0, 0, 0, 0}, "tensors 'a' and 'b' overlap"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[4,8]}})", {0, 0, 0, 0, 0, 0, 0, 0},
       "data area bytes [0, 4) belong to no tensor (gap before tensor 'a')"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]}})", {0, 0, 0, 0, 0}, "data area has 5 bytes but the tensors cover 4"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]},"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]}})",
       {0, 0, 0, 0}, "tensor 'a' appears twice"},
      {R"({"__metadata__":{},"__metadata__":{}})", {}, "\"__metadata__\" appears twice"},
      {R"({"__metadata__":{"k":1}})", {}, "expected a metadata value (a string)"},
      {R"({"__metadata__":{"k":"v","k":"w"}})", {}, "a metadata key appears twice"},
      {R"({"__metadata__":[]})", {}, "expected an object of strings for \"__metadata__\""},
      {R"({"a\q":1})", {}, "invalid escape in a string"},
      {R"({"a\u12":1})", {}, "invalid hex digit in \\u escape"},
      {R"({"\ud800":1})", {}, "unpaired high surrogate"},
      {R"({"\ud800\u0041":1})", {}, "unpaired high surrogate"},
      {R"({"\udc00":1})", {}, "unpaired low surrogate"},
      {"{\"a\x01\":1}", {}, "unescaped control character in a string"},
      {"{\"a\xff\":1}", {}, "invalid UTF-8 in a string"},
      {"{\"a\xc0\xaf\":1}", {}, "invalid UTF-8 in a string"},   // overlong '/'
      {"{\"a\xed\xa0\x80\":1}", {}, "invalid UTF-8 in a string"},  // encoded surrogate
      {"{\"abc", {}, "unterminated string"},
      {R"({"a":{)" + f32 + R"(,"shape":[1],"data_offsets":[0,4]} )", {0, 0, 0, 0}, "expected ',' or '}' after a tensor entry"},
  };
  for (const auto& c : cases) {
    INFO("header: " << c.header);
    std::vector<std::uint8_t> data(c.data.begin(), c.data.end());
    const auto file = dppf_test::safetensors_bytes(c.header, data);
    check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(file, "crafted.safetensors"); }, c.message);
    check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(file, "crafted.safetensors"); },
                                        "dppf: checkpoint crafted.safetensors: ");
  }

  // Rank above the limit.
  std::string dims = "1";
  for (int i = 0; i < 64; ++i) dims += ",1";
  const auto deep = dppf_test::safetensors_bytes(R"({"a":{)" + f32 + R"(,"shape":[)" + dims + R"(],"data_offsets":[0,4]}})",
                                                 {0, 0, 0, 0});
  check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(deep); }, "tensor 'a': shape: more than 64 entries");

  // The length field itself.
  const std::vector<std::byte> short_file(5);
  check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(short_file); },
                                      "file has 5 bytes, fewer than the 8-byte header length field");
  auto huge = dppf_test::safetensors_bytes("{}", {});
  huge[7] = std::byte{0x80};
  check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(huge); },
                                      "header length 9223372036854775810 exceeds the limit of 100000000 bytes");
  auto past = dppf_test::safetensors_bytes("{}", {});
  past[0] = std::byte{200};
  check_throws_with<checkpoint_error>([&] { (void)safetensors::parse(past); },
                                      "header length 200 runs past the end of the file (2 bytes follow the length field)");
  dppf::safetensors_limits tight;
  tight.max_header_bytes = 16;
  check_throws_with<checkpoint_error>(
      [&] { (void)safetensors::parse(dppf_test::safetensors_bytes(R"({"__metadata__":{"a":"b"}})", {}), "x", tight); },
      "exceeds the limit of 16 bytes");
}

TEST_CASE("safetensors load into live buffers checks name, dtype and size") {
  safetensors st;
  st.add("w", std::vector<float>{1, 2, 3});
  const std::vector<std::uint8_t> flag_bytes{1, 2};
  st.add_bytes("flags", dtype::boolean, {2}, std::as_bytes(std::span(flag_bytes)));
  const safetensors got = safetensors::parse(st.serialize(), "ckpt");
  std::vector<float> three(3, -1.0f), two(2, -1.0f);
  std::vector<double> d(3);
  check_throws_with<checkpoint_error>([&] { got.read("missing", std::span<float>(three)); },
                                      "dppf: checkpoint ckpt: no tensor 'missing'");
  check_throws_with<checkpoint_error>([&] { got.read("w", std::span<float>(two)); },
                                      "tensor 'w' has 3 elements (shape [3]), the live buffer has 2");
  check_throws_with<checkpoint_error>([&] { got.read("w", std::span<double>(d)); },
                                      "tensor 'w' has dtype F32, the live buffer has F64");
  CHECK(two == std::vector<float>(2, -1.0f));  // nothing written on failure
  got.read("w", std::span<float>(three));
  CHECK(three == std::vector<float>{1, 2, 3});
  bool flags[2];
  check_throws_with<checkpoint_error>([&] { got.read("flags", std::span<bool>(flags)); },
                                      "tensor 'flags': BOOL element 1 is neither 0 nor 1");
  check_throws_with<checkpoint_error>([&] { (void)got.metadata("absent"); }, "no metadata entry 'absent'");
}

TEST_CASE("safetensors add rejects inconsistent tensors") {
  safetensors st;
  st.add("x", std::vector<float>{1, 2});
  check_throws_with<std::invalid_argument>([&] { st.add("x", std::vector<float>{1}); }, "tensor 'x' already added");
  check_throws_with<std::invalid_argument>([&] { st.add("__metadata__", std::vector<float>{1}); }, "reserved");
  check_throws_with<std::invalid_argument>(
      [&] { st.add("y", std::vector<float>{1, 2, 3}, std::vector<std::uint64_t>{2, 2}); },
      "tensor 'y': shape [2, 2] does not hold 3 elements");
  const std::vector<std::byte> five(5);
  check_throws_with<std::invalid_argument>([&] { st.add_bytes("z", dtype::f32, {1}, five); },
                                           "tensor 'z': 5 bytes given, dtype F32 and shape [1] need 4");
  check_throws_with<std::invalid_argument>([&] { st.set_metadata("k", "\xff"); }, "valid UTF-8");
}

TEST_CASE("safetensors save is atomic: a failed write leaves the old file intact") {
  dppf_test::temp_dir dir("atomic");
  const auto path = dir.path / "state.safetensors";
  safetensors old;
  old.add("w", std::vector<double>{1.0, 2.0, 3.0});
  old.save(path);
  const auto before = read_file(path);

  safetensors big;
  big.add("w", std::vector<double>(1 << 16, 7.0));  // 512 KiB

  {
    // Make the write itself fail half way: RLIMIT_FSIZE turns writes beyond 64 KiB into EFBIG
    // (SIGXFSZ ignored), as a full disk would.
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 64 * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      big.save(path);
    } catch (const checkpoint_error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    INFO("message: " << message);
    CHECK(message.find("write failed") != std::string::npos);
    CHECK(message.find(path.string()) != std::string::npos);
  }
  CHECK(read_file(path) == before);
  CHECK(safetensors::load(path).read<double>("w") == std::vector<double>{1.0, 2.0, 3.0});
  // No temporary file is left behind.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);

  // A target that cannot be replaced (a directory) fails at the rename, also leaving nothing.
  const auto sub = dir.path / "sub";
  std::filesystem::create_directory(sub);
  std::filesystem::create_directory(sub / "x.safetensors");
  std::ofstream(sub / "x.safetensors" / "keep") << "keep";
  check_throws_with<checkpoint_error>([&] { old.save(sub / "x.safetensors"); }, "rename from");
  entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(sub)) ++entries;
  CHECK(entries == 1);

  // The successful save replaces the file.
  big.save(path);
  CHECK(safetensors::load(path).read<double>("w") == std::vector<double>(1 << 16, 7.0));
}

TEST_CASE("safetensors load reports unreadable files") {
  dppf_test::temp_dir dir("unreadable");
  check_throws_with<checkpoint_error>([&] { (void)safetensors::load(dir.path / "missing.safetensors"); },
                                      "cannot open: No such file or directory");
  check_throws_with<checkpoint_error>([&] { (void)safetensors::load(dir.path); }, "not a regular file");
  check_throws_with<checkpoint_error>([&] { safetensors{}.save(dir.path / "no" / "such" / "dir.safetensors"); },
                                      "cannot create temporary file");
  // A truncated copy of a good file.
  safetensors st;
  st.add("w", std::vector<float>(100, 1.0f));
  const auto bytes = st.serialize();
  const auto path = dir.path / "truncated.safetensors";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<std::streamsize>(bytes.size() - 1));
  check_throws_with<checkpoint_error>([&] { (void)safetensors::load(path); },
                                      "tensor 'w': data_offsets [0, 400] run past the data area of 399 bytes");
}
