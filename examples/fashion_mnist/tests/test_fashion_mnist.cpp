// The Fashion-MNIST example's building blocks: the IDX reader on good and corrupt files written
// here, and the MLP's and the CNN's forward pass and gradient against plain double loops and
// finite differences.

#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "idx.hpp"
#include "cnn.hpp"
#include "fashion_mnist_reference.hpp"
#include "mlp.hpp"
#include "report.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<unsigned char> idx_bytes(unsigned char type, const std::vector<std::uint32_t>& dims,
                                     const std::vector<std::uint8_t>& values) {
  std::vector<unsigned char> b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("dppf_fmnist_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<unsigned char> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_raw(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed, int hi = 255) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, hi);
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(u(rng));
  return v;
}

std::string error_of(const std::string& images, const std::string& labels) {
  try {
    (void)fmnist::load_idx_pair(images, labels);
  } catch (const fmnist::data_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("IDX reader reads gzip'd and plain files written by the test, every value") {
  temp_dir dir;
  const std::size_t n = 7, rows = 5, cols = 3;
  const auto pixels = random_bytes(n * rows * cols, 1);
  const auto labels = random_bytes(n, 2, 9);
  write_gz(dir.file("img.gz"), idx_bytes(0x08, {n, rows, cols}, pixels));
  write_gz(dir.file("lab.gz"), idx_bytes(0x08, {n}, labels));
  write_raw(dir.file("img.raw"), idx_bytes(0x08, {n, rows, cols}, pixels));

  for (const char* name : {"img.gz", "img.raw"}) {
    const fmnist::idx_array a = fmnist::read_idx(dir.file(name), 3);
    REQUIRE(a.dims == std::vector<std::uint32_t>{n, rows, cols});
    CHECK(a.values == pixels);
  }
  const fmnist::dataset d = fmnist::load_idx_pair(dir.file("img.gz"), dir.file("lab.gz"));
  REQUIRE(d.count == n);
  REQUIRE(d.dim == rows * cols);
  CHECK(d.y == labels);
  for (std::size_t i = 0; i < pixels.size(); ++i)
    CHECK(d.x[i] == doctest::Approx((pixels[i] / 255.0 - 0.2860) / 0.3530).epsilon(1e-6));

  const fmnist::dataset first = fmnist::load_idx_pair(dir.file("img.gz"), dir.file("lab.gz"), 3);
  CHECK(first.count == 3);
  CHECK(first.x.size() == 3 * rows * cols);
  CHECK(std::vector<float>(d.x.begin(), d.x.begin() + 3 * rows * cols) == first.x);
}

TEST_CASE("IDX reader rejects missing, corrupt, truncated and inconsistent files with clear errors") {
  temp_dir dir;
  const std::size_t n = 6;
  const auto pixels = random_bytes(n * 4 * 4, 3);
  const auto labels = random_bytes(n, 4, 9);
  const std::string img = dir.file("img.gz"), lab = dir.file("lab.gz");
  write_gz(img, idx_bytes(0x08, {n, 4, 4}, pixels));
  write_gz(lab, idx_bytes(0x08, {n}, labels));
  REQUIRE(error_of(img, lab) == "no error");

  SUBCASE("missing file") {
    CHECK(error_of(dir.file("nope.gz"), lab) == dir.file("nope.gz") + ": cannot open (does the file exist and is it readable?)");
  }
  SUBCASE("bad magic number") {
    write_gz(img, {0x12, 0x34, 0x08, 0x03, 0, 0, 0, 1});
    CHECK(error_of(img, lab).find("bad magic number") != std::string::npos);
  }
  SUBCASE("unsupported element type") {
    write_gz(img, idx_bytes(0x0D, {n, 4, 4}, pixels));
    CHECK(error_of(img, lab) == img + ": element type code 13 is not supported (expected 8, unsigned byte)");
  }
  SUBCASE("labels given where images are expected (wrong number of dimensions)") {
    CHECK(error_of(lab, lab) == lab + ": has 1 dimension(s), expected 3 (magic 0x00000803)");
  }
  SUBCASE("a zero dimension") {
    write_gz(img, idx_bytes(0x08, {n, 0, 4}, {}));
    CHECK(error_of(img, lab) == img + ": dimension 1 is zero");
  }
  SUBCASE("empty file") {
    write_gz(img, {});
    CHECK(error_of(img, lab) == img + ": truncated: the magic number needs 4 bytes but only 0 could be read");
  }
  SUBCASE("header cut inside the dimensions") {
    auto b = idx_bytes(0x08, {n, 4, 4}, {});
    b.resize(10);
    write_gz(img, b);
    CHECK(error_of(img, lab) == img + ": truncated: the dimension sizes needs 4 bytes but only 2 could be read");
  }
  SUBCASE("fewer pixels than the header declares") {
    write_gz(img, idx_bytes(0x08, {n, 4, 4}, std::vector<std::uint8_t>(pixels.begin(), pixels.end() - 5)));
    CHECK(error_of(img, lab) == img + ": truncated: the data needs 96 bytes but only 91 could be read");
  }
  SUBCASE("more bytes than the header declares") {
    auto more = pixels;
    more.push_back(7);
    write_gz(img, idx_bytes(0x08, {n, 4, 4}, more));
    CHECK(error_of(img, lab) == img + ": trailing bytes after the 96 data bytes the header declares");
  }
  SUBCASE("gzip stream cut short") {
    auto raw = read_raw(img);
    raw.resize(raw.size() / 2);
    write_raw(img, raw);
    const std::string e = error_of(img, lab);
    CHECK(e.rfind(img + ": ", 0) == 0);
    const bool says_truncated_or_corrupt = e.find("truncated") != std::string::npos || e.find("corrupt") != std::string::npos;
    CHECK_MESSAGE(says_truncated_or_corrupt, e);
  }
  SUBCASE("gzip stream with damaged compressed data") {
    // Incompressible data keeps the deflate stream long; damage the middle, leave header and trailer.
    write_gz(img, idx_bytes(0x08, {200, 16, 16}, random_bytes(200 * 256, 5)));
    auto raw = read_raw(img);
    for (std::size_t i = raw.size() / 3; i < raw.size() / 3 + 64; ++i) raw[i] = static_cast<unsigned char>(raw[i] ^ 0xA5);
    write_raw(img, raw);
    const std::string e = error_of(img, lab);
    CHECK(e.rfind(img + ": ", 0) == 0);
    const bool reported = e.find("corrupt gzip data") != std::string::npos || e.find("truncated") != std::string::npos;
    CHECK_MESSAGE(reported, e);
  }
  SUBCASE("images and labels of different counts") {
    write_gz(lab, idx_bytes(0x08, {n - 1}, std::vector<std::uint8_t>(labels.begin(), labels.end() - 1)));
    CHECK(error_of(img, lab) == img + " holds 6 images but " + lab + " holds 5 labels");
  }
  SUBCASE("label out of range") {
    auto bad = labels;
    bad[4] = 10;
    write_gz(lab, idx_bytes(0x08, {n}, bad));
    CHECK(error_of(img, lab) == lab + ": label 10 of item 4 is out of range [0, 10)");
  }
}

TEST_CASE("Fashion-MNIST files of the Debian package have the expected shapes" * doctest::skip(!fs::exists(FMNIST_DATA_DIR "/t10k-images-idx3-ubyte.gz"))) {
  const fmnist::dataset test = fmnist::load_split(FMNIST_DATA_DIR, "t10k");
  CHECK(test.count == 10000);
  CHECK(test.dim == 784);
  std::vector<int> per_class(10, 0);
  for (auto y : test.y) ++per_class[y];
  for (int c : per_class) CHECK(c == 1000);  // the test set is balanced
}

namespace {

struct problem {
  std::vector<std::size_t> sizes{13, 9, 7, 4};
  std::size_t batch = 6;
  std::vector<double> params, x;
  std::vector<std::uint8_t> y;
  explicit problem(unsigned seed) {
    fmnist::mlp<double> net(sizes);
    params.resize(net.size());
    net.init(params, seed);
    std::mt19937 rng(seed + 100);
    std::normal_distribution<double> g(0.0, 1.0);
    // Larger biases than the default init keep most ReLUs clearly on or off (finite differences
    // must not straddle a kink).
    for (auto& v : params) v += 0.1 * g(rng);
    x.resize(batch * sizes[0]);
    for (auto& v : x) v = g(rng);
    std::uniform_int_distribution<int> cls(0, static_cast<int>(sizes.back()) - 1);
    for (std::size_t i = 0; i < batch; ++i) y.push_back(static_cast<std::uint8_t>(cls(rng)));
  }
};

// The float model's gradient against the double model's on the same problem, every element,
// within 1e-5 of the largest (float rounding of a few hundred products, far below 1e-5).
template <template <class> class Net, class Problem, class... Shape>
void check_float_gradient(const Problem& pr, const Shape&... shape) {
  Net<double> net(shape...);
  std::vector<double> g(net.size());
  net.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, g);
  Net<float> netf(shape...);
  std::vector<float> pf(pr.params.begin(), pr.params.end()), xf(pr.x.begin(), pr.x.end()), gf(netf.size());
  netf.loss_and_grad(pf, xf.data(), pr.y.data(), pr.batch, gf);
  double gmax = 0.0;
  for (double v : g) gmax = std::max(gmax, std::abs(v));
  REQUIRE(gmax > 1e-3);
  for (std::size_t k = 0; k < g.size(); ++k) {
    INFO("parameter " << k);
    CHECK(std::abs(static_cast<double>(gf[k]) - g[k]) <= 1e-5 * gmax);
  }
}

}  // namespace

TEST_CASE("MLP layout names every tensor in one flat buffer") {
  fmnist::mlp<float> net({784, 512, 512, 10});
  const auto& L = net.layout();
  REQUIRE(L.size() == 6);
  CHECK(net.size() == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
  CHECK(L[0].name == "fc1.weight");
  CHECK(L[0].size == 784 * 512);
  CHECK(L[1].name == "fc1.bias");
  CHECK(L[1].offset == 784 * 512);
  CHECK(L[5].name == "fc3.bias");
  CHECK(L[5].offset + L[5].size == net.size());
  std::vector<float> wrong(10), g(10);
  CHECK_THROWS_WITH(net.init(wrong, 1), doctest::Contains("mlp::init: parameters has 10 elements but the layout covers"));
}

TEST_CASE("MLP loss matches plain double loops (float and double)") {
  for (unsigned seed : {1u, 2u, 3u}) {
    problem pr(seed);
    const double want = fmnist_reference::mlp_loss(pr.sizes, pr.params, pr.x, pr.y, pr.batch);
    fmnist::mlp<double> net(pr.sizes);
    std::vector<double> g(net.size());
    CHECK(net.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, g) == doctest::Approx(want).epsilon(1e-12));
    CHECK(net.loss(pr.params, pr.x.data(), pr.y.data(), pr.batch) == doctest::Approx(want).epsilon(1e-12));

    fmnist::mlp<float> netf(pr.sizes);
    std::vector<float> pf(pr.params.begin(), pr.params.end()), xf(pr.x.begin(), pr.x.end()), gf(netf.size());
    CHECK(netf.loss_and_grad(pf, xf.data(), pr.y.data(), pr.batch, gf) == doctest::Approx(want).epsilon(1e-5));
  }
}

TEST_CASE("MLP gradient matches central finite differences in double, every parameter") {
  for (unsigned seed : {4u, 5u}) {
    problem pr(seed);
    fmnist::mlp<double> net(pr.sizes);
    std::vector<double> g(net.size());
    net.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, g);
    const double h = 1e-6;
    double gmax = 0.0;
    for (double v : g) gmax = std::max(gmax, std::abs(v));
    REQUIRE(gmax > 1e-3);  // a gradient that is all zeros would pass trivially
    for (std::size_t k = 0; k < pr.params.size(); ++k) {
      std::vector<double> p = pr.params;
      p[k] = pr.params[k] + h;
      const double up = fmnist_reference::mlp_loss(pr.sizes, p, pr.x, pr.y, pr.batch);
      p[k] = pr.params[k] - h;
      const double down = fmnist_reference::mlp_loss(pr.sizes, p, pr.x, pr.y, pr.batch);
      const double fd = (up - down) / (2 * h);
      INFO("parameter " << k << " seed " << seed);
      CHECK(std::abs(g[k] - fd) <= 1e-7 + 1e-5 * std::abs(fd));
    }
  }
}

TEST_CASE("MLP float gradient matches the double gradient, every parameter") {
  const problem pr(6);
  check_float_gradient<fmnist::mlp>(pr, pr.sizes);
}

TEST_CASE("MLP evaluate counts correct predictions like an argmax over reference logits") {
  problem pr(7);
  fmnist::mlp<double> net(pr.sizes);
  // Labels that make exactly the reference's argmax right on even rows.
  std::vector<std::uint8_t> y(pr.batch);
  for (std::size_t i = 0; i < pr.batch; ++i) {
    double best = -1e300;
    std::uint8_t arg = 0;
    for (std::uint8_t c = 0; c < pr.sizes.back(); ++c) {
      std::vector<std::uint8_t> one{c};
      std::vector<double> xi(pr.x.begin() + static_cast<std::ptrdiff_t>(i * pr.sizes[0]),
                             pr.x.begin() + static_cast<std::ptrdiff_t>((i + 1) * pr.sizes[0]));
      const double nll = fmnist_reference::mlp_loss(pr.sizes, pr.params, xi, one, 1);  // lowest loss = largest logit
      if (-nll > best) best = -nll, arg = c;
    }
    y[i] = i % 2 == 0 ? arg : static_cast<std::uint8_t>((arg + 1) % pr.sizes.back());
  }
  const fmnist::eval_sums s = net.evaluate(pr.params, pr.x.data(), y.data(), pr.batch, 4);  // chunks of 4: two passes
  CHECK(s.count == pr.batch);
  CHECK(s.correct == pr.batch / 2);
  CHECK(s.loss / s.count == doctest::Approx(fmnist_reference::mlp_loss(pr.sizes, pr.params, pr.x, y, pr.batch)).epsilon(1e-12));
}

namespace {

// A small CNN problem: two stages of 2 and 3 channels, a head of 5, batch 3, random images.
struct cnn_problem {
  std::vector<std::size_t> channels{2, 3}, head{5};
  std::size_t batch = 3;
  std::vector<double> params, x;
  std::vector<std::uint8_t> y;
  explicit cnn_problem(unsigned seed) {
    fmnist::cnn<double> net(channels, head);
    params.resize(net.size());
    net.init(params, seed);
    std::mt19937 rng(seed + 100);
    std::normal_distribution<double> g(0.0, 1.0);
    for (auto& v : params) v += 0.1 * g(rng);  // keep ReLUs and pool winners clearly apart
    x.resize(batch * 784);
    for (auto& v : x) v = g(rng);
    std::uniform_int_distribution<int> cls(0, 9);
    for (std::size_t i = 0; i < batch; ++i) y.push_back(static_cast<std::uint8_t>(cls(rng)));
  }
  double reference(const std::vector<double>& p) const {
    return fmnist_reference::cnn_loss(channels, head, p, x, y, batch);
  }
};

}  // namespace

TEST_CASE("CNN layout names every tensor in one flat buffer, torch's order") {
  fmnist::cnn<float> net({8, 16}, {64});
  const auto& L = net.layout();
  REQUIRE(L.size() == 8);
  const std::vector<std::pair<std::string, std::size_t>> want{
      {"conv1.weight", 8 * 25},      {"conv1.bias", 8},  {"conv2.weight", 16 * 8 * 25}, {"conv2.bias", 16},
      {"fc1.weight", 64 * 16 * 49}, {"fc1.bias", 64}, {"fc2.weight", 10 * 64},       {"fc2.bias", 10}};
  std::size_t offset = 0;
  for (std::size_t k = 0; k < want.size(); ++k) {
    CHECK(L[k].name == want[k].first);
    CHECK(L[k].size == want[k].second);
    CHECK(L[k].offset == offset);
    offset += want[k].second;
  }
  CHECK(net.size() == offset);
  CHECK_THROWS_WITH(fmnist::cnn<float>({8, 16, 32}, {64}), doctest::Contains("halve 28 x 28 images to an odd side"));
  CHECK_THROWS_WITH(fmnist::cnn<float>({8, 0}, {64}), doctest::Contains("channel counts must be positive"));
  CHECK_THROWS_WITH(fmnist::cnn<float>({}, {64}), doctest::Contains("at least one convolution stage"));
  std::vector<float> wrong(10);
  CHECK_THROWS_WITH(net.init(wrong, 1), doctest::Contains("cnn::init: parameters has 10 elements"));
}

TEST_CASE("CNN loss matches a direct-convolution double loop (float and double)") {
  for (unsigned seed : {1u, 2u}) {
    cnn_problem pr(seed);
    const double want = pr.reference(pr.params);
    fmnist::cnn<double> net(pr.channels, pr.head);
    std::vector<double> g(net.size());
    CHECK(net.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, g) == doctest::Approx(want).epsilon(1e-12));
    const fmnist::eval_sums s = net.evaluate(pr.params, pr.x.data(), pr.y.data(), pr.batch, 2);  // two chunks
    CHECK(s.count == pr.batch);
    CHECK(s.loss / s.count == doctest::Approx(want).epsilon(1e-12));

    fmnist::cnn<float> netf(pr.channels, pr.head);
    std::vector<float> pf(pr.params.begin(), pr.params.end()), xf(pr.x.begin(), pr.x.end()), gf(netf.size());
    CHECK(netf.loss_and_grad(pf, xf.data(), pr.y.data(), pr.batch, gf) == doctest::Approx(want).epsilon(1e-5));
  }
}

