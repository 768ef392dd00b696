// ttt-perplexity: per-token losses of a TTT-E2E model on documents, with
// test-time training on (the default) or off, on any OpenCL device; a report
// for people (stdout), JSON and SVG for programs.
#include "apps/app.hpp"
#include "ttt/device.hpp"
#include "ttt/error.hpp"
#include "apps/documents.hpp"
#include "ttt/engine.hpp"
#include "lib/report/progress.hpp"
#include "ttt/report.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

namespace {

using Clock = std::chrono::steady_clock;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) throw ttt::Error(fmt::format("{}: cannot write", path));
}

// Evaluates every document with one engine; fills nll (or nll_base) and seconds.
void run_pass(ttt::Engine& engine, const std::vector<ttt::Document>& docs, std::vector<ttt::DocResult>& out,
              bool base, ttt::Progress& progress, size_t& done) {
  for (size_t i = 0; i < docs.size(); ++i) {
    const auto t0 = Clock::now();
    const size_t before = done;
    auto nll = engine.evaluate(docs[i].tokens, [&](size_t d, size_t) { progress.update(before + d); });
    done = before + nll.size();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (base) {
      out[i].nll_base = std::move(nll);
      out[i].seconds_base = s;
    } else {
      out[i].nll = std::move(nll);
      out[i].seconds = s;
    }
  }
}

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "model directory (config.json + model.safetensors [+ tokenizer])")
      ("file,f", po::value<std::vector<std::string>>()->composing(),
       "text document to tokenise with the model's tokenizer (BOS prepended when the model has one); repeat it, or "
       "name a directory, for several documents, each evaluated from a fresh state")
      ("tokens", po::value<std::vector<std::string>>()->composing(),
       "token-id document instead of text: whitespace-separated decimal ids, or a .npy array of int32, uint32, int64 "
       "or uint16; repeatable")
      ("no-ttt", po::bool_switch(), "turn test-time training off (a plain sliding-window Transformer)")
      ("full-attention", po::bool_switch(), "full attention over each whole document (the key/value cache grows with it), no test-time training: the prefill baseline")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr; 0 gives exactly the --no-ttt numbers")
      ("compare", po::bool_switch(), "evaluate every document with and without test-time training and report both side by side")
      ("max-tokens", po::value<size_t>(), "use only the first N tokens of each document")
      ("parse-special", po::bool_switch(), "turn special-token strings in text (e.g. <|eot_id|>) into their ids; by default they are plain text")
      ("nll-out", po::value<std::string>(), "write one natural-log NLL per predicted token, one per line, documents in order (T-1 lines for T tokens)")
      ("json", po::value<std::string>(), "write the whole report as JSON: settings, device, timing, per document, per position bucket")
      ("plot", po::value<std::string>(), "draw mean loss against token position as an SVG (both curves with --compare)")
      ("save-weights", po::value<std::string>(), "write a model directory whose prime MLP weights are those adapted at the end of the (last) document")
      ("quiet,q", po::bool_switch(), "no progress display")
      ("device,d", po::value<std::string>()->default_value(""), "OpenCL device: P:D indices or part of its name (default: $TTT_DEVICE, else the first GPU, else the first device; see ttt-info)");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-perplexity -m MODEL_DIR (-f TEXT... | --tokens IDS...) [options]",
                       "Evaluates a TTT-E2E model on documents and reports the per-token loss, the mean NLL, the\n"
                       "perplexity with its standard error (PPL = x +/- err, as llama.cpp computes it) and the mean\n"
                       "loss by token position. With test-time training on (the default) the model takes one\n"
                       "clipped SGD step on its prime MLPs after every full mini-batch of B tokens, so later tokens\n"
                       "are predicted by weights that learned from the earlier ones: the gain grows with position.\n"
                       "The window W and mini-batch B are properties of the trained model and cannot be changed."))
    return 0;
  const bool full = vm["full-attention"].as<bool>();
  const bool ttt_on = !vm["no-ttt"].as<bool>() && !full, compare = vm["compare"].as<bool>();
  if (full && (compare || vm.count("save-weights") || vm.count("inner-lr")))
    throw ttt::Error("--full-attention turns test-time training off; it does not combine with --compare, --save-weights or --inner-lr");
  if (compare && !ttt_on) throw ttt::Error("--compare already runs without test-time training; drop --no-ttt");
  if (vm.count("save-weights") && !ttt_on)
    throw ttt::Error("--save-weights needs test-time training on (without it the prime weights never change)");
  if (vm.count("file") == vm.count("tokens"))
    throw ttt::Error("give the documents with -f TEXT_FILE or with --tokens IDS_FILE (one of the two)");

  const std::string model_dir = vm["model"].as<std::string>();
  ttt::Model model = ttt::Model::load(model_dir);
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-perplexity: warning: %s\n", w.c_str());
  const ttt::Config& cfg = model.config;

  std::vector<ttt::Document> docs;
  std::string tokenizer_name = "(token ids)";
  if (vm.count("file")) {
    const ttt::Tokenizer tok = ttt::Tokenizer::for_model(model_dir, cfg);
    tokenizer_name = tok.name();
    docs = ttt::load_text_documents(ttt::expand_paths(vm["file"].as<std::vector<std::string>>()), tok,
                                    vm["parse-special"].as<bool>(), cfg.bos_token_id);
  } else {
    docs = ttt::load_token_documents(ttt::expand_paths(vm["tokens"].as<std::vector<std::string>>()));
  }
  size_t total = 0;
  for (auto& d : docs) {
    if (vm.count("max-tokens") && vm["max-tokens"].as<size_t>() < d.tokens.size())
      d.tokens.resize(vm["max-tokens"].as<size_t>());
    ttt::check_token_ids(d.tokens, cfg.vocab_size, d.name);
    if (d.tokens.size() < 2)
      throw ttt::Error(fmt::format("{}: a document needs at least 2 tokens to score, got {}", d.name, d.tokens.size()));
    total += d.tokens.size() - 1;
  }

  const auto device = ttt::host::select_device(vm["device"].as<std::string>());
  ttt::host::Context ctx(device);
  ttt::EngineOptions eo;
  eo.ttt = ttt_on;
  if (vm.count("inner-lr")) eo.inner_lr = vm["inner-lr"].as<float>();
  if (full) {
    size_t longest = 0;
    for (const auto& d : docs) longest = std::max(longest, d.tokens.size());
    if (longest > size_t(INT32_MAX / 2)) throw ttt::Error("--full-attention: a document is too long");
    eo.window = std::max(int(longest), cfg.sliding_window_size);
  }
  fmt::print("ttt-perplexity: {} document{}, {} tokens to score, on {}\n", docs.size(), docs.size() == 1 ? "" : "s",
             total, device.label());
  std::fflush(stdout);

  ttt::ReportInput rep;
  rep.compare = compare;
  rep.settings = {model_dir, device.name, tokenizer_name, ttt_on, 0.f, cfg.mini_batch_size,
                  eo.window ? eo.window : cfg.sliding_window_size, {}};
  for (const auto& d : docs) rep.docs.push_back({d.name, {}, {}, 0, 0});
  ttt::Progress progress(total * (compare ? 2 : 1), "progress",
                         vm["quiet"].as<bool>() ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto);
  size_t done = 0;
  const auto t0 = Clock::now();
  {
    ttt::Engine engine(ctx, model, eo);  // compiles or loads the kernels before the clock of each document starts
    rep.settings.inner_lr = engine.inner_lr();
    run_pass(engine, docs, rep.docs, false, progress, done);
    if (vm.count("save-weights")) engine.download_prime(model);
  }
  if (compare) {
    eo.ttt = false;
    ttt::Engine base(ctx, model, eo);
    run_pass(base, docs, rep.docs, true, progress, done);
  }
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  progress.finish();

  std::fputs(ttt::format_report(rep).c_str(), stdout);
  if (vm.count("nll-out")) {
    std::string text;
    for (const auto& d : rep.docs)
      for (float v : d.nll) text += fmt::format("{:.9g}\n", v);
    write_file(vm["nll-out"].as<std::string>(), text);
  }
  if (vm.count("json")) write_file(vm["json"].as<std::string>(), ttt::report_json(rep).dump(2) + "\n");
  if (vm.count("plot")) write_file(vm["plot"].as<std::string>(), ttt::render_svg(rep));
  if (vm.count("save-weights")) {
    const std::string out = vm["save-weights"].as<std::string>();
    model.save(out);
    // The adapted model reads text like the original: take its tokenizer along.
    namespace fs = std::filesystem;
    for (const char* name : {"tokenizer.json", "tokenizer.model"})
      if (fs::exists(fs::path(model_dir) / name))
        fs::copy_file(fs::path(model_dir) / name, fs::path(out) / name, fs::copy_options::overwrite_existing);
    fmt::print("adapted weights written to {}\n", out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-perplexity", argc, argv, body); }
