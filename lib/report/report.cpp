// Perplexity statistics, position buckets and the plain-text report.
// The numbers every rendering shows come from here (summarize, position_buckets),
// so text, JSON and SVG cannot disagree.
#include "ttt/report.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ttt {

PplStats NllSum::stats() const {
  PplStats s;
  s.count = n;
  if (n == 0) return s;
  const double m = sum / double(n);
  s.mean_nll = m;
  s.ppl = std::exp(m);
  if (n > 1) {
    const double m2 = sum_sq / double(n) - m * m;
    if (m2 > 0) s.nll_err = std::sqrt(m2 / double(n - 1));
  }
  s.ppl_err = s.ppl * s.nll_err;
  return s;
}

PplStats ppl_stats(const std::vector<float>& nll) {
  NllSum a;
  for (float x : nll) a.add(x);
  return a.stats();
}

namespace {

void check_doc(const DocResult& d, bool compare) {
  if (compare && d.nll_base.size() != d.nll.size())
    throw Error(fmt::format("report: document '{}' has {} NLL values with TTT but {} without; a comparison needs "
                            "both runs over the same tokens",
                            clean_text(d.name), d.nll.size(), d.nll_base.size()));
}

// Sums of both runs and of their paired difference.
struct Sums {
  NllSum run, base, delta;
  // Positions [lo, hi) of one document (clipped to its length).
  void add(const DocResult& d, bool compare, size_t lo, size_t hi) {
    hi = std::min(hi, d.nll.size());
    for (size_t i = lo; i < hi; ++i) {
      run.add(d.nll[i]);
      if (compare) {
        base.add(d.nll_base[i]);
        delta.add(double(d.nll[i]) - double(d.nll_base[i]));
      }
    }
  }
};

Summary summarize_ptrs(const std::vector<const DocResult*>& docs, bool compare) {
  Sums s;
  Summary r;
  for (const DocResult* d : docs) {
    check_doc(*d, compare);
    s.add(*d, compare, 0, d->nll.size());
    r.seconds += d->seconds;
    if (compare) r.seconds_base += d->seconds_base;
  }
  r.run = s.run.stats();
  r.base = s.base.stats();
  r.delta = s.delta.stats();
  return r;
}

std::vector<const DocResult*> pointers(const std::vector<DocResult>& docs) {
  std::vector<const DocResult*> p;
  for (const DocResult& d : docs) p.push_back(&d);
  return p;
}

}  // namespace

void validate_report_input(const ReportInput& in) {
  for (const DocResult& d : in.docs) {
    check_doc(d, in.compare);
    if (in.modes.empty()) continue;
    if (d.mode_nll.size() != in.modes.size() || d.mode_seconds.size() != in.modes.size())
      throw Error(fmt::format("report: document '{}' has {} modes, the report {}", clean_text(d.name),
                              d.mode_nll.size(), in.modes.size()));
    for (size_t k = 0; k < in.modes.size(); ++k)
      if (d.mode_nll[k].size() != d.nll.size())
        throw Error(fmt::format("report: document '{}' has {} NLL values in mode {} but {} in the main run",
                                clean_text(d.name), d.mode_nll[k].size(), in.modes[k].first, d.nll.size()));
  }
}

bool has_reference_mode(const ReportInput& in) { return in.modes.size() >= 2 && in.modes.back().first == "full"; }

std::vector<DocResult> mode_view(const std::vector<DocResult>& docs, size_t k) {
  std::vector<DocResult> v;
  v.reserve(docs.size());
  for (const DocResult& d : docs) {
    const size_t ref = d.mode_nll.size() - 1;
    v.push_back({d.name, d.mode_nll.at(k), d.mode_nll.at(ref), d.mode_seconds.at(k), d.mode_seconds.at(ref), {}, {},
                 d.bytes});
  }
  return v;
}

double bits_per_byte(const std::vector<DocResult>& docs) {
  double nll = 0;
  size_t bytes = 0;
  for (const DocResult& d : docs) {
    if (d.bytes == 0) continue;
    for (float x : d.nll) nll += x;
    bytes += d.bytes;
  }
  return bytes ? nll / std::log(2.0) / double(bytes) : 0.0;
}

Summary summarize(const DocResult& doc, bool compare) { return summarize_ptrs({&doc}, compare); }
Summary summarize(const std::vector<DocResult>& docs, bool compare) { return summarize_ptrs(pointers(docs), compare); }

