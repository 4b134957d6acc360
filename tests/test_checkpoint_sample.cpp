// dppf_checkpoint_sample FILE [TRAINER_FILE]: writes a safetensors file with values given by
// simple formulas, which tools/read_checkpoint.py --verify-sample recomputes with numpy (an
// independent reader), and a trainer checkpoint whose trajectory --verify-trainer-sample
// re-simulates in numpy.

#include <dppf/checkpoint/trainer_checkpoint.hpp>
#include <dppf/consensus/elastic.hpp>
#include <dppf/executors/host.hpp>
#include <dppf/optimizers/sgd.hpp>
#include <dppf/communicators/single.hpp>
#include <dppf/trainer.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s FILE [TRAINER_FILE]\n", argv[0]);
    return 2;
  }
  try {
    dppf::safetensors st;
    std::vector<float> f32(10);
    for (int i = 0; i < 10; ++i) f32[static_cast<std::size_t>(i)] = static_cast<float>(i) * 0.25f - 3.0f;
    st.add("f32", f32, std::vector<std::uint64_t>{2, 5});
    std::vector<double> f64(7);
    for (int i = 0; i < 7; ++i) f64[static_cast<std::size_t>(i)] = 1.0 / (static_cast<double>(i) + 1.0);
    st.add("f64", f64);
    std::vector<std::int64_t> i64(4);
    for (std::int64_t i = 0; i < 4; ++i) i64[static_cast<std::size_t>(i)] = i * i * 1000003 - 5;
    st.add("i64", i64);
    std::vector<std::uint8_t> u8(9);
    for (int i = 0; i < 9; ++i) u8[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 37) % 256);
    st.add("u8", u8, std::vector<std::uint64_t>{3, 3});
    std::vector<std::int32_t> i32(7);
    for (int i = 0; i < 7; ++i) i32[static_cast<std::size_t>(i)] = -7 * i;
    st.add("i32", i32);
    bool flags[10];
    for (int i = 0; i < 10; ++i) flags[i] = i % 3 == 0;
    st.add("bool", std::span<const bool>(flags));
    st.add_scalar("scalar", std::int64_t{7});
    // IEEE half precision 0.5, -1.0 and 65504 (the largest finite half), little-endian bits.
    const std::uint8_t half[] = {0x00, 0x38, 0x00, 0xBC, 0xFF, 0x7B};
    st.add_bytes("f16", dppf::dtype::f16, {3}, std::as_bytes(std::span(half)));
    st.add("empty", std::vector<float>{}, std::vector<std::uint64_t>{0, 3});
    st.set_metadata("writer", "dppf_checkpoint_sample");
    st.set_metadata("note", "quote \" backslash \\ newline \n e-acute \xc3\xa9");
    st.save(argv[1]);
    if (argc == 3) {
      // One worker, SGD with momentum on f(x) = |x|^2 / 2 (gradient x), EASGD every 2 steps;
      // 5 steps, so the checkpoint falls after the syncs at steps 2 and 4 and one more step.
      dppf::trainer tr{dppf::sgd{{.lr = 0.1, .momentum = 0.9}}, dppf::elastic{{.alpha = 0.25}}, dppf::single_communicator{},
                       dppf::host_executor{}, {.tau = 2}};
      std::vector<float> x{1.0f, -2.0f, 3.0f, 0.5f};
      for (int t = 0; t < 5; ++t) tr.step(x, std::vector<float>(x), 0.5 * t);
      dppf::save_trainer(argv[2], tr, x);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
