// ttt-perplexity: per-token losses of a TTT-E2E model on documents, with
// test-time training on (the default) or off, on any OpenCL device; a report
// for people (stdout), JSON and SVG for programs. The options are read here;
// the work (documents, passes, journal, MPI, the report) is lib/eval's.
#include "apps/app.hpp"
#include "host/program.hpp"
#include "lib/eval/corpus.hpp"
#include "lib/eval/corpus_run.hpp"
#include "lib/eval/journal.hpp"
#include "lib/eval/kld.hpp"
#include "lib/eval/modes.hpp"
#include "lib/eval/mpi_shard.hpp"
#include "lib/generate/session_file.hpp"
#include "lib/report/progress.hpp"
#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/report.hpp"
#include "host/runtime.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace po = ttt::app::po;

ttt::mpi::World* g_world = nullptr;  // set by main

// The --nll-out file's first line says what it holds, after the signature that lets a later run replace it.
constexpr const char* kNllAbout = "one natural-log NLL per predicted token, one per line, documents in order";

po::options_description options() {
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "model directory (config.json + model.safetensors [+ tokenizer])")
      ("file,f", po::value<std::vector<std::string>>()->composing(),
       "text document to tokenise with the model's tokenizer (BOS prepended when the model has one), - for standard "
       "input; repeat it, or name a directory (its files, except hidden ones and tool outputs: .nll, .json, .jsonl, "
       ".svg, .journal, .partial, and files whose first line is '# written by ttt-...'), for several documents, each evaluated from a fresh state")
      ("tokens", po::value<std::vector<std::string>>()->composing(),
       "token-id document instead of text: whitespace-separated decimal ids, or a .npy array of int32, uint32, int64 "
       "or uint16; repeatable")
      ("no-ttt", po::bool_switch(), "turn test-time training off (a plain sliding-window Transformer)")
      ("full-attention", po::bool_switch(), "full attention over each whole document (the key/value cache grows with it), no test-time training: the prefill baseline")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr; 0 gives exactly the --no-ttt numbers")
      ("compare", po::value<std::string>()->implicit_value("ttt,swa"),
       "score every document in each of these modes and report them side by side: ttt (test-time training), swa "
       "(the same sliding window without it), full (full attention over the whole document, no test-time training); "
       "a comma-separated list, alone ttt,swa. With full, the report, JSON and plot add each mode's difference to "
       "full attention (the paper's Fig. 6)")
      ("ctx", po::value<int64_t>(), "cut each document into disjoint windows of exactly N tokens (a shorter tail is dropped), each scored from a fresh state as its own document: the official evaluation's windows")
      ("chunks", po::value<int64_t>(), "with --ctx: score at most K windows (the first K of the corpus)")
      ("max-tokens", po::value<int64_t>(), "use only the first N tokens of each document (N >= 2)")
      ("tokenizer", po::value<std::string>(), "tokenizer.json or tokenizer.model for -f, instead of the one in the model directory")
      ("parse-special", po::bool_switch(), "turn special-token strings in text (e.g. <|eot_id|>) into their ids; by default they are plain text")
      ("nll-out", po::value<std::string>(), "write one natural-log NLL per predicted token, one per line, documents in order (T-1 lines for T tokens), after a first line \"# written by ttt-perplexity VERSION ...\" (np.loadtxt skips it); an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("json", po::value<std::string>(), "write the whole report as JSON: settings, device, timing, per document, per position bucket; an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("plot", po::value<std::string>(), "draw mean loss against token position as an SVG (both curves with --compare); an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("save-weights", po::value<std::string>(), "write a model directory whose prime MLP weights are those adapted at the end of the (last) document; never the input model's directory, nor a non-empty one without --force")
      ("save-session", po::value<std::string>(),
       "write the session at the end of the (last) document to FILE: its tokens, position, key/value rings and "
       "adapted prime weights, so that ttt-generate --load-session FILE continues the document (same model, "
       "options and storage); an existing FILE is replaced only if it is a session file (or empty)")
      ("force", po::bool_switch(),
       "let --save-weights write into a directory that is not empty: its config.json, model.safetensors and "
       "tokenizer file are replaced, other files are left as they are; the input model's directory is refused even so")
      ("jsonl", po::value<std::string>(), "JSON Lines corpus: one document per line, its text in --field")
      ("field", po::value<std::string>()->default_value("text"), "the --jsonl field that holds the text")
      ("parallel", po::value<int>()->default_value(1), "documents evaluated at once on the device (a batched session; each keeps its own state)")
      ("kl-divergence-base", po::value<std::string>(),
       "write every predicted token's log-probabilities over the whole vocabulary to FILE (16 + 2V bytes a token, "
       "as llama.cpp's llama-perplexity stores them), a base for --kl-divergence; with --kl-divergence, the base to read. "
       "An existing FILE is replaced only if it is such a base (or empty)")
      ("kl-divergence", po::bool_switch(),
       "compare this run with the --kl-divergence-base FILE of the same documents: mean KL divergence with its error "
       "and percentiles, the change of the target token's probability (mean and RMS dp, percentiles) and how often "
       "the most likely token is the same (e.g. --no-ttt against a base made with test-time training)")
      ("journal", po::value<std::string>(), "append each finished document's NLLs to this file as soon as it is scored (fsync'ed); an existing journal is "
       "only ever appended to, with --resume, and any other existing file refused")
      ("resume", po::bool_switch(), "continue the --journal: skip the documents already in it and report them from it")
      ("quiet,q", po::bool_switch(), "no progress display");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  ttt::app::add_head_tiles_option(opts);
  return opts;
}

constexpr const char* kUsage = "ttt-perplexity -m MODEL_DIR (-f TEXT... | --tokens IDS...) [options]";
constexpr const char* kAbout =
    "Evaluates a TTT-E2E model on documents and reports the per-token loss, the mean NLL, the\n"
    "perplexity with its standard error (PPL = x +/- err, as llama.cpp computes it) and the mean\n"
    "loss by token position. With test-time training on (the default) the model takes one\n"
    "clipped SGD step on its prime MLPs after every full mini-batch of B tokens, so later tokens\n"
    "are predicted by weights that learned from the earlier ones: the gain grows with position.\n"
    "The window W and mini-batch B are properties of the trained model and cannot be changed.";

// What the options ask for, checked.
struct Args {
  std::string model_dir, device;
  ttt::CorpusSpec corpus;
  bool ttt = true, no_ttt = false, full = false, quiet = false, resume = false, force = false;
  std::optional<std::string> compare;  // the --compare list as given
  std::vector<ttt::Mode> modes;        // the passes, the main one first
  std::optional<float> inner_lr;
  std::optional<ttt::DType> weight_dtype;  // nullopt: the file's
  ttt::DType kv_dtype = ttt::DType::F32;
  bool head_tiles = false;
  int parallel = 1;
  std::optional<std::string> journal, nll_out, json, plot, save_weights;
  std::optional<std::string> kld_base, save_session;  // --kl-divergence-base: written, or read with --kl-divergence
  bool kld = false;
};

std::optional<std::string> given(const po::variables_map& vm, const char* flag) {
  return vm.count(flag) ? std::optional(vm[flag].as<std::string>()) : std::nullopt;
}

std::vector<std::string> given_list(const po::variables_map& vm, const char* flag) {
  return vm.count(flag) ? vm[flag].as<std::vector<std::string>>() : std::vector<std::string>{};
}

// The options as they are given; a value out of range is a usage error naming its flag.
Args read_args(const po::variables_map& vm) {
  Args a;
  a.model_dir = vm["model"].as<std::string>();
  a.device = ttt::app::device_spec(vm);
  if (vm.count("max-tokens")) a.corpus.max_tokens = size_t(ttt::app::int_option(vm, "max-tokens", 2));
  if (vm.count("inner-lr")) a.inner_lr = ttt::app::nonneg_float_option(vm, "inner-lr");
  a.full = vm["full-attention"].as<bool>();
  a.weight_dtype = ttt::app::weight_dtype(vm);
  a.kv_dtype = ttt::app::kv_dtype(vm);
  a.head_tiles = ttt::app::head_tiles(vm);
  a.no_ttt = vm["no-ttt"].as<bool>();
  a.ttt = !a.no_ttt && !a.full;
  a.compare = given(vm, "compare");
  if (a.compare) {
    try {
      a.modes = ttt::parse_modes(*a.compare);
    } catch (const ttt::Error& e) {
      throw ttt::app::UsageError(e.what());
    }
    a.ttt = a.ttt && a.modes[0] == ttt::Mode::ttt;  // the sliding-window engine trains only for a ttt pass
  } else {
    a.modes = {a.full ? ttt::Mode::full : a.ttt ? ttt::Mode::ttt : ttt::Mode::swa};
  }
  if (vm.count("ctx")) a.corpus.window_tokens = size_t(ttt::app::int_option(vm, "ctx", 2));
  if (vm.count("chunks")) a.corpus.max_windows = size_t(ttt::app::int_option(vm, "chunks", 1));
  a.parallel = vm["parallel"].as<int>();
  a.corpus.text = given_list(vm, "file");
  a.corpus.tokens = given_list(vm, "tokens");
  a.corpus.jsonl = given(vm, "jsonl");
  a.corpus.field = vm["field"].as<std::string>();
  a.corpus.tokenizer = given(vm, "tokenizer");
  a.corpus.parse_special = vm["parse-special"].as<bool>();
  a.journal = given(vm, "journal");
  a.resume = vm["resume"].as<bool>();
  a.nll_out = given(vm, "nll-out");
  a.json = given(vm, "json");
  a.plot = given(vm, "plot");
  a.save_weights = given(vm, "save-weights");
  a.force = vm["force"].as<bool>();
  a.kld_base = given(vm, "kl-divergence-base");
  a.kld = vm["kl-divergence"].as<bool>();
  a.save_session = given(vm, "save-session");
  a.quiet = vm["quiet"].as<bool>();
  return a;
}

// Options that do not combine.
void check_args(const Args& a, const ttt::mpi::World& world) {
  using Usage = ttt::app::UsageError;
  if (a.full && (a.compare || a.save_weights || a.inner_lr))
    throw Usage("--full-attention turns test-time training off; it does not combine with --compare (use --compare "
                "ttt,full), --save-weights or --inner-lr");
  if (a.compare && a.no_ttt) throw Usage("--compare already runs without test-time training; drop --no-ttt");
  if (a.save_weights && a.modes[0] != ttt::Mode::ttt)
    throw Usage("--save-weights keeps the weights test-time training adapted: --compare needs ttt among its modes");
  if (a.corpus.max_windows != SIZE_MAX && a.corpus.window_tokens == 0)
    throw Usage("--chunks counts the windows of --ctx N; give --ctx too");
  if (a.save_weights && !a.ttt)
    throw Usage("--save-weights needs test-time training on (without it the prime weights never change)");
  if (int(!a.corpus.text.empty()) + int(!a.corpus.tokens.empty()) + int(a.corpus.jsonl.has_value()) != 1)
    throw Usage("give the documents with -f TEXT_FILE, --tokens IDS_FILE or --jsonl FILE (one of the three)");
  if (a.corpus.tokenizer && !a.corpus.tokens.empty())
    throw Usage("--tokenizer reads text documents (-f, --jsonl); --tokens are ids already");
  if (a.parallel < 1 || a.parallel > 4096) throw Usage("--parallel must be in 1..4096");
  if (a.save_weights && (a.parallel > 1 || world.size() > 1))
    throw Usage("--save-weights keeps the weights adapted by the last document: use it without --parallel and MPI");
  if (a.resume && !a.journal) throw Usage("--resume continues a --journal FILE");
  if (a.save_session && (a.parallel > 1 || world.size() > 1 || a.resume))
    throw Usage("--save-session keeps the state of the last document as it is scored: use it without --parallel, MPI "
                "and --resume");
  if (a.save_session && a.modes[0] == ttt::Mode::full)
    throw Usage("--save-session keeps a sliding-window session; full attention's cache is sized for one run");
  if (a.kld && !a.kld_base) throw Usage("--kl-divergence compares with a base: give --kl-divergence-base FILE");
  if (a.kld_base && (a.parallel > 1 || world.size() > 1))
    throw Usage("--kl-divergence-base reads every token's logits one document at a time: use it without --parallel "
                "and MPI");
  if (a.kld_base && a.resume)
    throw Usage("--kl-divergence-base needs every token's logits, and documents taken from a --journal with --resume "
                "have none: use it without --resume");
}

// Output paths before any work: a bad one must fail now, not after hours of evaluation.
// No output may replace an input or another output; each must be writable.
void check_outputs(const Args& a, const po::variables_map& vm) {
  ttt::app::Paths paths;
  paths.model("-m", a.model_dir).input(vm, "tokenizer").input(vm, "jsonl");
  if (std::count(a.corpus.text.begin(), a.corpus.text.end(), "-") > 1)
    throw ttt::app::UsageError("-f - given twice: standard input can be read once");
  for (const auto& [flag, given] : {std::pair{"-f", &a.corpus.text}, std::pair{"--tokens", &a.corpus.tokens}}) {
    if (given->empty()) continue;
    std::vector<std::string> skipped;
    paths.inputs(flag, ttt::expand_paths(*given, &skipped));
    if (!skipped.empty())
      std::fprintf(stderr, "ttt-perplexity: %s: skipped %s (tool outputs, not documents)\n", flag,
                   fmt::format("{}", fmt::join(skipped, ", ")).c_str());
  }
  paths.report(vm, "nll-out", ttt::app::commented_format("an NLL file of ttt-perplexity"))
      .report(vm, "json", ttt::app::json_format("a JSON report of ttt-perplexity"))
      .report(vm, "plot", ttt::app::svg_format())
      .output(vm, "journal");  // the journal refuses any file but its own, or appends to it (--resume)
  if (a.save_session) paths.output("--save-session", *a.save_session, ttt::session_file_format());
  if (a.kld_base) {
    if (a.kld)
      paths.input("--kl-divergence-base", *a.kld_base);
    else
      paths.output("--kl-divergence-base", *a.kld_base, ttt::kld_format());
  }
  if (a.save_weights)
    paths.output_dir("--save-weights", *a.save_weights,
                     {"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model"}, a.force);
  paths.check();
}

ttt::Model load_model(const std::string& dir) {
  // Deferred: the engines read the weights from the file as they upload them (no host copy
  // stays beside the device's); --save-weights reads them again when it writes.
  ttt::Model model = ttt::Model::load(dir, ttt::Weights::deferred);
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-perplexity: warning: %s\n", w.c_str());
  return model;
}

// The run's engine options; each mode derives its own from them (lib/eval/modes.hpp).
ttt::EngineOptions engine_options(const Args& a) {
  ttt::EngineOptions eo;
  eo.ttt = a.ttt;
  eo.inner_lr = a.inner_lr;
  eo.weight_dtype = a.weight_dtype;
  eo.kv_dtype = a.kv_dtype;
  eo.head_tiles = a.head_tiles;
  return eo;
}

// Rank 0's journal: what it already holds is reported from it and not evaluated again.
std::unique_ptr<ttt::Journal> open_journal(const Args& a, const ttt::Model& model) {
  const std::string cut = a.corpus.window_tokens
                              ? fmt::format("ctx={} chunks={}", a.corpus.window_tokens, a.corpus.max_windows)
                              : std::string();
  // Another storage type gives other numbers: a journal of bf16 weights or f16 keys and values is its own.
  const ttt::DType weights = a.weight_dtype.value_or(model.dtype);
  const std::string storage = weights == ttt::DType::F32 && a.kv_dtype == ttt::DType::F32
                                  ? std::string()
                                  : fmt::format("weights={} kv={}", ttt::dtype_flag(weights), ttt::dtype_flag(a.kv_dtype));
  const std::string fp = ttt::journal_fingerprint(a.model_dir, a.ttt, a.inner_lr.value_or(model.config.inner_lr),
                                                  ttt::modes_text(a.modes), cut, storage);
  auto journal = std::make_unique<ttt::Journal>(*a.journal, fp, a.resume);
  if (journal->had_torn_line())
    std::fprintf(stderr, "ttt-perplexity: %s: ignored a torn last line (a run was interrupted while writing it)\n",
                 a.journal->c_str());
  return journal;
}

// --kl-divergence-base: the file this run writes, or (--kl-divergence) the base it is compared with.
struct Kld {
  std::optional<ttt::KldWriter> writer;
  std::optional<ttt::KldComparer> comparer;
  ttt::LogitRows rows() {
    if (writer) return [this](size_t doc, size_t pos, int32_t, std::span<const float> l) { writer->row(doc, pos, l); };
    if (comparer)
      return [this](size_t doc, size_t pos, int32_t t, std::span<const float> l) { comparer->row(doc, pos, t, l); };
    return {};
  }
};

// Before any work: a base of other documents, vocabulary or token count is refused now.
void open_kld(Kld& k, const Args& a, const ttt::Corpus& corpus, const ttt::Config& cfg) {
  if (!a.kld_base) return;
  const ttt::KldHeader h = ttt::kld_header(corpus.docs, cfg.vocab_size, ttt::model_fingerprint(a.model_dir));
  if (a.kld) {
    k.comparer.emplace(*a.kld_base, h);
    if (k.comparer->other_model())
      std::fprintf(stderr, "ttt-perplexity: note: %s was made with other model files than %s\n", a.kld_base->c_str(),
                   a.model_dir.c_str());
  } else {
    k.writer.emplace(*a.kld_base, h);
  }
}

// --save-session: the main pass's last document as a Decoder would have saved it, and what a session must match.
struct KeptSession {
  std::optional<ttt::Decoder::Saved> saved;
  ttt::SessionKey key;
};

// The report on stdout (alone there: `> report.txt` holds it), then the files asked for.
void write_outputs(const Args& a, const ttt::CorpusResults& r) {
  std::fputs(ttt::format_report(r.report).c_str(), stdout);
  std::fflush(stdout);
  if (a.nll_out) ttt::app::write_output(*a.nll_out, ttt::app::comment_header(kNllAbout) + r.nll_text);
  if (a.json) {
    nlohmann::json j = ttt::report_json(r.report);
    j["written_by"] = ttt::app::written_by();
    ttt::app::write_output(*a.json, j.dump(2) + "\n");
  }
  if (a.plot) ttt::app::write_output(*a.plot, ttt::app::svg_signed(ttt::render_svg(r.report)));
}

// The last words on stderr and the exit code; a whole run saves the adapted weights.
int finish(const Args& a, const ttt::CorpusResults& r, const ttt::Model& model, Kld& kld, const KeptSession& kept) {
  if (!r.complete) {
    if (a.save_session)
      std::fprintf(stderr, "ttt-perplexity: --save-session not written: the documents were not all read\n");
    if (kld.writer)
      std::fprintf(stderr, "ttt-perplexity: --kl-divergence-base not written: the documents were not all read\n");
    if (a.save_weights)
      std::fprintf(stderr, "ttt-perplexity: --save-weights skipped: the documents were not all read\n");
    std::fprintf(stderr, "ttt-perplexity: interrupted: partial results written (%zu of %zu tokens scored)\n", r.scored,
                 r.planned);
    return 130;  // as for Ctrl-C, whichever of SIGINT or SIGTERM stopped it: "interrupted, results kept"
  }
  if (a.save_weights) {
    // The adapted model reads text like the original: its tokenizer goes along (the --tokenizer one if given).
    ttt::save_adapted_model(model, *a.save_weights, a.model_dir, a.corpus.tokenizer);
    std::fprintf(stderr, "ttt-perplexity: adapted weights written to %s\n", a.save_weights->c_str());
  }
  if (a.save_session) {
    if (!kept.saved) throw ttt::Error("--save-session: no document was scored in this run");
    ttt::save_session_file(*a.save_session, kept.key, *kept.saved);
    std::fprintf(stderr, "ttt-perplexity: session of %zu tokens written to %s\n", kept.saved->tokens.size(),
                 a.save_session->c_str());
  }
  if (kld.writer) {
    kld.writer->commit();
    std::fprintf(stderr, "ttt-perplexity: KL-divergence base of %zu tokens written to %s\n", r.scored,
                 a.kld_base->c_str());
  }
  return 0;
}

// Scores the corpus on every rank, with a progress display and the journal on
// rank 0. Returns rank 0's results; nothing on the other ranks.
std::optional<ttt::CorpusResults> evaluate(const Args& a, const ttt::Corpus& corpus, ttt::Runtime& rt,
                                           const ttt::EngineOptions& eo, ttt::Model& model,
                                           const ttt::mpi::World& world, Kld& kld, KeptSession& kept) {
  const bool lead = world.rank() == 0;  // rank 0 alone reports
  ttt::DocumentEnd document_end;
  if (a.save_session)
    document_end = [&](size_t doc, ttt::Session& s) {
      if (doc + 1 == corpus.docs.size()) kept.saved = ttt::Decoder::scored(s, corpus.docs[doc].tokens);
    };
  ttt::CorpusRun run(corpus, {.modes = a.modes, .parallel = a.parallel, .rows = kld.rows(), .document_end = document_end},
                     world);
  ttt::Progress progress(run.tokens_to_score(), "progress",
                         a.quiet || !lead ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto, stderr,
                         [&] { return run.seconds(); });
  run.stop_when([] { return ttt::app::interrupted() != 0; });
  const auto journal = lead && a.journal ? open_journal(a, model) : nullptr;
  run.set_journal(journal.get());
  if (journal && a.resume)
    for (const std::string& r : run.renamed())
      std::fprintf(stderr, "ttt-perplexity: warning: --resume: %s (the same tokens: taken from the journal)\n",
                   r.c_str());
  if (journal && a.resume && !a.quiet) {
    const auto [held, held_base] = run.journaled();
    std::fprintf(stderr, "ttt-perplexity: --resume: the journal %s already holds %zu of %zu documents%s; %s\n",
                 a.journal->c_str(), held, corpus.docs.size(),
                 a.modes.size() > 1 ? fmt::format(" ({} in every other mode)", held_base).c_str() : "",
                 held == corpus.docs.size() && (a.modes.size() < 2 || held_base == corpus.docs.size())
                     ? "nothing is left to score"
                     : "scoring the rest");
  }
  // One engine holds the weights (uploaded once, kernels compiled or loaded
  // before the clock of the first document starts); the run with test-time
  // training and the one without it are two sessions on it. Full attention
  // has its own engine (a window as long as the longest document), made when its pass comes.
  std::optional<ttt::Engine> sliding, full;
  auto engine_for = [&](ttt::Mode m) -> ttt::Engine& {
    std::optional<ttt::Engine>& slot = ttt::own_engine(m) ? full : sliding;
    if (!slot) {
      slot.emplace(rt, model, ttt::mode_engine_options(m, eo, corpus, model.config));
      if (ttt::host::context(rt).programs().built_from_source() > 0) ttt::warm_up(*slot);
    }
    return *slot;
  };
  ttt::Engine& main = engine_for(a.modes[0]);
  // Started once the kernels are built (their own lines say enough).
  ttt::app::DeviceProgress shown(progress, rt);
  run.on_progress([&](size_t done) { shown.update(done); });
  const bool complete = run.run(engine_for, ttt::report_settings(main, a.model_dir, corpus.tokenizer),
                                a.save_weights ? &model : nullptr);
  if (complete) progress.finish();  // an interrupted run ends with its own line below, not with "done"
  if (!lead) return std::nullopt;
  return run.results();
}

int body(int argc, char** argv) {
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, options(), vm, kUsage, kAbout)) return 0;
  ttt::mpi::World& world = *g_world;
  const Args a = read_args(vm);
  check_args(a, world);
  check_outputs(a, vm);
  // One process: Ctrl-C keeps what was scored. Under MPI the default stays (mpirun
  // ends every rank); the --journal is what keeps an MPI run's work.
  if (world.size() == 1) ttt::app::catch_interrupts("ttt-perplexity");

  ttt::Model model = load_model(a.model_dir);
  const ttt::Corpus corpus = ttt::collect_corpus(a.corpus, a.model_dir, model.config);
  Kld kld;
  open_kld(kld, a, corpus, model.config);
  ttt::Runtime rt(ttt::mpi::device_spec(world, a.device));
  const ttt::Device& device = rt.device();
  ttt::app::announce_compiles(rt, "ttt-perplexity");
  const ttt::EngineOptions eo = engine_options(a);
  // Everything but the report goes to stderr, so `> report.txt` holds the report alone.
  if (world.rank() == 0)
    std::fprintf(stderr, "ttt-perplexity: %zu document%s, %zu token%s to score, %s, %s, on %s\n", corpus.docs.size(),
                 corpus.docs.size() == 1 ? "" : "s", corpus.tokens, corpus.tokens == 1 ? "" : "s",
                 ttt::app::weight_label(a.weight_dtype, model.dtype).c_str(), ttt::app::kv_label(a.kv_dtype).c_str(),
                 device.label().c_str());

  KeptSession kept;
  kept.key = {ttt::model_fingerprint(a.model_dir), a.ttt && model.config.num_prime_blocks() > 0,
              a.inner_lr.value_or(model.config.inner_lr), model.config.sliding_window_size,
              model.config.mini_batch_size, model.config.vocab_size, a.weight_dtype.value_or(model.dtype), a.kv_dtype};
  std::optional<ttt::CorpusResults> results = evaluate(a, corpus, rt, eo, model, world, kld, kept);
  if (!results) return 0;
  if (kld.comparer) results->report.kld = kld.comparer->summary();
  write_outputs(a, *results);
  return finish(a, *results, model, kld, kept);
}

}  // namespace

int main(int argc, char** argv) {
  ttt::mpi::World world(argc, argv);
  g_world = &world;
  const int rc = ttt::app::run("ttt-perplexity", argc, argv, body);
  if (rc != 0 && world.size() > 1) world.abort(rc);  // the other ranks would wait for this one forever
  return rc;
}
