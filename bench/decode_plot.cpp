// `ttt-bench decode --plot`: the SVG of decode latency against context, one line per mode
// (bench/decode_plot.hpp); text escaped by lib/report's svg_escape.
#include "bench/decode_plot.hpp"
#include "lib/report/svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace ttt::bench {
namespace {

// At most `width` pixels of text at font size `px` (an average glyph is about 0.6 em wide): a longer
// one keeps its head and tail around an ellipsis, so a long model path or device name is never cut off.
std::string fit_text(const std::string& s, double width, double px) {
  const size_t room = size_t(width / (0.6 * px));
  if (s.size() <= room || room < 8) return s;
  size_t head = (room - 1) / 2, tail = room - 1 - head;
  while (head > 0 && (static_cast<unsigned char>(s[head]) & 0xC0) == 0x80) --head;  // whole UTF-8 characters
  while (tail > 0 && (static_cast<unsigned char>(s[s.size() - tail]) & 0xC0) == 0x80) --tail;
  return s.substr(0, head) + "\u2026" + s.substr(s.size() - tail);
}

}  // namespace

std::string svg_plot(const std::vector<Point>& pts, const std::string& title, const std::string& subtitle) {
  const double W = 640, H = 400, l = 70, r = 110, t = 52, b = 50;
  std::vector<int64_t> xs;
  double ymax = 0;
  for (const auto& p : pts) {
    xs.push_back(p.context);
    ymax = std::max(ymax, p.median);
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  const double x0 = std::log2(double(xs.front())), x1 = std::max(x0 + 1, std::log2(double(xs.back())));
  // A round y scale: 1, 2 or 5 times a power of ten per tick, five ticks or so.
  const double raw = ymax / 5, mag = std::pow(10, std::floor(std::log10(raw)));
  const double step = raw / mag <= 1 ? mag : raw / mag <= 2 ? 2 * mag : raw / mag <= 5 ? 5 * mag : 10 * mag;
  const double ytop = std::ceil(ymax / step) * step;
  auto X = [&](double c) { return l + (std::log2(c) - x0) / (x1 - x0) * (W - l - r); };
  auto Y = [&](double v) { return H - b - v / ytop * (H - t - b); };
  std::ostringstream s;
  s << fmt::format(R"s(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">)s", W, H)
    << "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << fmt::format(R"s(<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>)s", W / 2,
                   svg_escape(fit_text(title, W - 20, 14)))
    << "\n"
    << fmt::format(R"s(<text x="{}" y="38" font-size="11" text-anchor="middle" fill="#555">{}</text>)s", W / 2,
                   svg_escape(fit_text(subtitle, W - 20, 11)))
    << "\n";
  for (double v = 0; v <= ytop + step / 2; v += step)
    s << fmt::format(R"s(<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#ddd"/><text x="{}" y="{:.1f}" text-anchor="end">{:g}</text>)s",
                     l, W - r, Y(v), Y(v), l - 6, Y(v) + 4, v)
      << "\n";
  for (int64_t c : xs)
    s << fmt::format(R"s(<line x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}" stroke="#ddd"/><text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)s",
                     X(double(c)), X(double(c)), t, H - b, X(double(c)), H - b + 16,
                     c % 1024 == 0 ? fmt::format("{}K", c / 1024) : std::to_string(c))
      << "\n";
  s << fmt::format(R"s(<text x="{}" y="{}" text-anchor="middle">context (tokens)</text>)s", (l + W - r) / 2, H - 12) << "\n"
    << fmt::format(R"s(<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">ms per token (median)</text>)s",
                   (t + H - b) / 2)
    << "\n";
  const std::pair<const char*, const char*> modes[] = {{"ttt", "#d62728"}, {"swa", "#1f77b4"}, {"full", "#7f7f7f"}};
  int row = 0;
  for (auto [mode, color] : modes) {
    std::string path;
    for (const auto& p : pts)
      if (p.mode == mode) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", X(double(p.context)), Y(p.median));
    if (path.empty()) continue;
    s << fmt::format(R"s(<path d="{}" fill="none" stroke="{}" stroke-width="2"/>)s", path, color) << "\n";
    for (const auto& p : pts)
      if (p.mode == mode)
        s << fmt::format(R"s(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)s", X(double(p.context)), Y(p.median), color)
          << "\n";
    s << fmt::format(R"s(<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>)s",
                     W - r + 10, W - r + 30, t + 10 + 18 * row, t + 10 + 18 * row, color, W - r + 36, t + 14 + 18 * row, mode)
      << "\n";
    ++row;
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace ttt::bench