size_t bucket_index(size_t pos) {
  size_t k = 0;
  for (size_t hi = 1024; pos >= hi && k < 60; hi *= 2) ++k;
  return k;
}

std::pair<size_t, size_t> bucket_range(size_t index) {
  if (index == 0) return {0, 1024};
  const size_t lo = size_t(1024) << (index - 1);
  return {lo, lo * 2};
}

namespace {

std::string position_text(size_t p) {
  if (p && p % (size_t(1) << 20) == 0) return fmt::format("{}M", p >> 20);
  if (p && p % 1024 == 0) return fmt::format("{}K", p >> 10);
  return fmt::format("{}", p);
}

}  // namespace

std::string bucket_label(size_t lo, size_t hi) { return position_text(lo) + "-" + position_text(hi); }

namespace {

std::vector<Bucket> buckets_ptrs(const std::vector<const DocResult*>& docs, bool compare) {
  std::vector<Sums> sums;
  for (const DocResult* d : docs) {
    check_doc(*d, compare);
    if (d->nll.empty()) continue;
    const size_t last = bucket_index(d->nll.size() - 1);
    if (sums.size() <= last) sums.resize(last + 1);
    for (size_t k = 0; k <= last; ++k) {
      const auto [lo, hi] = bucket_range(k);
      sums[k].add(*d, compare, lo, hi);
    }
  }
  std::vector<Bucket> out;
  for (size_t k = 0; k < sums.size(); ++k) {
    if (sums[k].run.n == 0) continue;
    Bucket b;
    std::tie(b.lo, b.hi) = bucket_range(k);
    b.stats = sums[k].run.stats();
    b.stats_base = sums[k].base.stats();
    b.delta = sums[k].delta.stats();
    b.count = b.stats.count;
    b.mean_nll = b.stats.mean_nll;
    b.mean_nll_base = b.stats_base.mean_nll;
    out.push_back(b);
  }
  return out;
}

}  // namespace

std::vector<Bucket> position_buckets(const std::vector<DocResult>& docs, bool compare) {
  return buckets_ptrs(pointers(docs), compare);
}
std::vector<Bucket> position_buckets(const DocResult& doc, bool compare) { return buckets_ptrs({&doc}, compare); }

std::string clean_text(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      out += (c < 0x20 && c != '\t') || c == 0x7f ? ' ' : char(c);
      ++i;
      continue;
    }
    // Length and lowest value of a well-formed sequence; overlong forms,
    // surrogates and values past U+10FFFF are replaced like stray bytes.
    size_t len = 0;
    unsigned cp = 0, min = 0;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    bool ok = len && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) ok = false;
      else cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    ok = ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (ok && cp < 0xa0) {  // C1 controls, like C0 ones
      out += ' ';
      i += len;
    } else if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  return out;
}

// ---- plain-text report ----

namespace {

// Display width in code points: the report's own text has no wide
// characters, and a name with some misaligns only its own row.
size_t width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xc0) != 0x80;
  return w;
}

// Keeps the tail of long names (file names differ at the end), after an ellipsis.
std::string fit(const std::string& s, size_t max) {
  if (width(s) <= max) return s;
  size_t drop = width(s) - (max - 1), i = 0;
  while (drop > 0 || (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80))
    if ((static_cast<unsigned char>(s[i++]) & 0xc0) != 0x80) --drop;
  // i now sits on the first byte of the kept tail
  return "\xe2\x80\xa6" + s.substr(i);
}

// Columns sized to their widest cell; the first is left-aligned, the rest
// right-aligned; a rule under the header and before the rows listed. Groups
// put a label like "--- PPL ---" over a run of columns (with compare, the
// runs and their difference), so the column headers stay short.
struct Table {
  struct Group {
    std::string label;
    size_t first, last;  // columns
  };
  std::vector<Group> groups;
  std::vector<std::vector<std::string>> rows;  // rows[0] is the header
  std::vector<size_t> rule_before;             // row indices preceded by a rule

