// ttt-niah: single-needle retrieval in the style of RULER (S-NIAH-1..3). A
// needle (a pass key, a number or a UUID) is hidden at a given depth of a
// haystack of filler text that fills a given context (whole sentences, up to it), then the model is asked
// for it; its greedy continuation of "... The pass key is" is scored by exact
// match. With test-time training the model takes its steps as it reads the
// prompt, exactly as ttt-generate does. One accuracy per mode, needle, context
// and depth, as JSON and as an SVG heat map of context against depth.
#include "apps/app.hpp"
#include "lib/eval/corpus.hpp"
#include "lib/eval/modes.hpp"
#include "lib/report/progress.hpp"
#include "ttt/decode.hpp"
#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/sampling.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <sstream>

namespace {

using Usage = ttt::app::UsageError;

// RULER's noise haystack: the same few sentences over and over.
constexpr const char* kFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

struct Needle {
  int id;             // 1, 2, 3 (S-NIAH-1..3)
  const char* thing;  // what the question asks for
};
constexpr Needle kNeedles[] = {{1, "pass key"}, {2, "magic number"}, {3, "magic uuid"}};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  return out;
}

std::vector<int> parse_contexts(const std::string& s) {
  std::vector<int> out;
  for (const auto& w : split_list(s)) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size() || v < 2 || v > (1 << 30))
      throw Usage(fmt::format("--contexts: '{}' is not a token count (an integer from 2 to 2^30)", w));
    if (std::find(out.begin(), out.end(), int(v)) == out.end()) out.push_back(int(v));
  }
  if (out.empty()) throw Usage("--contexts: give a comma-separated list of token counts, e.g. 1024,2048");
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> parse_depths(const std::string& s) {
  std::vector<double> out;
  for (const auto& w : split_list(s)) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size() || !(v >= 0 && v <= 1))
      throw Usage(fmt::format("--depths: '{}' is not a fraction from 0 to 1", w));
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  if (out.empty()) throw Usage("--depths: give a comma-separated list of fractions from 0 to 1, e.g. 0,0.5,1");
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Needle> parse_needles(const std::string& s) {
  if (s == "all") return {std::begin(kNeedles), std::end(kNeedles)};
  std::vector<Needle> out;
  for (const auto& w : split_list(s)) {
    if (w != "1" && w != "2" && w != "3") throw Usage(fmt::format("--needle: '{}' is not 1, 2, 3 or all", w));
    const Needle n = kNeedles[w[0] - '1'];
    if (std::none_of(out.begin(), out.end(), [&](const Needle& o) { return o.id == n.id; })) out.push_back(n);
  }
  if (out.empty()) throw Usage("--needle: give 1, 2, 3 or all");
  std::sort(out.begin(), out.end(), [](const Needle& a, const Needle& b) { return a.id < b.id; });
  return out;
}

// The haystack as sentences (each with its trailing whitespace), so a needle
// goes in between two sentences, never inside one.
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

// Deterministic per (seed, needle, context, depth, trial), the same in every mode.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
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

struct Prompt {
  std::vector<int32_t> ids;
  std::string answer;
  int answer_tokens = 0;
};

class Builder {
 public:
  Builder(const ttt::Tokenizer& tok, const std::string& haystack, int bos) : tok_(tok), bos_(bos) {
    for (const auto& s : sentences(haystack)) {
      auto ids = tok.encode(s);
      if (!ids.empty()) hay_.push_back(std::move(ids));
    }
  }
  bool empty() const { return hay_.empty(); }

  std::string needle_text(const Needle& n, const std::string& v) const {
    return n.id == 1 ? fmt::format("The pass key is {}. Remember it. {} is the pass key. ", v, v)
                     : fmt::format("The {} is {}. Remember it. ", n.thing, v);
  }
  std::string prefix(const Needle& n) const {
    return fmt::format("A {} is hidden in this text. Remember it.\n", n.thing);
  }
  std::string question(const Needle& n) const { return fmt::format("\nWhat is the {}? The {} is", n.thing, n.thing); }

