// ttt-perplexity: per-token losses of a TTT-E2E model on documents, with
// test-time training on (the default) or off, on any OpenCL device; a report
// for people (stdout), JSON and SVG for programs.
#include "apps/app.hpp"
#include "ttt/device.hpp"
#include "ttt/error.hpp"
#include "apps/documents.hpp"
#include "apps/corpus.hpp"
#include "apps/evaluate.hpp"
#include "apps/journal.hpp"
#include "apps/mpi_shard.hpp"
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

ttt::mpi::World* g_world = nullptr;  // set by main

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
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr; 0 gives exactly the --no-ttt numbers")
      ("compare", po::bool_switch(), "evaluate every document with and without test-time training and report both side by side")
      ("max-tokens", po::value<size_t>(), "use only the first N tokens of each document")
      ("tokenizer", po::value<std::string>(), "tokenizer.json or tokenizer.model for -f, instead of the one in the model directory")
      ("parse-special", po::bool_switch(), "turn special-token strings in text (e.g. <|eot_id|>) into their ids; by default they are plain text")
      ("nll-out", po::value<std::string>(), "write one natural-log NLL per predicted token, one per line, documents in order (T-1 lines for T tokens)")
      ("json", po::value<std::string>(), "write the whole report as JSON: settings, device, timing, per document, per position bucket")
      ("plot", po::value<std::string>(), "draw mean loss against token position as an SVG (both curves with --compare)")
      ("save-weights", po::value<std::string>(), "write a model directory whose prime MLP weights are those adapted at the end of the (last) document")
      ("jsonl", po::value<std::string>(), "JSON Lines corpus: one document per line, its text in --field")
      ("field", po::value<std::string>()->default_value("text"), "the --jsonl field that holds the text")
      ("parallel", po::value<int>()->default_value(1), "documents evaluated at once on the device (a batched session; each keeps its own state)")
      ("journal", po::value<std::string>(), "append each finished document's NLLs to this file as soon as it is scored (fsync'ed)")
      ("resume", po::bool_switch(), "continue the --journal: skip the documents already in it and report them from it")
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
  const bool ttt_on = !vm["no-ttt"].as<bool>(), compare = vm["compare"].as<bool>();
  if (compare && !ttt_on) throw ttt::Error("--compare already runs without test-time training; drop --no-ttt");
  if (vm.count("save-weights") && !ttt_on)
    throw ttt::Error("--save-weights needs test-time training on (without it the prime weights never change)");
  if (vm.count("file") + vm.count("tokens") + vm.count("jsonl") != 1)
    throw ttt::Error("give the documents with -f TEXT_FILE, --tokens IDS_FILE or --jsonl FILE (one of the three)");
  if (vm.count("tokenizer") && vm.count("tokens"))
    throw ttt::Error("--tokenizer reads text documents (-f, --jsonl); --tokens are ids already");
  ttt::mpi::World& world = *g_world;
  const int parallel = vm["parallel"].as<int>();
  if (parallel < 1 || parallel > 4096) throw ttt::Error("--parallel must be in 1..4096");
  if (vm.count("save-weights") && (parallel > 1 || world.size() > 1))
    throw ttt::Error("--save-weights keeps the weights adapted by the last document: use it without --parallel and MPI");
  if (vm["resume"].as<bool>() && !vm.count("journal")) throw ttt::Error("--resume continues a --journal FILE");

  const std::string model_dir = vm["model"].as<std::string>();
  ttt::Model model = ttt::Model::load(model_dir);
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-perplexity: warning: %s\n", w.c_str());
  const ttt::Config& cfg = model.config;

  std::vector<ttt::Document> docs;
  std::string tokenizer_name = "(token ids)";
  if (vm.count("file") || vm.count("jsonl")) {
    const ttt::Tokenizer tok = vm.count("tokenizer") ? ttt::Tokenizer::from_file(vm["tokenizer"].as<std::string>())
                                                     : ttt::Tokenizer::for_model(model_dir, cfg);
    if (tok.vocab_size() > cfg.vocab_size)
      throw ttt::Error(fmt::format("tokenizer {} has {} ids but the model's vocab_size is {}", tok.name(),
                                   tok.vocab_size(), cfg.vocab_size));
    tokenizer_name = tok.name();
    docs = vm.count("jsonl") ? ttt::load_jsonl_documents(vm["jsonl"].as<std::string>(), vm["field"].as<std::string>(),
                                                         tok, vm["parse-special"].as<bool>(), cfg.bos_token_id)
                             : ttt::load_text_documents(ttt::expand_paths(vm["file"].as<std::vector<std::string>>()),
                                                        tok, vm["parse-special"].as<bool>(), cfg.bos_token_id);
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

  const auto device = ttt::host::select_device(ttt::mpi::device_spec(world, vm["device"].as<std::string>()));
  ttt::host::Context ctx(device);
  ttt::EngineOptions eo;
  eo.ttt = ttt_on;
  if (vm.count("inner-lr")) eo.inner_lr = vm["inner-lr"].as<float>();
  const bool lead = world.rank() == 0;  // rank 0 alone reports
  if (lead) fmt::print("ttt-perplexity: {} document{}, {} tokens to score, on {}\n", docs.size(), docs.size() == 1 ? "" : "s",
             total, device.label());
  std::fflush(stdout);

  ttt::ReportInput rep;
  rep.compare = compare;
  rep.settings = {model_dir, device.name, tokenizer_name, ttt_on, 0.f, cfg.mini_batch_size, cfg.sliding_window_size, {}};
  for (const auto& d : docs) rep.docs.push_back({d.name, {}, {}, 0, 0});
  ttt::Progress progress(total * (compare ? 2 : 1), "progress",
                         vm["quiet"].as<bool>() || !lead ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto);
  size_t done = 0;
  // The journal (rank 0's): what it already holds is reported from it and not evaluated again.
  std::unique_ptr<ttt::Journal> journal;
  if (lead && vm.count("journal")) {
    const std::string options = fmt::format("ttt={} inner_lr={} compare={}", ttt_on,
                                            eo.inner_lr.value_or(cfg.inner_lr), compare);
    const std::string fp = ttt::hex64(ttt::model_fingerprint(model_dir)) + "-" +
                           ttt::hex64(ttt::fnv1a(options.data(), options.size()));
    journal = std::make_unique<ttt::Journal>(vm["journal"].as<std::string>(), fp, vm["resume"].as<bool>());
    if (journal->had_torn_line())
      std::fprintf(stderr, "ttt-perplexity: %s: ignored a torn last line (a run was interrupted while writing it)\n",
                   vm["journal"].as<std::string>().c_str());
  }
  std::vector<std::string> hashes;
  for (const auto& d : docs) hashes.push_back(ttt::tokens_hash(d.tokens));
  auto record = [&](bool base, size_t i, std::vector<float> nll, double seconds) {
    if (journal) journal->append({i, base, docs[i].name, hashes[i], seconds, nll});
    (base ? rep.docs[i].nll_base : rep.docs[i].nll) = std::move(nll);
    (base ? rep.docs[i].seconds_base : rep.docs[i].seconds) = seconds;
  };
  auto pass = [&](ttt::Engine& engine, bool base) {
    std::vector<size_t> todo;
    for (size_t i = 0; i < docs.size(); ++i) {
      const ttt::JournalRecord* rp = nullptr;
      if (journal) {
        const auto it = journal->done().find({i, base});
        if (it != journal->done().end()) rp = &it->second;
      }
      if (rp) {
        const ttt::JournalRecord& r = *rp;
        if (r.name != docs[i].name || r.tokens_hash != hashes[i] || r.nll.size() + 1 != docs[i].tokens.size())
          throw ttt::Error(fmt::format("{}: document {} is {} in the journal but {} now (other tokens); use a new "
                                       "journal",
                                       vm["journal"].as<std::string>(), i, r.name, docs[i].name));
        (base ? rep.docs[i].nll_base : rep.docs[i].nll) = r.nll;
        (base ? rep.docs[i].seconds_base : rep.docs[i].seconds) = r.seconds;
        progress.update(done += r.nll.size());
      } else {
        todo.push_back(i);
      }
    }
    auto sched = ttt::mpi::make_scheduler(world, std::move(todo), [&](size_t i, std::vector<float> nll, double s,
                                                                      bool remote) {
      if (remote) progress.update(done += nll.size());
      record(base, i, std::move(nll), s);
    });
    ttt::evaluate_pass(engine, docs, parallel, *sched, [&](size_t n) { progress.update(done += n); });
    world.barrier();
  };
  const auto t0 = Clock::now();
  {
    ttt::Engine engine(ctx, model, eo);  // compiles or loads the kernels before the clock of each document starts
    rep.settings.inner_lr = engine.inner_lr();
    pass(engine, false);
    if (vm.count("save-weights")) engine.download_prime(model);
  }
  if (compare) {
    eo.ttt = false;
    ttt::Engine base(ctx, model, eo);
    pass(base, true);
  }
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  progress.finish();
  if (!lead) return 0;

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
    // The adapted model reads text like the original: take its tokenizer along (the --tokenizer one if given).
    namespace fs = std::filesystem;
    if (vm.count("tokenizer")) {
      const fs::path tok = vm["tokenizer"].as<std::string>();
      fs::copy_file(tok, fs::path(out) / (tok.extension() == ".json" ? "tokenizer.json" : "tokenizer.model"),
                    fs::copy_options::overwrite_existing);
    } else {
      for (const char* name : {"tokenizer.json", "tokenizer.model"})
        if (fs::exists(fs::path(model_dir) / name))
          fs::copy_file(fs::path(model_dir) / name, fs::path(out) / name, fs::copy_options::overwrite_existing);
    }
    fmt::print("adapted weights written to {}\n", out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ttt::mpi::World world(argc, argv);
  g_world = &world;
  const int rc = ttt::app::run("ttt-perplexity", argc, argv, body);
  if (rc != 0 && world.size() > 1) world.abort(rc);  // the other ranks would wait for this one forever
  return rc;
}