  std::string render() const {
    std::vector<size_t> w;
    for (const auto& r : rows) {
      if (w.size() < r.size()) w.resize(r.size());
      for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], width(r[c]));
    }
    auto start = [&](size_t col) {  // offset of a column in the line
      size_t x = 0;
      for (size_t c = 0; c < col; ++c) x += w[c] + 2;
      return x;
    };
    std::string out;
    if (!groups.empty()) {
      std::string line;
      for (const Group& g : groups) {
        const size_t x = start(g.first), span = start(g.last) + w[g.last] - x;
        const size_t dashes = span > width(g.label) + 2 ? span - width(g.label) - 2 : 0;
        line += std::string(x - width(line), ' ') + std::string(dashes / 2, '-') + " " + g.label + " " +
                std::string(dashes - dashes / 2, '-');
      }
      out += line + "\n";
    }
    const std::string rule = std::string(start(w.size() - 1) + w.back(), '-') + "\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i == 1 || std::find(rule_before.begin(), rule_before.end(), i) != rule_before.end()) out += rule;
      std::string line;
      for (size_t c = 0; c < rows[i].size(); ++c) {
        const std::string& cell = rows[i][c];
        const std::string pad(w[c] - width(cell), ' ');
        if (c) line += "  ";
        line += c == 0 ? cell + pad : pad + cell;
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }
};

constexpr const char* kPm = "\xc2\xb1";      // ±
constexpr const char* kDelta = "\xce\x94";   // Δ

std::string num(double x, int digits) { return std::isfinite(x) ? fmt::format("{:.{}f}", x, digits) : "nan"; }
std::string ppl_text(double ppl) { return num(ppl, ppl < 1e4 ? 4 : 1); }
std::string ppl_pm(const PplStats& s) {
  if (s.count == 0) return "-";
  return fmt::format("{} {} {}", ppl_text(s.ppl), kPm, num(s.ppl_err, s.ppl_err < 1e3 ? 4 : 1));
}
std::string nll_text(const PplStats& s) { return s.count ? num(s.mean_nll, 4) : "-"; }
std::string delta_text(const PplStats& d) { return d.count ? fmt::format("{:+.4f}", d.mean_nll) : "-"; }
// ppl / ppl_base - 1 as a percentage; negative means TTT lowered perplexity.
std::string ratio_text(const PplStats& d) {
  return d.count ? fmt::format("{:+.2f}%", (std::exp(d.mean_nll) - 1) * 100) : "-";
}
std::string rate_text(double tokens_per_s) { return tokens_per_s > 0 ? fmt::format("{:.1f}", tokens_per_s) : "-"; }
std::string count_text(size_t n) { return fmt::format("{}", n); }

struct Labels {
  std::string run, base = "no TTT";
};

// Columns of the document table. Without compare: tokens, mean NLL, PPL ± err,
// tok/s. With compare, mean NLL and PPL each for both runs and their
// difference; the errors of the totals are on the final lines, and all of
// them in the JSON, which keeps the table within ~100 columns.
void summary_columns(Table& t, bool compare, const Labels& l) {
  if (!compare) {
    t.rows.push_back({"", "tokens", "mean NLL", fmt::format("PPL {} err", kPm), "tok/s"});
    return;
  }
  t.groups = {{"mean NLL", 2, 4}, {"PPL", 5, 7}};
  t.rows.push_back({"", "tokens", l.run, l.base, kDelta, l.run, l.base, kDelta, "tok/s"});
}

std::vector<std::string> summary_row(const std::string& name, const Summary& s, bool compare) {
  if (!compare) return {name, count_text(s.run.count), nll_text(s.run), ppl_pm(s.run), rate_text(s.tokens_per_s())};
  return {name,
          count_text(s.run.count),
          nll_text(s.run),
          nll_text(s.base),
          delta_text(s.delta),
          s.run.count ? ppl_text(s.run.ppl) : "-",
          s.base.count ? ppl_text(s.base.ppl) : "-",
          ratio_text(s.delta),
          rate_text(s.tokens_per_s())};
}

