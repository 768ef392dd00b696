// S-NIAH: needles, prompts and the heat map (see niah.hpp).
#include "lib/eval/niah.hpp"

#include "lib/report/svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ttt::niah {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

// Red (0) through yellow to green (1).
std::string colour(double a) {
  a = std::clamp(a, 0.0, 1.0);
  const int r = a < 0.5 ? 215 : int(215 - (a - 0.5) * 2 * (215 - 26));
  const int g = a < 0.5 ? int(48 + a * 2 * (200 - 48)) : int(200 - (a - 0.5) * 2 * (200 - 150));
  const int b = a < 0.5 ? 39 : int(39 + (a - 0.5) * 2 * (80 - 39));
  return fmt::format("#{:02x}{:02x}{:02x}", r, g, b);
}

}  // namespace

std::vector<std::string> sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    cur += text[i];
    const char c = text[i];
    const bool end = c == '\n' || ((c == '.' || c == '!' || c == '?') && i + 1 < text.size() &&
                                   (text[i + 1] == ' ' || text[i + 1] == '\n'));
    if (end) {
      while (i + 1 < text.size() && (text[i + 1] == ' ' || text[i + 1] == '\n')) cur += text[++i];
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur + " ");
  return out;
}

std::string needle_value(int needle, std::mt19937_64& rng) {
  if (needle == 1) return std::to_string(10000 + rng() % 90000);       // 5 digits
  if (needle == 2) return std::to_string(1000000 + rng() % 9000000);   // 7 digits
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += "0123456789abcdef"[rng() % 16];  // UUID version 4
  hex[12] = '4';
  hex[16] = "89ab"[rng() % 4];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

uint64_t prompt_seed(uint64_t seed, int needle, int context, double depth, int trial) {
  return mix(mix(mix(mix(seed) ^ uint64_t(needle)) ^ uint64_t(context)) ^ uint64_t(std::llround(depth * 1e6))) ^
         uint64_t(trial);
}

PromptBuilder::PromptBuilder(const Tokenizer& tok, const std::string& haystack, int bos) : tok_(tok), bos_(bos) {
  for (const auto& s : sentences(haystack)) {
    auto ids = tok.encode(s);
    if (!ids.empty()) hay_.push_back(std::move(ids));
  }
}

std::string PromptBuilder::needle_text(const Needle& n, const std::string& v) const {
  return n.id == 1 ? fmt::format("The pass key is {}. Remember it. {} is the pass key. ", v, v)
                   : fmt::format("The {} is {}. Remember it. ", n.thing, v);
}

std::string PromptBuilder::prefix(const Needle& n) const {
  return fmt::format("A {} is hidden in this text. Remember it.\n", n.thing);
}

std::string PromptBuilder::question(const Needle& n) const {
  return fmt::format("\nWhat is the {}? The {} is", n.thing, n.thing);
}

int PromptBuilder::overhead(const Needle& n) const {
  const std::string v = n.id == 3 ? "00000000-0000-4000-8000-000000000000" : n.id == 2 ? "1000000" : "10000";
  return int((bos_ >= 0) + tok_.encode(prefix(n)).size() + tok_.encode(needle_text(n, v)).size() +
             tok_.encode(question(n)).size());
}

Prompt PromptBuilder::make(const Needle& n, int context, double depth, std::mt19937_64& rng) const {
  Prompt p;
  p.answer = needle_value(n.id, rng);
  p.answer_tokens = int(tok_.encode(" " + p.answer).size());
  const auto pre = tok_.encode(prefix(n)), needle = tok_.encode(needle_text(n, p.answer)),
             q = tok_.encode(question(n));
  const int64_t hay_len = int64_t(context) - (bos_ >= 0) - int64_t(pre.size() + needle.size() + q.size());
  // The haystack: whole sentences from a random one on (wrapping around), cut to length; the needle goes at the
  // sentence boundary nearest to depth * its length.
  std::vector<int32_t> hay;
  std::vector<size_t> bounds{0};
  for (size_t s = rng() % hay_.size(); int64_t(hay.size()) < hay_len; s = (s + 1) % hay_.size()) {
    hay.insert(hay.end(), hay_[s].begin(), hay_[s].end());
    bounds.push_back(hay.size());
  }
  // Whole sentences only (the prompt may come out a sentence shorter than the context), unless not even one fits.
  const size_t fit = size_t(std::max<int64_t>(hay_len, 0));
  size_t whole = 0;
  for (size_t b : bounds)
    if (b <= fit) whole = b;
  hay.resize(whole > 0 ? whole : fit);
  bounds.push_back(hay.size());
  const double want = depth * double(hay.size());
  size_t at = 0;
  for (size_t b : bounds)
    if (b <= hay.size() && std::abs(double(b) - want) < std::abs(double(at) - want)) at = b;
  if (bos_ >= 0) p.ids.push_back(bos_);
  p.ids.insert(p.ids.end(), pre.begin(), pre.end());
  p.ids.insert(p.ids.end(), hay.begin(), hay.begin() + int64_t(at));
  p.ids.insert(p.ids.end(), needle.begin(), needle.end());
  p.ids.insert(p.ids.end(), hay.begin() + int64_t(at), hay.end());
  p.ids.insert(p.ids.end(), q.begin(), q.end());
  return p;
}

bool is_answer(const std::string& reply, const std::string& answer) { return trim(reply) == answer; }

std::string heat_map_svg(const std::vector<Cell>& cells, const std::vector<Mode>& modes,
                         const std::vector<int>& contexts, const std::vector<double>& depths,
                         const std::string& title) {
  const int cw = 56, ch = 28, left = 64, top = 58, gap = 40;
  const int pw = cw * int(contexts.size()), ph = ch * int(depths.size());
  const int width = left + int(modes.size()) * (pw + gap) + 20, height = top + ph + 90;
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
      width, height, width, height, left, svg_escape(title));
  for (size_t m = 0; m < modes.size(); ++m) {
    const int x0 = left + int(m) * (pw + gap);
    s += fmt::format("<g class=\"panel\" id=\"{}\">\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                     mode_name(modes[m]), x0 + pw / 2, top - 22, svg_escape(mode_label(modes[m])));
    for (size_t ci = 0; ci < contexts.size(); ++ci)
      for (size_t di = 0; di < depths.size(); ++di) {
        int n = 0, k = 0;
        for (const Cell& c : cells)
          if (c.mode == modes[m] && c.context == contexts[ci] && c.depth == depths[di]) n += c.trials, k += c.correct;
        const double acc = n ? double(k) / n : 0;
        const int x = x0 + int(ci) * cw, y = top + int(di) * ch;
        s += fmt::format(
            "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\">"
            "<title>{}: context {}, depth {:g}: {}/{} correct</title></rect>\n"
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
            x, y, cw, ch, n ? colour(acc) : "#dddddd", mode_name(modes[m]), contexts[ci], depths[di], k, n,
            x + cw / 2, y + ch / 2 + 4, acc > 0.25 && acc < 0.75 ? "black" : "white",
            n ? fmt::format("{:.0f}%", 100 * acc) : "-");
      }
    for (size_t ci = 0; ci < contexts.size(); ++ci) {
      const int c = contexts[ci];
      const std::string label = c % 1024 == 0 ? fmt::format("{}K", c / 1024) : std::to_string(c);
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x0 + int(ci) * cw + cw / 2,
                       top + ph + 15, label);
    }
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">context (tokens)</text>\n", x0 + pw / 2,
                     top + ph + 32);
    for (size_t di = 0; di < depths.size(); ++di)
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:g}%</text>\n", x0 - 4,
                       top + int(di) * ch + ch / 2 + 4, 100 * depths[di]);
    s += "</g>\n";
  }
  s += fmt::format("<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">needle depth</text>\n",
                   top + ph / 2, top + ph / 2);
  // Colour scale.
  const int ly = top + ph + 50;
  for (int i = 0; i <= 10; ++i)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"12\" fill=\"{}\"/>\n", left + 90 + i * 16, ly,
                     colour(i / 10.0));
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">accuracy 0%</text>\n", left + 86, ly + 10);
  s += fmt::format("<text x=\"{}\" y=\"{}\">100%</text>\n", left + 90 + 11 * 16 + 4, ly + 10);
  s += "</svg>\n";
  return s;
}

}  // namespace ttt::niah