TEST_CASE("CNN gradient matches central finite differences in double, every parameter") {
  cnn_problem pr(3);
  fmnist::cnn<double> net(pr.channels, pr.head);
  std::vector<double> g(net.size());
  net.loss_and_grad(pr.params, pr.x.data(), pr.y.data(), pr.batch, g);
  const double h = 1e-6;
  for (std::size_t seg = 0; seg < net.layout().size(); ++seg) {  // every tensor has a gradient, conv1 included
    const dppf::segment& s = net.layout()[seg];
    double m = 0.0;
    for (std::size_t i = 0; i < s.size; ++i) m = std::max(m, std::abs(g[s.offset + i]));
    INFO("tensor " << s.name);
    CHECK(m > 1e-4);
  }
  std::vector<double> p = pr.params;
  for (std::size_t k = 0; k < p.size(); ++k) {
    p[k] = pr.params[k] + h;
    const double up = pr.reference(p);
    p[k] = pr.params[k] - h;
    const double down = pr.reference(p);
    p[k] = pr.params[k];
    const double fd = (up - down) / (2 * h);
    INFO("parameter " << k);
    CHECK(std::abs(g[k] - fd) <= 1e-7 + 1e-5 * std::abs(fd));
  }
}

TEST_CASE("CNN float gradient matches the double gradient, every parameter") {
  const cnn_problem pr(4);
  check_float_gradient<fmnist::cnn>(pr, pr.channels, pr.head);
}

