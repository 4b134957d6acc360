#pragma once
// Output of the Fashion-MNIST example: JSON lines, the closing markdown table and the SVG of test
// accuracy and valley width over epochs.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <istream>
#include <stdexcept>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "train.hpp"

namespace fmnist {

inline std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
inline std::string number(const std::optional<double>& v) { return v ? number(*v) : "null"; }

inline std::string tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

/// The tau a method really uses: 1 for ddp (a gradient all-reduce every step), none for single.
inline std::string effective_tau(const run_options& o) {
  if (o.method == "ddp") return "1";
  if (o.method == "single") return "null";
  return std::to_string(o.tau);
}
inline int effective_workers(const run_options& o) { return o.method == "single" ? 1 : o.workers; }

inline std::string epoch_json(const run_options& o, const epoch_record& e) {
  std::ostringstream s;
  s << "{\"method\": \"" << o.method << "\", \"epoch\": " << e.epoch << ", \"train_acc\": " << number(e.train_acc)
    << ", \"test_acc\": " << number(e.test_acc) << ", \"train_loss\": " << number(e.train_loss)
    << ", \"test_loss\": " << number(e.test_loss) << ", \"minibatch_loss\": " << number(e.minibatch_loss)
    << ", \"relaxed_mv\": " << number(e.relaxed_mv) << ", \"comm_bytes\": " << e.comm_bytes
    << ", \"wall_s\": " << number(e.wall_s) << "}";
  return s.str();
}

inline std::string result_json(const run_result& r) {
  const epoch_record& e = r.last();
  std::ostringstream s;
  s << "{\"method\": \"" << r.options.method << "\", \"workers\": " << effective_workers(r.options)
    << ", \"tau\": " << effective_tau(r.options) << ", \"epochs\": " << r.options.epochs
    << ", \"train_acc\": " << number(e.train_acc) << ", \"test_acc\": " << number(e.test_acc)
    << ", \"gen_gap\": " << number(e.train_acc - e.test_acc) << ", \"train_loss\": " << number(e.train_loss)
    << ", \"test_loss\": " << number(e.test_loss) << ", \"relaxed_mv\": " << number(e.relaxed_mv)
    << ", \"imv\": " << number(r.imv) << ", \"hessian_top\": " << number(r.hessian_top)
    << ", \"comm_bytes\": " << r.comm_bytes;
  // The sync's form, only where it is not the default, so a default run's line stays as it was.
  if (r.options.overlap_steps != 0) s << ", \"overlap_steps\": " << r.options.overlap_steps;
  if (r.options.sync_precision != dppf::sync_precision::full)
    s << ", \"sync_precision\": \"" << dppf::to_string(r.options.sync_precision) << "\"";
  if (r.options.no_sync) s << ", \"no_sync\": true";
  if (!std::isnan(r.train_s)) s << ", \"train_s\": " << number(r.train_s);  // training only (run_result)
  s << ", \"wall_s\": " << number(r.wall_s) << "}";
  return s.str();
}

/// What an elastic run (--elastic) adds to a method's result: the workers at the start and at the
/// end, and the final generation of the group.
struct elastic_summary {
  int founders = 0, finished = 0;
  std::int64_t generation = 0;
};

/// result_json with the elastic fields before the closing brace.
inline std::string result_json(const run_result& r, const elastic_summary& e) {
  std::string s = result_json(r);
  s.pop_back();
  return s + ", \"elastic\": true, \"workers_finished\": " + std::to_string(e.finished) +
         ", \"generation\": " + std::to_string(e.generation) + "}";
}

/// Below the table of an elastic run: how many of the workers finished, in which generation.
inline std::string elastic_table(const std::vector<run_result>& results, const std::vector<elastic_summary>& elastic) {
  std::ostringstream s;
  s << "\n| method | workers at start | workers finished | final generation | test acc |\n|---|---|---|---|---|\n";
  for (std::size_t k = 0; k < results.size() && k < elastic.size(); ++k) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "| %s | %d | %d | %lld | %.4f |\n", results[k].options.method.c_str(), elastic[k].founders,
                  elastic[k].finished, static_cast<long long>(elastic[k].generation), results[k].last().test_acc);
    s << buf;
  }
  return s.str();
}

/// The epoch lines of `fashion_mnist --json` output back into results (for --replot).
inline std::vector<run_result> parse_epoch_lines(std::istream& in) {
  std::vector<run_result> out;
  const auto field = [](const std::string& line, const std::string& key) {
    const auto at = line.find("\"" + key + "\": ");
    if (at == std::string::npos) throw std::runtime_error("--replot: no field '" + key + "' in: " + line);
    return line.substr(at + key.size() + 4);
  };
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"epoch\": ") == std::string::npos) continue;
    std::string method = field(line, "method");
    method = method.substr(1, method.find('"', 1) - 1);
    if (out.empty() || out.back().options.method != method) {
      out.emplace_back();
      out.back().options.method = method;
      out.back().options.epochs = 0;
    }
    epoch_record e;
    e.epoch = std::stoi(field(line, "epoch"));
    e.test_acc = std::stod(field(line, "test_acc"));
    e.train_acc = std::stod(field(line, "train_acc"));
    e.relaxed_mv = std::stod(field(line, "relaxed_mv"));
    out.back().epochs.push_back(e);
    out.back().options.epochs = e.epoch;
  }
  if (out.empty()) throw std::runtime_error("--replot: no epoch lines found");
  return out;
}

inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g %s", b, units[u]);
  return buf;
}