// Each mode against the reference (full attention): totals, then by position.
std::string modes_text(const ReportInput& in) {
  const size_t nm = in.modes.size(), ref = nm - 1;
  const std::string& rl = in.modes[ref].second;
  std::vector<std::vector<DocResult>> views;
  for (size_t k = 0; k < nm; ++k) views.push_back(mode_view(in.docs, k));
  Table t;
  t.rows.push_back({"mode", "tokens", "mean NLL", fmt::format("PPL {} err", kPm), fmt::format("{} vs {}", kDelta, rl),
                    fmt::format("PPL vs {}", rl), "tok/s"});
  for (size_t k = 0; k < nm; ++k) {
    const Summary s = summarize(views[k], true);
    t.rows.push_back({in.modes[k].second, count_text(s.run.count), nll_text(s.run), ppl_pm(s.run),
                      k == ref ? "-" : delta_text(s.delta), k == ref ? "-" : ratio_text(s.delta),
                      rate_text(s.tokens_per_s())});
  }
  Table b;
  b.groups = {{"mean NLL", 2, 1 + nm}};
  if (nm > 1) b.groups.push_back({fmt::format("{} vs {}", kDelta, rl), 2 + nm, 2 + nm + ref - 1});
  b.rows.push_back({"positions", "tokens"});
  for (size_t k = 0; k < nm; ++k) b.rows[0].push_back(in.modes[k].second);
  for (size_t k = 0; k < ref; ++k) b.rows[0].push_back(in.modes[k].second);
  std::vector<std::vector<Bucket>> bk;
  for (size_t k = 0; k < nm; ++k) bk.push_back(position_buckets(views[k], true));
  for (size_t i = 0; i < bk[0].size(); ++i) {
    std::vector<std::string> row{bucket_label(bk[0][i].lo, bk[0][i].hi), count_text(bk[0][i].count)};
    for (size_t k = 0; k < nm; ++k) row.push_back(nll_text(bk[k][i].stats));
    for (size_t k = 0; k < ref; ++k) row.push_back(delta_text(bk[k][i].delta));
    b.rows.push_back(std::move(row));
  }
  return "modes (each against " + rl + ")\n" + t.render() + "\n" + (b.rows.size() > 1 ? b.render() + "\n" : "");
}

// The main run against its --kl-divergence base, with llama.cpp's figures.
std::string kld_text(const KldSummary& k) {
  std::string out = fmt::format("KL divergence against {}: {} tokens{}\n", clean_text(k.base), k.count,
                                k.other_model ? " (the base is of another model file)" : "");
  auto pct = [](const std::vector<std::pair<std::string, double>>& v, double scale, int digits, const char* unit) {
    std::string line;
    for (const auto& [name, x] : v) line += fmt::format("{}{} {:.{}f}{}", line.empty() ? "" : ", ", name, x * scale, digits, unit);
    return line;
  };
  out += fmt::format("  mean KLD         {:.6f} {} {:.6f}\n", k.kld_mean, kPm, k.kld_err);
  out += fmt::format("  KLD percentiles  {}\n", pct(k.kld_percentiles, 1, 6, ""));
  out += fmt::format("  mean {}p          {:.3f} {} {:.3f} %\n", "\xce\x94", k.dp_mean * 100, kPm, k.dp_err * 100);
  out += fmt::format("  RMS {}p           {:.3f} %\n", "\xce\x94", k.dp_rms * 100);
  out += fmt::format("  {}p percentiles   {}\n", "\xce\x94", pct(k.dp_percentiles, 100, 3, "%"));
  out += fmt::format("  same top token   {:.3f} {} {:.3f} %\n\n", k.same_top * 100, kPm, k.same_top_err * 100);
  return out;
}

