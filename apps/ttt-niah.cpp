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
#include "lib/eval/niah.hpp"
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
using ttt::niah::Cell;
using ttt::niah::kNeedles;
using ttt::niah::Needle;
using ttt::niah::Prompt;

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
      ("json", po::value<std::string>(), "write the settings and the accuracy of every mode, needle, context and depth as JSON; an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("plot", po::value<std::string>(), "draw the accuracy as an SVG heat map of context against depth, one panel per mode; an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("verbose,v", po::bool_switch(), "print every prompt (as text, the haystack abridged), its answer and the reply on stderr")
      ("quiet,q", po::bool_switch(), "no progress on stderr");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  ttt::app::add_head_tiles_option(opts);
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
  ttt::EngineOptions eo;  // usage errors in the storage flags before the model loads
  eo.weight_dtype = ttt::app::weight_dtype(vm);
  eo.kv_dtype = ttt::app::kv_dtype(vm);
  eo.head_tiles = ttt::app::head_tiles(vm);
  const uint64_t seed = vm["seed"].as<uint64_t>();
  const bool quiet = vm["quiet"].as<bool>();
  if (vm.count("inner-lr") && std::find(modes.begin(), modes.end(), ttt::Mode::ttt) == modes.end())
    throw Usage("--inner-lr needs test-time training: --modes has no ttt");
  const std::string model_dir = vm["model"].as<std::string>();
  ttt::app::Paths()
      .model("-m", model_dir)
      .input(vm, "haystack")
      .input(vm, "tokenizer")
      .report(vm, "json", ttt::app::json_format("a JSON record of ttt-niah"))
      .report(vm, "plot", ttt::app::svg_format())
      .check();

  const ttt::Model model = ttt::Model::load(model_dir, ttt::Weights::deferred);  // read as each engine uploads
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-niah: warning: %s\n", w.c_str());
  const ttt::Config& cfg = model.config;
  const ttt::Tokenizer tok = vm.count("tokenizer") ? ttt::app::tokenizer_for(vm["tokenizer"].as<std::string>(), cfg)
                                                  : ttt::Tokenizer::for_model(model_dir, cfg);
  const std::string haystack_name = vm.count("haystack") ? vm["haystack"].as<std::string>() : "built-in filler";
  const std::string haystack = vm.count("haystack") ? ttt::app::read_text(vm["haystack"].as<std::string>(), "--haystack")
                                                    : std::string(ttt::niah::kFiller);
  const ttt::niah::PromptBuilder builder(tok, haystack, cfg.bos_token_id);
  if (builder.empty()) throw Usage(fmt::format("--haystack {}: no text to hide a needle in", haystack_name));
  int answer_max = 0;
  for (const Needle& n : needles) {
    const int need = builder.overhead(n) + 8;
    if (contexts.front() < need)
      throw Usage(fmt::format("--contexts: {} tokens do not hold the S-NIAH-{} prompt with a haystack; give at least {}",
                              contexts.front(), n.id, need));
    std::mt19937_64 probe(0);
    answer_max = std::max(answer_max, int(tok.encode(" " + ttt::niah::needle_value(n.id, probe)).size()) + 4);
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
            std::mt19937_64 rng(ttt::niah::prompt_seed(seed, n.id, context, depth, t));
            
            Prompt p = builder.make(n, context, depth, rng);
            ttt::check_token_ids(p.ids, cfg.vocab_size, fmt::format("the S-NIAH-{} prompt", n.id));
            total_tokens += p.ids.size() + size_t(p.answer_tokens);
            items.push_back({cells.size() - 1, std::move(p)});
          }
        }

  ttt::Runtime rt(ttt::app::device_spec(vm));
  const ttt::Device& device = rt.device();
  ttt::app::announce_compiles(rt, "ttt-niah");
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
      c.correct += ttt::niah::is_answer(reply, p.answer);
      if (vm["verbose"].as<bool>()) {
        const std::string text = tok.decode(p.ids);
        const std::string shown = text.size() <= 400 ? text : text.substr(0, 200) + " [...] " + text.substr(text.size() - 200);
        const size_t at = text.find(p.answer);
        std::fprintf(stderr, "\n[%s S-NIAH-%d context %d depth %g, needle at byte %zu of %zu] %s\n  answer %s, reply '%s': %s\n",
                     ttt::mode_name(m), c.needle, c.context, c.depth, at, text.size(), shown.c_str(), p.answer.c_str(),
                     reply.c_str(), ttt::niah::is_answer(reply, p.answer) ? "correct" : "wrong");
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
    json j = {{"written_by", ttt::app::written_by()},
              {"model", model_dir},
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
              {"weight_dtype", ttt::app::dtype_flag(eo.weight_dtype.value_or(model.dtype))},
              {"kv_dtype", ttt::app::dtype_flag(eo.kv_dtype)},
              {"partial", interrupted()},
              {"seconds", seconds},
              {"results", results}};
    ttt::app::write_output(vm["json"].as<std::string>(), j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (vm.count("plot"))
    ttt::app::write_output(vm["plot"].as<std::string>(),
                           ttt::app::svg_signed(ttt::niah::heat_map_svg(
                               cells, modes, contexts, depths,
                               fmt::format("S-NIAH accuracy: {} (needle {}, {} trials)", model_dir,
                                           vm["needle"].as<std::string>(), trials))));
  return interrupted() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-niah", argc, argv, body); }