inline std::string markdown_table(const std::vector<run_result>& results) {
  std::ostringstream s;
  s << "| method | M | tau | epochs | train acc | test acc | gen gap | train loss | test loss | relaxed MV | IMV | "
       "Hessian top | comm / worker | wall s |\n"
    << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  char buf[512];
  for (const run_result& r : results) {
    const epoch_record& e = r.last();
    std::snprintf(buf, sizeof buf, "| %s | %d | %s | %d | %.4f | %.4f | %+.4f | %.4f | %.4f | %.4g | %s | %s | %s | %.1f |\n",
                  r.options.method.c_str(), effective_workers(r.options), effective_tau(r.options).c_str(),
                  r.options.epochs, e.train_acc, e.test_acc, e.train_acc - e.test_acc, e.train_loss, e.test_loss,
                  e.relaxed_mv, r.imv ? number(*r.imv).c_str() : "n/a",
                  r.hessian_top ? number(*r.hessian_top).c_str() : "n/a", human_bytes(static_cast<double>(r.comm_bytes)).c_str(),
                  r.wall_s);
    s << buf;
  }
  return s.str();
}

/// Two panels over epochs, one line per method: test accuracy of x_bar and the relaxed valley
/// width mean_i ||x_i - x_bar|| at the epoch's last sync.
inline std::string draw_svg(const std::vector<run_result>& results) {
  const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  const int pw = 420, ph = 300, ml = 60, mt = 40, gap = 90;
  int max_epoch = 1;
  for (const auto& r : results) max_epoch = std::max(max_epoch, r.options.epochs);
  struct panel {
    const char* title;
    double lo, hi;
    double (*get)(const epoch_record&);
  };
  double acc_lo = 1.0, acc_hi = 0.0, mv_hi = 0.0;
  for (const auto& r : results)
    for (const auto& e : r.epochs) {
      acc_lo = std::min(acc_lo, e.test_acc);
      acc_hi = std::max(acc_hi, e.test_acc);
      mv_hi = std::max(mv_hi, std::isfinite(e.relaxed_mv) ? e.relaxed_mv : 0.0);
    }
  acc_lo = std::floor(acc_lo * 50.0) / 50.0;
  acc_hi = std::ceil(acc_hi * 50.0) / 50.0;
  if (acc_hi <= acc_lo) acc_hi = acc_lo + 0.02;
  if (mv_hi <= 0.0) mv_hi = 1.0;
  const panel panels[2] = {{"test accuracy of x_bar", acc_lo, acc_hi, [](const epoch_record& e) { return e.test_acc; }},
                           {"valley width: mean_i ||x_i - x_bar||", 0.0, mv_hi * 1.1,
                            [](const epoch_record& e) { return e.relaxed_mv; }}};
  std::ostringstream s;
  const int width = ml + 2 * pw + gap + 20, height = mt + ph + 80;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  for (int p = 0; p < 2; ++p) {
    const panel& pn = panels[p];
    const int x0 = ml + p * (pw + gap), y0 = mt;
    const auto px = [&](double epoch) { return x0 + (max_epoch > 1 ? (epoch - 1) / (max_epoch - 1) : 0.5) * pw; };
    const auto py = [&](double v) { return y0 + ph - (v - pn.lo) / (pn.hi - pn.lo) * ph; };
    s << "<text x='" << x0 + pw / 2 << "' y='" << y0 - 12 << "' text-anchor='middle' font-size='14'>" << pn.title << "</text>\n";
    s << "<rect x='" << x0 << "' y='" << y0 << "' width='" << pw << "' height='" << ph << "' fill='none' stroke='black'/>\n";
    for (int t = 0; t <= 4; ++t) {
      const double v = pn.lo + (pn.hi - pn.lo) * t / 4.0;
      s << "<text x='" << x0 - 6 << "' y='" << py(v) + 4 << "' text-anchor='end'>" << tick(v)
        << "</text>\n<line x1='" << x0 << "' x2='" << x0 + pw << "' y1='" << py(v) << "' y2='" << py(v)
        << "' stroke='#ddd'/>\n";
    }
    const int every = (max_epoch + 9) / 10;  // at most about 10 epoch labels
    for (int e = 1; e <= max_epoch; ++e)
      if (e == 1 || e % every == 0) s << "<text x='" << px(e) << "' y='" << y0 + ph + 16 << "' text-anchor='middle'>" << e << "</text>\n";
    s << "<text x='" << x0 + pw / 2 << "' y='" << y0 + ph + 34 << "' text-anchor='middle'>epoch</text>\n";
    for (std::size_t k = 0; k < results.size(); ++k) {
      s << "<polyline fill='none' stroke-width='2' stroke='" << colors[k % 8] << "' points='";
      for (const auto& e : results[k].epochs) s << px(e.epoch) << "," << py(pn.get(e)) << " ";
      s << "'/>\n";
      for (const auto& e : results[k].epochs)
        s << "<circle r='3' fill='" << colors[k % 8] << "' cx='" << px(e.epoch) << "' cy='" << py(pn.get(e)) << "'/>\n";
    }
  }
  for (std::size_t k = 0; k < results.size(); ++k) {
    const int x = ml + static_cast<int>(k) * 110, y = mt + ph + 60;
    s << "<rect x='" << x << "' y='" << y - 10 << "' width='14' height='4' fill='" << colors[k % 8] << "'/><text x='"
      << x + 20 << "' y='" << y - 4 << "'>" << results[k].options.method << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace fmnist
