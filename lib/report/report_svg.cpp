// The SVG plot of ttt-perplexity: mean NLL against token position, one curve
// per run (a moving average whose window grows with position, never across
// the first test-time update) over the doubling-bucket means; with compare, a
// second panel of the difference. The legend sits above the plot areas, so it
// hides no data. Standalone: no scripts, no external fonts, valid XML.
#include "ttt/report.hpp"
#include "lib/report/svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

namespace ttt {

std::string svg_escape(const std::string& raw) {
  std::string out;
  for (char c : clean_text(raw)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

std::string esc(const std::string& raw) { return svg_escape(raw); }

// Per-position values over all documents as prefix sums, so the mean over
// any position range costs O(1). Position i is plotted at x = i + 1 (tokens
// of context seen), which keeps position 0 on a log axis.
struct Profile {
  std::vector<double> sum{0}, count{0}, xsum{0};  // prefix sums, [0] = 0
  size_t size() const { return count.size() - 1; }

  Profile(const std::vector<DocResult>& docs, const std::function<double(const DocResult&, size_t)>& value) {
    size_t n = 0;
    for (const DocResult& d : docs) n = std::max(n, d.nll.size());
    std::vector<double> s(n, 0.0), c(n, 0.0);
    for (const DocResult& d : docs)
      for (size_t i = 0; i < d.nll.size(); ++i) {
        s[i] += value(d, i);
        c[i] += 1;
      }
    for (size_t i = 0; i < n; ++i) {
      sum.push_back(sum.back() + s[i]);
      count.push_back(count.back() + c[i]);
      xsum.push_back(xsum.back() + c[i] * double(i + 1));
    }
  }
  // Token-weighted mean x and mean value over positions [a, b).
  std::pair<double, double> mean(size_t a, size_t b) const {
    const double n = count[b] - count[a];
    return {(xsum[b] - xsum[a]) / n, (sum[b] - sum[a]) / n};
  }
};

struct Point {
  double x, y;
};

// One point per distinct window: on a log axis the window spans a quarter
// octave around each of ~200 log-spaced centres (early positions alone,
// later ones hundreds of positions), on a linear axis 1/64 of the length.
// A window widens until it holds kMinTokens values, so a few documents do not
// draw single-token noise (the first positions of one document swing by 10
// nats); the curve then starts where there is data enough to mean something.
// Windows never straddle `split` (the first test-time update, at position B):
// the curve is two segments, and no gain shows before TTT can act.
constexpr double kMinTokens = 64;

using Segment = std::vector<Point>;

Segment smooth_segment(const Profile& p, bool log_x, size_t lo_pos, size_t hi_pos) {
  const size_t n = p.size();
  Segment out;
  const int G = 200;
  size_t last_a = SIZE_MAX, last_b = 0;
  for (int j = 0; j < G; ++j) {
    const double t = double(j) / (G - 1);
    const double g = log_x ? std::pow(double(n), t) : 1 + (double(n) - 1) * t;  // centre, in x = position + 1
    if (g < double(lo_pos) + 1 - 1e-9 || g > double(hi_pos) + 1e-9) continue;  // centre outside the segment
    double r = log_x ? std::pow(2.0, 0.125) : std::max(0.5, double(n) / 128);  // half-width: factor or distance
    size_t a = lo_pos, b = hi_pos;
    for (int grow = 0; grow < 400; ++grow) {
      const double lo = log_x ? g / r : g - r, hi = log_x ? g * r : g + r;
      a = std::clamp(size_t(std::max(0.0, std::ceil(lo) - 1)), lo_pos, hi_pos - 1);
      b = std::clamp(size_t(std::clamp(std::floor(hi), 0.0, double(n))), a + 1, hi_pos);
      if (p.count[b] - p.count[a] >= kMinTokens || (a == lo_pos && b == hi_pos)) break;
      r = log_x ? r * std::pow(2.0, 0.125) : r * 1.25;
    }
    if (a == last_a && b == last_b) continue;
    last_a = a, last_b = b;
    const auto [x, y] = p.mean(a, b);
    out.push_back({x, y});
  }
  // One window for the whole segment (B positions of one document hold
  // fewer than kMinTokens): its mean, at its mean position like every point,
  // drawn flat from there to the segment's end so that it shows.
  if (out.size() <= 1) {
    const auto [x, y] = p.mean(lo_pos, hi_pos);
    return {{x, y}, {double(hi_pos), y}};
  }
  // Widened windows near the start can put a point left of its predecessor.
  std::stable_sort(out.begin(), out.end(), [](const Point& u, const Point& v) { return u.x < v.x; });
  return out;
}

std::vector<Segment> smooth(const Profile& p, bool log_x, size_t split) {
  const size_t n = p.size();
  if (n == 0) return {};
  if (split == 0 || split >= n) return {smooth_segment(p, log_x, 0, n)};
  return {smooth_segment(p, log_x, 0, split), smooth_segment(p, log_x, split, n)};
}

struct XAxis {
  bool log;
  double lo, hi;      // data range
  double left, right; // pixels
  double operator()(double x) const {
    const double t = log ? (std::log(x) - std::log(lo)) / (std::log(hi) - std::log(lo)) : (x - lo) / (hi - lo);
    return left + t * (right - left);
  }
};

struct YAxis {
  double lo, hi;
  double top, bottom;
  double operator()(double y) const { return bottom - (y - lo) / (hi - lo) * (bottom - top); }
};

// Ticks at 1, 2, 2.5 or 5 times a power of ten, about `target` of them, and
// the range widened to whole ticks.
std::vector<double> nice_ticks(double& lo, double& hi, int target) {
  if (!(hi > lo)) {
    const double pad = std::max(0.5, std::fabs(lo) * 0.1);
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  lo = std::floor(lo / step + 1e-9) * step;
  hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  for (double v = lo; v <= hi + step * 1e-6; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::string tick_text(double v, double step) {
  const int digits = std::max(0, int(std::ceil(-std::log10(step) - 1e-9)));
  return fmt::format("{:.{}f}", v, digits);
}

std::string position_tick(double x) {
  const auto p = size_t(std::llround(x));
  if (p >= (size_t(1) << 20) && p % (size_t(1) << 20) == 0) return fmt::format("{}M", p >> 20);
  if (p >= 1024 && p % 1024 == 0) return fmt::format("{}K", p >> 10);
  if (p >= 10000) return fmt::format("{:.0f}K", double(p) / 1000);
  return fmt::format("{}", p);
}

// x ticks: powers of two on a log axis (the bucket edges fall on them),
// spaced so about eight show; nice numbers on a linear one.
std::vector<double> x_ticks(const XAxis& ax) {
  std::vector<double> t;
  if (ax.log) {
    const int bottom = int(std::ceil(std::log2(ax.lo) - 1e-9)), top = int(std::floor(std::log2(ax.hi) + 1e-9));
    const int step = std::max(1, int(std::ceil((top - bottom + 1) / 9.0)));
    for (int e = std::max(bottom, 0); e <= top; e += step) t.push_back(std::ldexp(1.0, e));
    return t;
  }
  // The axis keeps its range (it starts at the first point): ticks inside it only.
  double lo = ax.lo, hi = ax.hi;
  for (double v : nice_ticks(lo, hi, 8))
    if (v >= ax.lo - 1e-9 && v <= ax.hi + 1e-9) t.push_back(v);
  return t;
}

struct Run {
  std::string label, colour;
  std::vector<Segment> curve;  // one or two segments (split at the first update)
  std::vector<Point> dots;  // bucket means at their token-weighted mean x
  std::vector<double> errs;  // one standard error per dot
};

class Svg {
 public:
  std::string s;
  template <typename... A>
  void add(fmt::format_string<A...> f, A&&... a) {
    s += fmt::format(f, std::forward<A>(a)...);
    s += '\n';
  }
  void text(double x, double y, const std::string& str, const char* anchor = "start", const char* extra = "") {
    add(R"~(<text x="{:.1f}" y="{:.1f}" text-anchor="{}"{}>{}</text>)~", x, y, anchor, extra, esc(str));
  }
};

// Axes, grid and curves of one panel; x tick labels only where asked (the
// lower panel of a pair carries them for both).
void panel(Svg& svg, const XAxis& xa, const std::vector<double>& xt, YAxis ya, std::vector<double> yt, double ystep,
           const std::vector<Run>& runs, const std::string& ylabel, bool x_labels, bool zero_line,
           double update_x) {
  svg.add(R"~(<rect class="plot-area" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="#fbfbfd" stroke="none"/>)~",
          xa.left, ya.top, xa.right - xa.left, ya.bottom - ya.top);
  svg.add(R"~(<g stroke="#e3e5ea" stroke-width="1">)~");
  for (double v : yt) svg.add(R"~(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}"/>)~", xa.left, ya(v), xa.right, ya(v));
  for (double v : xt) svg.add(R"~(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}"/>)~", xa(v), ya.top, xa(v), ya.bottom);
  svg.add("</g>");
  if (zero_line)
    svg.add(R"~(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#555" stroke-width="1" stroke-dasharray="4 3"/>)~",
            xa.left, ya(0), xa.right, ya(0));
  if (std::isfinite(update_x))
    svg.add(R"~(<line class="first-update" x1="{0:.1f}" y1="{1:.1f}" x2="{0:.1f}" y2="{2:.1f}" stroke="#8a8f98" stroke-width="1" stroke-dasharray="2 3"/>)~",
            xa(update_x), ya.top, ya.bottom);
  svg.add(R"~(<g font-size="11" fill="#444">)~");
  for (double v : yt) svg.text(xa.left - 6, ya(v) + 4, tick_text(v, ystep), "end");
  if (x_labels)
    for (double v : xt) svg.text(xa(v), ya.bottom + 16, position_tick(v), "middle");
  svg.add("</g>");
  const double ymid = (ya.top + ya.bottom) / 2;
  svg.add(R"~(<text x="{:.1f}" y="{:.1f}" font-size="12" fill="#222" text-anchor="middle" transform="rotate(-90 {:.1f} {:.1f})">{}</text>)~",
          xa.left - 48, ymid, xa.left - 48, ymid, esc(ylabel));

  svg.add(R"~(<g clip-path="url(#plot-clip-{:.0f})">)~", ya.top);
  for (const Run& r : runs) {
    if (r.curve.empty()) continue;
    std::string d;
    for (const Segment& seg : r.curve) {
      std::string last;  // points that round to the same pixel are drawn once
      for (size_t i = 0; i < seg.size(); ++i) {
        const std::string xy = fmt::format("{:.1f} {:.1f}", xa(seg[i].x), ya(seg[i].y));
        if (xy == last) continue;
        d += (d.empty() ? "M" : i ? " L" : " M") + xy;
        last = xy;
      }
    }
    svg.add(R"~(<path class="curve" d="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" stroke-opacity="0.9"/>)~",
            d, r.colour);
  }
  // Bucket means over the curves: a bar across each bucket would crowd the
  // log axis, so a dot at the bucket's mean position with its error bar.
  for (const Run& r : runs)
    for (size_t i = 0; i < r.dots.size(); ++i) {
      const double x = xa(r.dots[i].x), y = ya(r.dots[i].y), e = r.errs[i];
      svg.add(R"~(<circle class="dot" cx="{:.1f}" cy="{:.1f}" r="4.5" fill="{}" stroke="#fff" stroke-width="1.5"/>)~", x, y,
              r.colour);
      if (e > 0)
        svg.add(R"~(<line class="dot" x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="1.5"/>)~", x,
                ya(r.dots[i].y - e), x, ya(r.dots[i].y + e), r.colour);
    }
  svg.add("</g>");
  svg.add(R"~(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="none" stroke="#9aa0a6" stroke-width="1"/>)~",
          xa.left, ya.top, xa.right - xa.left, ya.bottom - ya.top);
}

void clip(Svg& svg, const XAxis& xa, const YAxis& ya) {
  svg.add(R"~(<clipPath id="plot-clip-{:.0f}"><rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/></clipPath>)~",
          ya.top, xa.left, ya.top - 1, xa.right - xa.left, ya.bottom - ya.top + 2);
}

// y range over curves, dots and error bars; with `zero` the range keeps 0 in view.
std::pair<double, double> y_range(const std::vector<Run>& runs, bool zero) {
  double lo = INFINITY, hi = -INFINITY;
  auto take = [&](double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  };
  for (const Run& r : runs) {
    for (const Segment& seg : r.curve)
      for (const Point& p : seg) take(p.y);
    for (size_t i = 0; i < r.dots.size(); ++i) take(r.dots[i].y - r.errs[i]), take(r.dots[i].y + r.errs[i]);
  }
  if (zero) take(0);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  // Headroom: 8% above the highest point, 4% below the lowest (ticks then round outwards).
  const double pad = (hi - lo) * 0.04;
  // NLL is never negative: an axis reaching below 0 only wastes room.
  return {lo >= 0 && !zero ? std::max(0.0, lo - pad) : lo - pad, hi + 2 * pad};
}

Run make_run(const std::vector<DocResult>& docs, const std::vector<Bucket>& buckets, bool log_x, size_t split,
             const std::function<double(const DocResult&, size_t)>& value,
             const std::function<const PplStats&(const Bucket&)>& stats, std::string label, std::string colour) {
  Run r{std::move(label), std::move(colour), {}, {}, {}};
  const Profile p(docs, value);
  r.curve = smooth(p, log_x, split);
  for (const Bucket& b : buckets) {
    const auto [x, unused] = p.mean(std::min(b.lo, p.size()), std::min(b.hi, p.size()));
    (void)unused;
    r.dots.push_back({x, stats(b).mean_nll});
    r.errs.push_back(stats(b).nll_err);
  }
  return r;
}

// One colour per mode, the same in both panels and every plot.
std::string mode_colour(const std::string& name) {
  if (name == "ttt") return "#1f6fb4";
  if (name == "swa") return "#e07b15";
  if (name == "full") return "#6a3d9a";
  return "#2a9d4b";
}

std::string basename(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto k = path.find_last_of('/');
  return k == std::string::npos ? path : path.substr(k + 1);
}

}  // namespace

std::string render_svg(const ReportInput& in, const SvgOptions& opt) {
  validate_report_input(in);
  const bool cmp = in.compare;
  const ReportSettings& st = in.settings;
  const std::string main_label = st.ttt ? "TTT" : "no TTT";
  const char* kMain = st.ttt ? "#1f6fb4" : "#e07b15";
  const char* kBase = "#e07b15";
  const char* kDelta = "#2a9d4b";

  const double W = std::max(opt.width, 320);
  const double H = opt.height > 0 ? std::max(opt.height, 240) : (cmp || has_reference_mode(in) ? 680 : 500);
  size_t n = 0;
  for (const DocResult& d : in.docs) n = std::max(n, d.nll.size());
  const Summary total = summarize(in.docs, cmp);
  const std::vector<Bucket> buckets = position_buckets(in.docs, cmp);

  // Test-time training acts from position B on: curves are not smoothed across it.
  const bool multi = has_reference_mode(in);
  const size_t update_pos =
      (st.ttt || cmp || multi) && st.mini_batch > 0 && size_t(st.mini_batch) < n ? size_t(st.mini_batch) : 0;
  std::vector<Run> runs;
  std::vector<Run> delta;
  // Legend items: each run with its PPL, and with compare the difference.
  std::vector<std::string> texts;
  std::string delta_label = "\xce\x94NLL (TTT \xe2\x88\x92 no TTT)";
  if (multi) {
    // The paper's Fig. 6: every mode, and under it each one's difference to full attention (the last mode).
    const size_t ref = in.modes.size() - 1;
    for (size_t k = 0; k < in.modes.size(); ++k) {
      const std::vector<DocResult> view = mode_view(in.docs, k);
      const std::vector<Bucket> vb = position_buckets(view, true);
      const Summary s = summarize(view, true);
      const std::string& label = in.modes[k].second;
      const std::string colour = mode_colour(in.modes[k].first);
      runs.push_back(make_run(
          view, vb, opt.log_x, update_pos, [](const DocResult& d, size_t i) { return double(d.nll[i]); },
          [](const Bucket& b) -> const PplStats& { return b.stats; }, label, colour));
      texts.push_back(fmt::format("{}: PPL {:.3f} \xc2\xb1 {:.3f}", label, s.run.ppl, s.run.ppl_err));
      if (k == ref) continue;
      delta.push_back(make_run(
          view, vb, opt.log_x, update_pos,
          [](const DocResult& d, size_t i) { return double(d.nll[i]) - double(d.nll_base[i]); },
          [](const Bucket& b) -> const PplStats& { return b.delta; }, label, colour));
    }
    for (size_t k = 0; k < delta.size(); ++k) {
      const Summary s = summarize(mode_view(in.docs, k), true);
      texts.push_back(fmt::format("{} \xe2\x88\x92 {}: {:+.4f} nats/token", in.modes[k].second, in.modes[ref].second,
                                  s.delta.mean_nll));
    }
    delta_label = "\xce\x94NLL (mode \xe2\x88\x92 " + in.modes[ref].second + ")";
  } else {
    const std::string base_label = in.modes.size() >= 2 ? in.modes[1].second : "no TTT";
    const std::string run_label = in.modes.size() >= 2 ? in.modes[0].second : main_label;
    runs.push_back(make_run(
        in.docs, buckets, opt.log_x, update_pos, [](const DocResult& d, size_t i) { return double(d.nll[i]); },
        [](const Bucket& b) -> const PplStats& { return b.stats; }, run_label, kMain));
    texts.push_back(fmt::format("{}: PPL {:.3f} \xc2\xb1 {:.3f}", runs[0].label, total.run.ppl, total.run.ppl_err));
    if (cmp) {
      runs.push_back(make_run(
          in.docs, buckets, opt.log_x, update_pos, [](const DocResult& d, size_t i) { return double(d.nll_base[i]); },
          [](const Bucket& b) -> const PplStats& { return b.stats_base; }, base_label, kBase));
      delta.push_back(make_run(
          in.docs, buckets, opt.log_x, update_pos,
          [](const DocResult& d, size_t i) { return double(d.nll[i]) - double(d.nll_base[i]); },
          [](const Bucket& b) -> const PplStats& { return b.delta; }, "difference", kDelta));
      texts.push_back(fmt::format("{}: PPL {:.3f} \xc2\xb1 {:.3f}", runs[1].label, total.base.ppl, total.base.ppl_err));
      texts.push_back(fmt::format("difference: {:+.4f} nats/token ({:+.2f}% PPL)", total.delta.mean_nll,
                                  (std::exp(total.delta.mean_nll) - 1) * 100));
      if (in.modes.size() >= 2) delta_label = "\xce\x94NLL (" + run_label + " \xe2\x88\x92 " + base_label + ")";
    }
  }
  const bool lower = cmp || multi;  // a difference panel
  std::vector<std::pair<const Run*, std::string>> items;
  for (size_t i = 0; i < texts.size(); ++i)
    items.push_back({i < runs.size() ? &runs[i] : &delta[i - runs.size()], texts[i]});

  // Layout: title and subtitle; the legend in rows under them, outside the
  // plot area so it never hides data; the NLL panel, with compare the
  // difference panel under it; the shared x axis labels and a note on the marks.
  const double left = 78, right = W - 24;
  const double legend_top = 60, row_h = 18;
  std::vector<std::pair<double, double>> item_at;  // (x, baseline y) of each legend item
  double legend_right = left;
  int rows = 1;
  for (double x = left + 8; const auto& it : items) {
    const double w = 40 + double(it.second.size()) * 7.0;  // bytes overestimate the width of ± and Δ: safe
    if (x > left + 8 && x + w > right) x = left + 8, ++rows;
    item_at.push_back({x, legend_top + 16 + row_h * (rows - 1)});
    legend_right = std::max(legend_right, x + w);
    x += w + 16;
  }
  const double legend_h = 8 + row_h * rows;
  const double top = legend_top + legend_h + 10;
  const double bottom_all = H - 74;
  const double split = lower ? top + (bottom_all - top) * 0.66 : bottom_all;

  // The x axis spans what is plotted: from the first curve point, not from 1.
  double xlo = INFINITY, xhi = -INFINITY;
  for (const std::vector<Run>* rs : {&runs, &delta})
    for (const Run& r : *rs) {
      for (const Segment& seg : r.curve)
        for (const Point& p : seg) xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
      for (const Point& p : r.dots) xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
    }
  if (!(xhi > xlo)) {  // no data or a single point
    const double c = std::isfinite(xlo) ? xlo : 1.0;
    xlo = opt.log_x ? c / 2 : c - 1, xhi = opt.log_x ? c * 2 : c + 1;
  }
  XAxis xa{opt.log_x, xlo, xhi, left, right};
  const std::vector<double> xt = x_ticks(xa);

  auto [ylo, yhi] = y_range(runs, false);
  const std::vector<double> yt = nice_ticks(ylo, yhi, 6);
  const YAxis ya{ylo, yhi, top, split};
  // The first test-time update falls between x = B and x = B + 1.
  const double update_x = update_pos && double(update_pos) + 0.5 > xlo && double(update_pos) + 0.5 < xhi
                              ? double(update_pos) + 0.5
                              : NAN;  // none

  Svg svg;
  svg.add(R"~(<?xml version="1.0" encoding="UTF-8"?>)~");
  svg.add(R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{0:.0f}" height="{1:.0f}" viewBox="0 0 {0:.0f} {1:.0f}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">)~",
          W, H);
  const std::string title =
      !opt.title.empty() ? opt.title
                         : "Loss by token position" + (st.model_dir.empty() ? "" : " \xe2\x80\x94 " + basename(st.model_dir));
  svg.add("<title>{}</title>", esc(title));
  svg.add(R"~(<rect width="100%" height="100%" fill="#ffffff"/>)~");
  svg.add("<defs>");
  clip(svg, xa, ya);
  std::optional<YAxis> yd;
  std::vector<double> ydt;
  double ydstep = 1;
  if (lower) {
    auto [dlo, dhi] = y_range(delta, true);
    ydt = nice_ticks(dlo, dhi, 4);
    ydstep = ydt.size() > 1 ? ydt[1] - ydt[0] : 1;
    yd = YAxis{dlo, dhi, split + 18, bottom_all};
    clip(svg, xa, *yd);
  }
  svg.add("</defs>");

  svg.text(left, 30, title, "start", R"~( font-size="17" font-weight="bold" fill="#111")~");
  std::string sub;
  auto part = [&](const std::string& p) { sub += (sub.empty() ? "" : " \xc2\xb7 ") + p; };
  if (!st.device.empty()) part(st.device);
  part(fmt::format("{} document{}, {} tokens", in.docs.size(), in.docs.size() == 1 ? "" : "s", total.run.count));
  if (st.ttt) part(fmt::format("inner_lr {}, B {}", st.inner_lr, st.mini_batch));
  if (st.window > 0) part(fmt::format("W {}", st.window));
  if (in.partial) part(fmt::format("INTERRUPTED: {} of {} tokens", total.run.count, in.tokens_planned));
  svg.text(left, 50, sub, "start", R"~( font-size="12" fill="#555")~");

  const double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  panel(svg, xa, xt, ya, yt, ystep, runs, "mean NLL (nats)", !lower, false, update_x);
  if (lower) panel(svg, xa, xt, *yd, ydt, ydstep, delta, delta_label, true, true, update_x);
  if (n == 0)
    svg.text((left + right) / 2, (top + split) / 2, "no tokens", "middle", R"~( font-size="14" fill="#888")~");

  svg.add(R"~(<g id="legend" font-size="12" fill="#222">)~");
  svg.add(R"~(<rect id="legend-box" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" rx="4" fill="#ffffff" stroke="#c8ccd2"/>)~",
          left, legend_top, legend_right - left, legend_h);
  for (size_t i = 0; i < items.size(); ++i) {
    const auto [x, y] = item_at[i];
    const std::string& c = items[i].first->colour;
    svg.add(R"~(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="2.5"/>)~", x, y - 4,
            x + 24, y - 4, c);
    svg.add(R"~(<circle cx="{:.1f}" cy="{:.1f}" r="3.5" fill="{}" stroke="#fff" stroke-width="1"/>)~", x + 12, y - 4, c);
    svg.text(x + 30, y, items[i].second);
  }
  svg.add("</g>");

  svg.text((left + right) / 2, bottom_all + 36, opt.log_x ? "token position (log scale)" : "token position", "middle",
           R"~( font-size="12" fill="#222")~");
  svg.text(left, H - 22,
           fmt::format("Lines: mean of all documents, {} (\xe2\x89\xa5 64 tokens){}.",
                       opt.log_x ? "averaged over a quarter octave" : "moving average over 1/64 of the length",
                       std::isfinite(update_x) ? ", never across the first test-time update (dotted, after B tokens)" : ""),
           "start", R"~( font-size="10.5" fill="#666")~");
  svg.text(left, H - 8, "Dots: bucket means (0-1K, 1K-2K, 2K-4K, \xe2\x80\xa6) \xc2\xb1 1 standard error.", "start",
           R"~( font-size="10.5" fill="#666")~");
  svg.add("</svg>");
  return svg.s;
}

}  // namespace ttt