  // The fixed part of a prompt (all but the haystack), in tokens.
  int overhead(const Needle& n) const {
    const std::string v = n.id == 3 ? "00000000-0000-4000-8000-000000000000" : n.id == 2 ? "1000000" : "10000";
    return int((bos_ >= 0) + tok_.encode(prefix(n)).size() + tok_.encode(needle_text(n, v)).size() +
               tok_.encode(question(n)).size());
  }

  Prompt make(const Needle& n, int context, double depth, std::mt19937_64& rng) const {
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

 private:
  const ttt::Tokenizer& tok_;
  int bos_;
  std::vector<std::vector<int32_t>> hay_;
};

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

struct Cell {
  ttt::Mode mode;
  int needle, context;
  double depth;
  int trials = 0, correct = 0;
  int64_t prompt_tokens = 0;  // of its prompts together
};

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Red (0) through yellow to green (1).
std::string colour(double a) {
  a = std::clamp(a, 0.0, 1.0);
  const int r = a < 0.5 ? 215 : int(215 - (a - 0.5) * 2 * (215 - 26));
  const int g = a < 0.5 ? int(48 + a * 2 * (200 - 48)) : int(200 - (a - 0.5) * 2 * (200 - 150));
  const int b = a < 0.5 ? 39 : int(39 + (a - 0.5) * 2 * (80 - 39));
  return fmt::format("#{:02x}{:02x}{:02x}", r, g, b);
}

// One panel per mode: contexts across, depths down (0 at the top), each cell
// the accuracy over every needle and trial, as colour and as a number.
std::string render_svg(const std::vector<Cell>& cells, const std::vector<ttt::Mode>& modes,
                       const std::vector<int>& contexts, const std::vector<double>& depths, const std::string& title) {
  const int cw = 56, ch = 28, left = 64, top = 58, gap = 40;
  const int pw = cw * int(contexts.size()), ph = ch * int(depths.size());
  const int width = left + int(modes.size()) * (pw + gap) + 20, height = top + ph + 90;
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
      width, height, width, height, left, esc(title));
  for (size_t m = 0; m < modes.size(); ++m) {
    const int x0 = left + int(m) * (pw + gap);
    s += fmt::format("<g class=\"panel\" id=\"{}\">\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                     ttt::mode_name(modes[m]), x0 + pw / 2, top - 22, esc(ttt::mode_label(modes[m])));
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
            x, y, cw, ch, n ? colour(acc) : "#dddddd", ttt::mode_name(modes[m]), contexts[ci], depths[di], k, n,
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

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "model directory (config.json + model.safetensors [+ tokenizer])")
      ("contexts", po::value<std::string>()->default_value("1024,2048,4096"),
       "prompt lengths in tokens, a comma-separated list (each prompt is filled with haystack up to it)")
      ("depths", po::value<std::string>()->default_value("0,0.25,0.5,0.75,1"),
       "where the needle goes, as fractions of the haystack (0: its start, 1: its end), a comma-separated list")
      ("trials", po::value<int64_t>()->default_value(4), "prompts per needle, context and depth (each with its own value)")
      ("needle", po::value<std::string>()->default_value("all"),
       "1 (S-NIAH-1: a pass key), 2 (S-NIAH-2: a 7-digit number), 3 (S-NIAH-3: a UUID), a list of them, or all")
      ("modes", po::value<std::string>()->default_value("ttt"),
       "run in each of these modes: ttt (test-time training), swa (the same sliding window without it), full (full "
       "attention over the prompt); a comma-separated list")
      ("haystack", po::value<std::string>()->value_name("FILE"),
       "a text file to hide the needle in (repeated as needed), instead of the built-in filler sentences")
      ("tokenizer", po::value<std::string>()->value_name("FILE"),
       "tokenizer.json or tokenizer.model, instead of the one in the model directory")
      ("seed", po::value<uint64_t>()->default_value(0), "seed of the needle values and haystack offsets: the same seed gives the same prompts")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr")
      ("json", po::value<std::string>(), "write the settings and the accuracy of every mode, needle, context and depth as JSON")
      ("plot", po::value<std::string>(), "draw the accuracy as an SVG heat map of context against depth, one panel per mode")
      ("verbose,v", po::bool_switch(), "print every prompt (as text, the haystack abridged), its answer and the reply on stderr")
      ("quiet,q", po::bool_switch(), "no progress on stderr");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm,
                       "ttt-niah -m MODEL_DIR [--contexts 1024,2048] [--depths 0,0.5,1] [--trials 4] [--needle all] "
                       "[--modes ttt,swa,full] [--json FILE] [--plot FILE]",
                       "Single-needle retrieval in the style of RULER (S-NIAH-1, -2, -3). A needle (a pass key, a\n"
                       "number or a UUID) is hidden at each depth of a haystack of filler text that fills each\n"
                       "context, and the model is asked for it: its greedy continuation of \"The pass key is\", as\n"
                       "many tokens as the answer has, counts as correct when it equals the answer (whitespace\n"
                       "trimmed). With test-time training the model takes its steps as it reads the prompt. The\n"
                       "needle values and positions come from --seed, the same in every mode. Ctrl-C stops after\n"
                       "the current prompt and writes the cells completed so far (exit status 130)."))
    return 0;
  const std::vector<int> contexts = parse_contexts(vm["contexts"].as<std::string>());
  const std::vector<double> depths = parse_depths(vm["depths"].as<std::string>());
  const std::vector<Needle> needles = parse_needles(vm["needle"].as<std::string>());
  std::vector<ttt::Mode> modes;
  try {
    modes = ttt::parse_modes(vm["modes"].as<std::string>(), "--modes");
  } catch (const ttt::Error& e) {
    throw Usage(e.what());
  }
  const int trials = int(ttt::app::int_option(vm, "trials", 1, 1 << 20));
  const uint64_t seed = vm["seed"].as<uint64_t>();
  const bool quiet = vm["quiet"].as<bool>();
  if (vm.count("inner-lr") && std::find(modes.begin(), modes.end(), ttt::Mode::ttt) == modes.end())
    throw Usage("--inner-lr needs test-time training: --modes has no ttt");
  const std::string model_dir = vm["model"].as<std::string>();
  ttt::app::Paths()
      .model("-m", model_dir)
      .input(vm, "haystack")
      .input(vm, "tokenizer")
      .report(vm, "json")
      .report(vm, "plot")
      .check();

  const ttt::Model model = ttt::Model::load(model_dir, ttt::Weights::deferred);  // read as each engine uploads
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-niah: warning: %s\n", w.c_str());
  const ttt::Config& cfg = model.config;
  const ttt::Tokenizer tok = vm.count("tokenizer") ? ttt::app::tokenizer_for(vm["tokenizer"].as<std::string>(), cfg)
                                                  : ttt::Tokenizer::for_model(model_dir, cfg);
  const std::string haystack_name = vm.count("haystack") ? vm["haystack"].as<std::string>() : "built-in filler";
  const std::string haystack = vm.count("haystack") ? ttt::app::read_text(vm["haystack"].as<std::string>(), "--haystack")
                                                    : std::string(kFiller);
  const Builder builder(tok, haystack, cfg.bos_token_id);
  if (builder.empty()) throw Usage(fmt::format("--haystack {}: no text to hide a needle in", haystack_name));
  int answer_max = 0;
  for (const Needle& n : needles) {
    const int need = builder.overhead(n) + 8;
    if (contexts.front() < need)
      throw Usage(fmt::format("--contexts: {} tokens do not hold the S-NIAH-{} prompt with a haystack; give at least {}",
                              contexts.front(), n.id, need));
    std::mt19937_64 probe(0);
    answer_max = std::max(answer_max, int(tok.encode(" " + needle_value(n.id, probe)).size()) + 4);
  }
  // Every prompt, its tokens checked before any work: the same in every mode.
  struct Item {
    size_t cell;
    Prompt prompt;
  };
  std::vector<Cell> cells;
  std::vector<Item> items;
  size_t total_tokens = 0;
  for (const ttt::Mode m : modes)
    for (const Needle& n : needles)
      for (const int context : contexts)
        for (const double depth : depths) {
          cells.push_back({m, n.id, context, depth});
          for (int t = 0; t < trials; ++t) {
            const uint64_t h = mix(mix(mix(mix(seed) ^ uint64_t(n.id)) ^ uint64_t(context)) ^
                                   uint64_t(std::llround(depth * 1e6))) ^
                               uint64_t(t);
            std::mt19937_64 rng(h);
            Prompt p = builder.make(n, context, depth, rng);
            ttt::check_token_ids(p.ids, cfg.vocab_size, fmt::format("the S-NIAH-{} prompt", n.id));
            total_tokens += p.ids.size() + size_t(p.answer_tokens);
            items.push_back({cells.size() - 1, std::move(p)});
          }
        }

  ttt::Runtime rt(ttt::app::device_spec(vm));
  const ttt::Device& device = rt.device();
  ttt::app::announce_compiles(rt, "ttt-niah");
  ttt::EngineOptions eo;
  eo.weight_dtype = ttt::app::weight_dtype(vm);
  eo.kv_dtype = ttt::app::kv_dtype(vm);
  if (vm.count("inner-lr")) eo.inner_lr = vm["inner-lr"].as<float>();
  // Full attention's window: the longest prompt and its answer.
  ttt::Corpus longest;
  longest.docs.push_back({"niah", std::vector<int32_t>(size_t(contexts.back() + answer_max), 0), 0});
  ttt::app::catch_interrupts("ttt-niah", "stopping after the current prompt, then writing the cells completed");
  if (!quiet)
    std::fprintf(stderr,
                 "ttt-niah: %zu prompt%s (%s; contexts %d..%d; %zu depths; %d trials), modes %s, %s, %s, on %s\n",
                 items.size() / modes.size(), items.size() / modes.size() == 1 ? "" : "s",
                 vm["needle"].as<std::string>().c_str(), contexts.front(), contexts.back(),
                 depths.size(), trials, ttt::modes_text(modes).c_str(),
                 ttt::app::weight_label(eo.weight_dtype, model.dtype).c_str(), ttt::app::kv_label(eo.kv_dtype).c_str(),
                 device.label().c_str());

  auto interrupted = [] { return ttt::app::interrupted() != 0; };
  ttt::Progress progress(total_tokens, "ttt-niah", quiet ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto,
                         stderr);
  const auto t0 = std::chrono::steady_clock::now();
  size_t done_tokens = 0, item = 0;
  const size_t B = size_t(cfg.mini_batch_size);
  for (const ttt::Mode m : modes) {
    if (interrupted()) break;
    ttt::Engine engine(rt, model, ttt::mode_engine_options(m, eo, longest, cfg));
    // Greedy over the ids the tokenizer decodes (a model's vocabulary may be wider), and end-of-text.
    ttt::Sampler greedy({.vocab = tok.vocab_size(), .eos = cfg.eos_token_id});
    for (; item < items.size() && cells[items[item].cell].mode == m && !interrupted(); ++item) {
      const Prompt& p = items[item].prompt;
      ttt::Decoder dec(engine.session());
      for (size_t i = 0; i < p.ids.size() && !interrupted(); i += B) dec.append({p.ids.data() + i, std::min(B, p.ids.size() - i)});
      if (interrupted()) break;
      std::vector<int32_t> out;
      for (int k = 0; k < p.answer_tokens; ++k) {
        const int32_t id = greedy.sample(dec.logits(), {});
        if (id == cfg.eos_token_id) break;
        out.push_back(id);
        if (k + 1 < p.answer_tokens) dec.append({&id, 1});
      }
      Cell& c = cells[items[item].cell];
      c.trials += 1;
      c.prompt_tokens += int64_t(p.ids.size());
      const std::string reply = tok.decode(out);
      c.correct += trim(reply) == p.answer;
      if (vm["verbose"].as<bool>()) {
        const std::string text = tok.decode(p.ids);
        const std::string shown = text.size() <= 400 ? text : text.substr(0, 200) + " [...] " + text.substr(text.size() - 200);
        const size_t at = text.find(p.answer);
        std::fprintf(stderr, "\n[%s S-NIAH-%d context %d depth %g, needle at byte %zu of %zu] %s\n  answer %s, reply '%s': %s\n",
                     ttt::mode_name(m), c.needle, c.context, c.depth, at, text.size(), shown.c_str(), p.answer.c_str(),
                     reply.c_str(), trim(reply) == p.answer ? "correct" : "wrong");
      }
      done_tokens += p.ids.size() + size_t(p.answer_tokens);
      progress.update(done_tokens);
    }
  }
  size_t prompts_done = 0;
  for (const Cell& c : cells) prompts_done += size_t(c.trials);
  if (!interrupted())
    progress.finish();
  else
    std::fprintf(stderr, "\nttt-niah: interrupted after %zu of %zu prompts; the cells completed are written\n",
                 prompts_done, items.size());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  using json = nlohmann::json;
  json results = json::array();
  for (const Cell& c : cells) {
    if (c.trials < trials) continue;  // an interrupted cell is left out
    results.push_back({{"mode", ttt::mode_name(c.mode)},
                       {"needle", c.needle},
                       {"context", c.context},
                       {"depth", c.depth},
                       {"trials", c.trials},
                       {"correct", c.correct},
                       {"accuracy", double(c.correct) / c.trials},
                       {"prompt_tokens", (c.prompt_tokens + c.trials / 2) / c.trials}});  // per prompt
  }
  // The report on stdout: a row per mode, needle, context and depth completed.
  std::printf("%-5s %6s %8s %6s %7s %8s %9s %13s\n", "mode", "needle", "context", "depth", "trials", "correct",
              "accuracy", "prompt_tokens");
  for (const json& r : results)
    std::printf("%-5s %6d %8d %6g %7d %8d %8.1f%% %13lld\n", r["mode"].get<std::string>().c_str(),
                r["needle"].get<int>(), r["context"].get<int>(), r["depth"].get<double>(), r["trials"].get<int>(),
                r["correct"].get<int>(), 100.0 * r["accuracy"].get<double>(), r["prompt_tokens"].get<long long>());
  if (interrupted()) std::printf("INTERRUPTED: %zu of %zu prompts\n", prompts_done, items.size());
  std::fflush(stdout);
  if (!quiet) {
    std::fprintf(stderr, "ttt-niah: accuracy by mode (all needles, contexts and depths):");
    for (const ttt::Mode m : modes) {
      int n = 0, k = 0;
      for (const Cell& c : cells)
        if (c.mode == m) n += c.trials, k += c.correct;
      std::fprintf(stderr, " %s %s", ttt::mode_name(m), n ? fmt::format("{:.1f}%", 100.0 * k / n).c_str() : "-");
    }
    std::fprintf(stderr, "\n");
  }
  if (vm.count("json")) {
    std::vector<int> needle_ids;
    for (const Needle& n : needles) needle_ids.push_back(n.id);
    json j = {{"model", model_dir},
              {"device", device.name},
              {"tokenizer", tok.name()},
              {"haystack", haystack_name},
              {"modes", ttt::modes_text(modes)},
              {"needles", needle_ids},
              {"contexts", contexts},
              {"depths", depths},
              {"trials", trials},
              {"seed", seed},
              {"mini_batch", cfg.mini_batch_size},
              {"sliding_window", cfg.sliding_window_size},
              {"partial", interrupted()},
              {"seconds", seconds},
              {"results", results}};
    ttt::app::write_output(vm["json"].as<std::string>(), j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (vm.count("plot"))
    ttt::app::write_output(vm["plot"].as<std::string>(),
                           render_svg(cells, modes, contexts, depths,
                                      fmt::format("S-NIAH accuracy: {} (needle {}, {} trials)", model_dir,
                                                  vm["needle"].as<std::string>(), trials)));
  return interrupted() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-niah", argc, argv, body); }
