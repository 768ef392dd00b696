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
#include "ttt/output.hpp"
#include "ttt/tokenizer.hpp"
#include "host/program.hpp"
#include "host/runtime.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <sstream>

namespace {

using Clock = std::chrono::steady_clock;

// Time spent scoring only: model loading, kernel compilation and warm-up stay
// outside, so the progress display and the report show one and the same rate.
class Stopwatch {
 public:
  void start() { since_ = Clock::now(); }
  void stop() {
    total_ += std::chrono::duration<double>(Clock::now() - *since_).count();
    since_.reset();
  }
  double seconds() const {
    return total_ + (since_ ? std::chrono::duration<double>(Clock::now() - *since_).count() : 0.0);
  }

 private:
  double total_ = 0;
  std::optional<Clock::time_point> since_;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f) throw ttt::Error(fmt::format("{}: cannot read", path));
  return ss.str();
}

// After a cold kernel cache, one short untimed document: some drivers (PoCL)
// finish compiling each kernel at its first launch, which would otherwise be
// counted in the throughput of the first real document.
void warm_up(ttt::Engine& engine, int vocab) {
  std::vector<int32_t> t(size_t(2 * engine.config().mini_batch_size + 2));
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t(i % size_t(vocab));
  engine.session().evaluate(t);
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
      ("full-attention", po::bool_switch(), "full attention over each whole document (the key/value cache grows with it), no test-time training: the prefill baseline")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr; 0 gives exactly the --no-ttt numbers")
      ("compare", po::bool_switch(), "evaluate every document with and without test-time training and report both side by side")
      ("max-tokens", po::value<int64_t>(), "use only the first N tokens of each document (N >= 2)")
      ("tokenizer", po::value<std::string>(), "tokenizer.json or tokenizer.model for -f, instead of the one in the model directory")
      ("parse-special", po::bool_switch(), "turn special-token strings in text (e.g. <|eot_id|>) into their ids; by default they are plain text")
      ("nll-out", po::value<std::string>(), "write one natural-log NLL per predicted token, one per line, documents in order (T-1 lines for T tokens)")
      ("json", po::value<std::string>(), "write the whole report as JSON: settings, device, timing, per document, per position bucket")
      ("plot", po::value<std::string>(), "draw mean loss against token position as an SVG (both curves with --compare)")
      ("save-weights", po::value<std::string>(), "write a model directory whose prime MLP weights are those adapted at the end of the (last) document; never the input model's directory, nor a non-empty one without --force")
      ("force", po::bool_switch(), "let --save-weights write into a non-empty directory")
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
  // Options and output paths first: a bad one must fail now, not after hours of evaluation.
  const size_t max_tokens = vm.count("max-tokens") ? size_t(ttt::app::int_option(vm, "max-tokens", 2)) : SIZE_MAX;
  const std::optional<float> inner_lr =
      vm.count("inner-lr") ? std::optional(ttt::app::nonneg_float_option(vm, "inner-lr")) : std::nullopt;
  const bool full = vm["full-attention"].as<bool>();
  const bool ttt_on = !vm["no-ttt"].as<bool>() && !full, compare = vm["compare"].as<bool>();
  if (full && (compare || vm.count("save-weights") || vm.count("inner-lr")))
    throw ttt::Error("--full-attention turns test-time training off; it does not combine with --compare, --save-weights or --inner-lr");
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
  for (const char* flag : {"nll-out", "json", "plot"})
    if (vm.count(flag)) ttt::check_output_file(vm[flag].as<std::string>(), std::string("--") + flag);
  if (vm.count("save-weights"))
    ttt::check_output_dir(vm["save-weights"].as<std::string>(), "--save-weights", vm["force"].as<bool>(), {model_dir});
  // One process: Ctrl-C keeps what was scored. Under MPI the default stays (mpirun
  // ends every rank); the --journal is what keeps an MPI run's work.
  if (world.size() == 1) ttt::app::catch_interrupts("ttt-perplexity");

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
    if (max_tokens < d.tokens.size()) d.tokens.resize(max_tokens);
    ttt::check_token_ids(d.tokens, cfg.vocab_size, d.name);
    if (d.tokens.size() < 2)
      throw ttt::Error(fmt::format("{}: a document needs at least 2 tokens to score, got {}", d.name, d.tokens.size()));
    total += d.tokens.size() - 1;
  }

  ttt::Runtime rt(ttt::mpi::device_spec(world, vm["device"].as<std::string>()));
  const ttt::Device& device = rt.device();
  ttt::app::announce_compiles(rt, "ttt-perplexity");
  ttt::EngineOptions eo;
  eo.ttt = ttt_on;
  eo.inner_lr = inner_lr;
  if (full) {
    size_t longest = 0;
    for (const auto& d : docs) longest = std::max(longest, d.tokens.size());
    if (longest > size_t(INT32_MAX / 2)) throw ttt::Error("--full-attention: a document is too long");
    eo.window = std::max(int(longest), cfg.sliding_window_size);
  }
  const bool lead = world.rank() == 0;  // rank 0 alone reports
  // Everything but the report goes to stderr, so `> report.txt` holds the report alone.
  if (lead)
    std::fprintf(stderr, "ttt-perplexity: %zu document%s, %zu tokens to score, on %s\n", docs.size(),
                 docs.size() == 1 ? "" : "s", total, device.label().c_str());

  ttt::ReportInput rep;
  rep.compare = compare;
  rep.settings = {model_dir, device.name, tokenizer_name, ttt_on, 0.f, cfg.mini_batch_size,
                  eo.window ? eo.window : cfg.sliding_window_size, {}};
  for (const auto& d : docs) rep.docs.push_back({d.name, {}, {}, 0, 0});
  Stopwatch clock;
  ttt::Progress progress(total * (compare ? 2 : 1), "progress",
                         vm["quiet"].as<bool>() || !lead ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto,
                         stderr, [&] { return clock.seconds(); });
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
  // One pass over the documents, with (base = false) or without test-time
  // training. Returns false when an interrupt cut it short.
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
    clock.start();
    ttt::PassEnd end = ttt::evaluate_pass(
        engine, {.ttt = !base && ttt_on, .inner_lr = std::nullopt}, docs, parallel, *sched,
        [&](size_t n) { progress.update(done += n); }, [] { return ttt::app::interrupted() != 0; });
    clock.stop();
    world.barrier();
    if (end.doc) {  // the scored prefix of the document the interrupt came in: reported, never journaled
      (base ? rep.docs[*end.doc].nll_base : rep.docs[*end.doc].nll) = std::move(end.nll);
      (base ? rep.docs[*end.doc].seconds_base : rep.docs[*end.doc].seconds) = end.seconds;
    }
    return !end.interrupted;
  };
  // One engine holds the weights (uploaded once, kernels compiled or loaded
  // before the clock of the first document starts); the run with test-time
  // training and the --compare run without it are two sessions on it.
  bool complete = true, base_started = false;
  ttt::Engine engine(rt, model, eo);
  if (ttt::host::context(rt).programs().built_from_source() > 0) warm_up(engine, cfg.vocab_size);
  rep.settings.inner_lr = engine.inner_lr();
  complete = pass(engine, false);
  if (complete && vm.count("save-weights")) engine.session().download_prime(model);
  if (compare && complete && !ttt::app::interrupted()) {
    base_started = true;
    complete = pass(engine, true);
  }
  rep.seconds = clock.seconds();
  complete = complete && (!compare || base_started);
  if (complete) progress.finish();  // an interrupted run ends with its own line below, not with "done"
  if (!lead) return 0;

  // The NLL file holds every NLL of the main run that was scored; an
  // interrupted run says so in a last comment line (numpy.loadtxt skips it).
  std::string nll_text;
  size_t scored = 0;
  for (const auto& d : rep.docs) {
    scored += d.nll.size();
    for (float v : d.nll) nll_text += fmt::format("{:.9g}\n", v);
  }
  if (!complete) {
    nll_text += fmt::format("# partial: {} of {} tokens scored (interrupted)\n", scored, total);
    rep.partial = true;
    rep.documents_planned = docs.size();
    rep.tokens_planned = total;
    // Compare only what both runs scored; without any run without TTT there is nothing to compare.
    if (compare && !base_started) {
      rep.compare = false;
    } else if (compare) {
      for (auto& d : rep.docs) d.nll.resize(std::min(d.nll.size(), d.nll_base.size()));
    }
    std::erase_if(rep.docs, [](const ttt::DocResult& d) { return d.nll.empty(); });
    for (auto& d : rep.docs)
      if (!rep.compare) d.nll_base.clear();
  }


  std::fputs(ttt::format_report(rep).c_str(), stdout);
  std::fflush(stdout);
  if (vm.count("nll-out")) ttt::write_file_atomic(vm["nll-out"].as<std::string>(), nll_text);
  if (vm.count("json")) ttt::write_file_atomic(vm["json"].as<std::string>(), ttt::report_json(rep).dump(2) + "\n");
  if (vm.count("plot")) ttt::write_file_atomic(vm["plot"].as<std::string>(), ttt::render_svg(rep));
  if (!complete) {
    if (vm.count("save-weights"))
      std::fprintf(stderr, "ttt-perplexity: --save-weights skipped: the documents were not all read\n");
    std::fprintf(stderr, "ttt-perplexity: interrupted: partial results written (%zu of %zu tokens scored)\n", scored,
                 total);
    return 130;  // as for Ctrl-C, whichever of SIGINT or SIGTERM stopped it: "interrupted, results kept"
  }
  if (vm.count("save-weights")) {
    const std::string out = vm["save-weights"].as<std::string>();
    model.save(out);
    // The adapted model reads text like the original: take its tokenizer along (the --tokenizer one if given).
    namespace fs = std::filesystem;
    if (vm.count("tokenizer")) {
      const fs::path tok = vm["tokenizer"].as<std::string>();
      ttt::write_file_atomic((fs::path(out) / (tok.extension() == ".json" ? "tokenizer.json" : "tokenizer.model")).string(),
                             read_file(tok.string()));
    } else {
      for (const char* name : {"tokenizer.json", "tokenizer.model"})
        if (fs::exists(fs::path(model_dir) / name))
          ttt::write_file_atomic((fs::path(out) / name).string(), read_file((fs::path(model_dir) / name).string()));
    }
    std::fprintf(stderr, "ttt-perplexity: adapted weights written to %s\n", out.c_str());
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