std::string settings_text(const ReportInput& in, const Summary& total, const Labels& l) {
  const ReportSettings& st = in.settings;
  std::vector<std::pair<std::string, std::string>> kv;
  if (!st.model_dir.empty()) kv.emplace_back("model", st.model_dir);
  if (!st.device.empty()) kv.emplace_back("device", st.device);
  if (!st.tokenizer.empty()) kv.emplace_back("tokenizer", st.tokenizer);
  kv.emplace_back("TTT", st.ttt ? fmt::format("on (inner_lr {}, mini-batch B {})", st.inner_lr, st.mini_batch) : "off");
  if (st.window > 0) kv.emplace_back("window", fmt::format("W {}", st.window));
  if (!st.weight_dtype.empty() || !st.kv_dtype.empty())
    kv.emplace_back("storage", fmt::format("{} weights, {} kv", st.weight_dtype.empty() ? "?" : st.weight_dtype,
                                           st.kv_dtype.empty() ? "?" : st.kv_dtype));
  if (in.modes.size() >= 2) {
    std::string all;
    for (const auto& m : in.modes) all += (all.empty() ? "" : " vs ") + m.second;
    kv.emplace_back("compare", all + " on the same tokens");
  } else if (in.compare) {
    kv.emplace_back("compare", fmt::format("{} vs {} on the same tokens", l.run, l.base));
  }
  kv.emplace_back("documents", fmt::format("{}, {} tokens scored", in.docs.size(), total.run.count));
  if (const double bpb = bits_per_byte(in.docs); bpb > 0) kv.emplace_back("bits per byte", fmt::format("{:.4f}", bpb));
  if (in.partial)
    kv.emplace_back("status", fmt::format("INTERRUPTED: partial results, {} of {} tokens scored in {} of {} documents",
                                          total.run.count, in.tokens_planned, in.docs.size(), in.documents_planned));
  std::string time = fmt::format("{:.2f} s", in.seconds);
  if (total.tokens_per_s() > 0) time += fmt::format(", {} {:.1f} tok/s", l.run, total.tokens_per_s());
  if (in.compare && total.tokens_per_s_base() > 0)
    time += fmt::format(", {} {:.1f} tok/s", l.base, total.tokens_per_s_base());
  kv.emplace_back("time", time);
  for (const auto& e : st.extra) kv.push_back(e);

  size_t w = 0;
  for (const auto& e : kv) w = std::max(w, width(e.first));
  std::string out = "ttt-perplexity report\n";
  for (const auto& e : kv) {
    const std::string key = clean_text(e.first);
    out += "  " + key + std::string(w - width(key) + 2, ' ') + clean_text(e.second) + "\n";
  }
  return out;
}

}  // namespace

std::string format_report(const ReportInput& in) {
  validate_report_input(in);
  const bool cmp = in.compare;
  Labels l{in.settings.ttt ? "TTT" : "no TTT"};
  if (in.modes.size() >= 2) l = {in.modes[0].second, in.modes[1].second};
  const Summary total = summarize(in.docs, cmp);
  std::string out = settings_text(in, total, l) + "\n";

  Table docs;
  summary_columns(docs, cmp, l);
  // One document: its name on the one row; several: theirs, then the total.
  if (!in.docs.empty()) docs.rows[0][0] = "document";
  for (const DocResult& d : in.docs) docs.rows.push_back(summary_row(fit(clean_text(d.name), 32), summarize(d, cmp), cmp));
  if (in.docs.size() != 1) {
    if (!in.docs.empty()) docs.rule_before.push_back(docs.rows.size());
    docs.rows.push_back(summary_row("total", total, cmp));
  }
  out += docs.render() + "\n";

  Table buckets;
  if (!cmp) {
    buckets.rows.push_back({"positions", "tokens", "mean NLL", fmt::format("PPL {} err", kPm)});
  } else {
    buckets.groups = {{"mean NLL", 2, 4}, {"PPL", 5, 7}};
    buckets.rows.push_back({"positions", "tokens", l.run, l.base, kDelta, l.run, l.base, kDelta});
  }
  for (const Bucket& b : position_buckets(in.docs, cmp)) {
    if (!cmp)
      buckets.rows.push_back({bucket_label(b.lo, b.hi), count_text(b.count), nll_text(b.stats), ppl_pm(b.stats)});
    else
      buckets.rows.push_back({bucket_label(b.lo, b.hi), count_text(b.count), nll_text(b.stats), nll_text(b.stats_base),
                              delta_text(b.delta), ppl_text(b.stats.ppl), ppl_text(b.stats_base.ppl),
                              ratio_text(b.delta)});
  }
  if (buckets.rows.size() > 1) out += buckets.render() + "\n";
  if (has_reference_mode(in)) out += modes_text(in);
  if (in.kld) out += kld_text(*in.kld);

  // llama.cpp prints "Final estimate: PPL = %.4lf +/- %.5lf"; the same
  // precision here, and the main run last so `tail -n 1` finds it.
  auto final_line = [&](const PplStats& s) {
    return s.count ? fmt::format("{:.4f} {} {:.5f}", s.ppl, kPm, s.ppl_err) : std::string("- (no tokens)");
  };
  if (cmp) out += fmt::format("PPL ({}) = {}\n", l.base, final_line(total.base));
  out += fmt::format("PPL = {}\n", final_line(total.run));
  return out;
}

}  // namespace ttt
