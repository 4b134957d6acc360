#pragma once
// The valley example's synthetic landscape: a sharp basin and a wide basin (Gaussian wells) on
// a gentle quadratic bowl, in D dimensions (D = 2 draws as a picture).
//   f(x) = -a_s exp(-|x - c_s|^2 / (2 s_s^2)) - a_w exp(-|x - c_w|^2 / (2 s_w^2)) + b |x|^2 / 2

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace valley {

struct well {
  std::vector<double> center;
  double width;
  double depth;
};

struct landscape {
  well sharp, wide;
  double bowl = 0.02;

  static landscape make(std::size_t dims) {
    landscape l{{std::vector<double>(dims, 0.0), 0.15, 1.0}, {std::vector<double>(dims, 0.0), 1.0, 0.8}};
    l.wide.center[0] = 2.2;  // the wide basin sits 2.2 away along the first axis
    return l;
  }

  template <class T>
  double value(std::span<const T> x) const {
    double s2 = 0, w2 = 0, b2 = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      s2 += (x[k] - sharp.center[k]) * (x[k] - sharp.center[k]);
      w2 += (x[k] - wide.center[k]) * (x[k] - wide.center[k]);
      b2 += static_cast<double>(x[k]) * x[k];
    }
    return -sharp.depth * std::exp(-s2 / (2 * sharp.width * sharp.width)) -
           wide.depth * std::exp(-w2 / (2 * wide.width * wide.width)) + 0.5 * bowl * b2;
  }

  template <class T>
  double value_and_gradient(std::span<const T> x, std::span<T> g) const {
    double s2 = 0, w2 = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      s2 += (x[k] - sharp.center[k]) * (x[k] - sharp.center[k]);
      w2 += (x[k] - wide.center[k]) * (x[k] - wide.center[k]);
    }
    const double es = sharp.depth * std::exp(-s2 / (2 * sharp.width * sharp.width)) / (sharp.width * sharp.width);
    const double ew = wide.depth * std::exp(-w2 / (2 * wide.width * wide.width)) / (wide.width * wide.width);
    for (std::size_t k = 0; k < x.size(); ++k)
      g[k] = static_cast<T>(es * (x[k] - sharp.center[k]) + ew * (x[k] - wide.center[k]) + bowl * x[k]);
    return value(std::span<const T>(x));
  }

  /// "sharp" within 3 widths of the sharp center, "wide" within 2 widths of the wide center,
  /// "neither" elsewhere (on a slope between them, or out on the bowl).
  template <class T>
  std::string basin(std::span<const T> x) const {
    double s2 = 0, w2 = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      s2 += (x[k] - sharp.center[k]) * (x[k] - sharp.center[k]);
      w2 += (x[k] - wide.center[k]) * (x[k] - wide.center[k]);
    }
    if (std::sqrt(s2) < 3 * sharp.width) return "sharp";
    if (std::sqrt(w2) < 2 * wide.width) return "wide";
    return "neither";
  }
};

}  // namespace valley
