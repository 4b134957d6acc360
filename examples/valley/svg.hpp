#pragma once
// A small SVG writer for the valley example: the loss as a shaded grid, each worker's path, and
// the path of the workers' mean.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "landscape.hpp"

namespace valley {

inline std::string draw(const landscape& land, const std::vector<std::vector<std::vector<double>>>& paths,
                        const std::vector<std::vector<double>>& mean_path, const std::string& title) {
  const double x0 = -1.5, x1 = 4.5, y0 = -2.0, y1 = 2.0;
  const int w = 720, h = 480, cells_x = 72, cells_y = 48;
  const auto px = [&](double x) { return (x - x0) / (x1 - x0) * w; };
  const auto py = [&](double y) { return h - (y - y0) / (y1 - y0) * h; };
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h + 30 << "' font-family='sans-serif'>\n";
  // Loss shading: darker is lower.
  std::vector<double> point(land.sharp.center.size(), 0.0);
  for (int i = 0; i < cells_x; ++i)
    for (int j = 0; j < cells_y; ++j) {
      point[0] = x0 + (i + 0.5) * (x1 - x0) / cells_x;
      point[1] = y0 + (j + 0.5) * (y1 - y0) / cells_y;
      const double f = land.value(std::span<const double>(point));
      const double t = std::clamp((f + 1.0) / 1.4, 0.0, 1.0);  // f in about [-1, 0.4]
      const int shade = static_cast<int>(40 + 215 * t);
      char color[16];
      std::snprintf(color, sizeof color, "#%02x%02x%02x", shade / 2, shade / 2 + 20, shade);
      s << "<rect x='" << i * w / cells_x << "' y='" << h - (j + 1) * h / cells_y << "' width='" << w / cells_x + 1
        << "' height='" << h / cells_y + 1 << "' fill='" << color << "'/>\n";
    }
  const char* colors[] = {"#ff6b6b", "#ffd93d", "#6bcB77", "#4d96ff", "#c77dff", "#ff9f1c", "#2ec4b6", "#e71d36"};
  for (std::size_t r = 0; r < paths.size(); ++r) {
    s << "<polyline fill='none' stroke-width='1' stroke-opacity='0.8' stroke='" << colors[r % 8] << "' points='";
    for (const auto& p : paths[r]) s << px(p[0]) << ',' << py(p[1]) << ' ';
    s << "'/>\n";
  }
  s << "<polyline fill='none' stroke='white' stroke-width='2.5' points='";
  for (const auto& p : mean_path) s << px(p[0]) << ',' << py(p[1]) << ' ';
  s << "'/>\n";
  if (!mean_path.empty())
    s << "<circle cx='" << px(mean_path.back()[0]) << "' cy='" << py(mean_path.back()[1]) << "' r='5' fill='white'/>\n";
  s << "<text x='10' y='" << h + 20 << "' font-size='13'>" << title
    << " -- sharp basin at (0,0), wide at (2.2,0); white: the workers' mean</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace valley
