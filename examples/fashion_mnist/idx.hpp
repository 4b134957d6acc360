#pragma once
// Reader for the IDX files of (Fashion-)MNIST, gzip'd or plain (zlib reads both). Every problem
// -- a missing file, a corrupt or truncated stream, a wrong magic number, unexpected dimensions,
// images and labels that disagree, labels out of range -- is a fmnist::data_error naming the file.

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

class data_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The raw contents of one IDX file of unsigned bytes: dims and values, row-major.
struct idx_array {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> values;
};

namespace detail {

struct gz_closer {
  void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};
using gz_file = std::unique_ptr<gzFile_s, gz_closer>;

// Reads exactly n bytes or throws: a short read is a truncated file, a zlib error a corrupt one.
inline void read_exact(gzFile_s* f, const std::string& path, void* out, std::size_t n, const char* what) {
  auto* p = static_cast<unsigned char*>(out);
  std::size_t got = 0;
  while (got < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
    const int r = gzread(f, p + got, chunk);
    if (r < 0) {
      int code = 0;
      const char* msg = gzerror(f, &code);
      throw data_error(path + ": corrupt gzip data while reading the " + what + " (zlib: " + (msg ? msg : "?") + ")");
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  if (got < n) {
    int code = 0;
    const char* msg = gzerror(f, &code);
    std::string why = code != Z_OK && msg && *msg ? std::string(" (zlib: ") + msg + ")" : std::string();
    throw data_error(path + ": truncated: the " + what + " needs " + std::to_string(n) + " bytes but only " +
                     std::to_string(got) + " could be read" + why);
  }
}

inline std::uint32_t big_endian(const std::array<unsigned char, 4>& b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

}  // namespace detail

/// Reads an IDX file of unsigned bytes with `expected_dims` dimensions (magic 0x0000080N).
inline idx_array read_idx(const std::string& path, std::uint32_t expected_dims) {
  detail::gz_file f(gzopen(path.c_str(), "rb"));
  if (!f) throw data_error(path + ": cannot open (does the file exist and is it readable?)");
  std::array<unsigned char, 4> magic{};
  detail::read_exact(f.get(), path, magic.data(), 4, "magic number");
  if (magic[0] != 0 || magic[1] != 0)
    throw data_error(path + ": bad magic number (first two bytes must be zero): not an IDX file");
  if (magic[2] != 0x08)
    throw data_error(path + ": element type code " + std::to_string(magic[2]) +
                     " is not supported (expected 8, unsigned byte)");
  if (magic[3] != expected_dims)
    throw data_error(path + ": has " + std::to_string(magic[3]) + " dimension(s), expected " +
                     std::to_string(expected_dims) + " (magic 0x0000080" + std::to_string(expected_dims) + ")");
  idx_array out;
  std::size_t total = 1;
  for (std::uint32_t d = 0; d < expected_dims; ++d) {
    std::array<unsigned char, 4> b{};
    detail::read_exact(f.get(), path, b.data(), 4, "dimension sizes");
    const std::uint32_t n = detail::big_endian(b);
    if (n == 0) throw data_error(path + ": dimension " + std::to_string(d) + " is zero");
    out.dims.push_back(n);
    total *= n;
  }
  if (total > (std::size_t{1} << 34)) throw data_error(path + ": implausible size " + std::to_string(total));
  out.values.resize(total);
  detail::read_exact(f.get(), path, out.values.data(), total, "data");
  unsigned char extra = 0;
  if (gzread(f.get(), &extra, 1) > 0)
    throw data_error(path + ": trailing bytes after the " + std::to_string(total) + " data bytes the header declares");
  int code = 0;
  const char* msg = gzerror(f.get(), &code);
  if (code != Z_OK && code != Z_BUF_ERROR)
    throw data_error(path + ": corrupt gzip data (zlib: " + (msg ? msg : "?") + ")");
  return out;
}

/// Images as floats, normalized with the Fashion-MNIST training mean and standard deviation,
/// and their labels.
struct dataset {
  std::size_t count = 0;
  std::size_t dim = 0;       ///< pixels per image (rows * cols)
  std::vector<float> x;      ///< count x dim, row-major
  std::vector<std::uint8_t> y;
};

inline constexpr float pixel_mean = 0.2860f;  // Fashion-MNIST training set, pixels in [0, 1]
inline constexpr float pixel_std = 0.3530f;

/// Reads an images file (3 dims) and a labels file (1 dim) that must describe the same images.
/// `limit` > 0 keeps only the first `limit` images.
inline dataset load_idx_pair(const std::string& images_path, const std::string& labels_path, std::size_t limit = 0,
                             int classes = 10) {
  const idx_array images = read_idx(images_path, 3);
  const idx_array labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0])
    throw data_error(images_path + " holds " + std::to_string(images.dims[0]) + " images but " + labels_path +
                     " holds " + std::to_string(labels.dims[0]) + " labels");
  dataset d;
  d.count = images.dims[0];
  if (limit > 0 && limit < d.count) d.count = limit;
  d.dim = std::size_t{images.dims[1]} * images.dims[2];
  d.x.resize(d.count * d.dim);
  for (std::size_t i = 0; i < d.x.size(); ++i)
    d.x[i] = (static_cast<float>(images.values[i]) / 255.0f - pixel_mean) / pixel_std;
  d.y.assign(labels.values.begin(), labels.values.begin() + static_cast<std::ptrdiff_t>(d.count));
  for (std::size_t i = 0; i < d.count; ++i)
    if (d.y[i] >= classes)
      throw data_error(labels_path + ": label " + std::to_string(d.y[i]) + " of item " + std::to_string(i) +
                       " is out of range [0, " + std::to_string(classes) + ")");
  return d;
}

/// The training or test split ("train" or "t10k") from the directory of the Debian package
/// dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
inline dataset load_split(const std::string& dir, const std::string& split, std::size_t limit = 0) {
  return load_idx_pair(dir + "/" + split + "-images-idx3-ubyte.gz", dir + "/" + split + "-labels-idx1-ubyte.gz", limit);
}

}  // namespace fmnist