TEST_CASE("fashion_mnist JSON epoch lines read back for --replot, every field the SVG uses") {
  fmnist::run_options a, b;
  a.method = "dppf";
  b.method = "ddp";
  std::stringstream s;
  std::vector<fmnist::epoch_record> recs;
  for (int e = 1; e <= 3; ++e) {
    fmnist::epoch_record r;
    r.epoch = e;
    r.train_acc = 0.5 + 0.01 * e;
    r.test_acc = 0.4 + 0.02 * e;
    r.relaxed_mv = 1.25 * e;
    recs.push_back(r);
    s << fmnist::epoch_json(a, r) << "\n";
  }
  s << "{\"method\": \"dppf\", \"workers\": 4}\n" << fmnist::epoch_json(b, recs[0]) << "\n";
  const auto runs = fmnist::parse_epoch_lines(s);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].options.method == "dppf");
  CHECK(runs[1].options.method == "ddp");
  REQUIRE(runs[0].epochs.size() == 3);
  CHECK(runs[0].options.epochs == 3);
  CHECK(runs[1].epochs.size() == 1);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(runs[0].epochs[k].epoch == recs[k].epoch);
    CHECK(runs[0].epochs[k].train_acc == doctest::Approx(recs[k].train_acc).epsilon(1e-6));
    CHECK(runs[0].epochs[k].test_acc == doctest::Approx(recs[k].test_acc).epsilon(1e-6));
    CHECK(runs[0].epochs[k].relaxed_mv == doctest::Approx(recs[k].relaxed_mv).epsilon(1e-6));
  }
  std::stringstream empty("{\"method\": \"dppf\", \"workers\": 4}\n");
  CHECK_THROWS_WITH(fmnist::parse_epoch_lines(empty), "--replot: no epoch lines found");
}
