// ttt-train: trains a byte-level TTT-E2E model from scratch (or continues a
// checkpoint) on text files with AdamW: pretraining, or TTT-E2E's meta-learning
// objective (exact or first-order), with gradients from the double-precision
// reference (lib/reference/meta.hpp) or from the OpenCL engine (--gradient
// device, lib/engine/full_gradient.hpp; meta there for one prime block).
// Checkpoints are model directories.
#include "apps/app.hpp"
#include "lib/eval/documents.hpp"
#include "lib/report/progress.hpp"
#include "lib/train/eval.hpp"
#include "lib/train/trainer.hpp"
#include "ttt/device.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/params.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace po = ttt::app::po;
using ttt::app::UsageError;
using Clock = std::chrono::steady_clock;

// Every option that decides the numbers: a resumed run takes them from its checkpoint.
constexpr const char* kRunFlags[] = {"preset", "config", "mode", "batch", "seq-len", "lr", "end-lr", "warmup",
                                     "weight-decay", "clip", "ilr-init", "ilr-warmup", "seed"};

double finite_option(const po::variables_map& vm, const char* name, double min, bool open_min = false) {
  const double v = vm[name].as<double>();
  if (!std::isfinite(v) || v < min || (open_min && v == min))
    throw UsageError(fmt::format("--{} {}: must be a finite number {} {}", name, v, open_min ? ">" : ">=", min));
  return v;
}

// Files and directories (their files), every one of them there: a usage error names the first that is not.
std::vector<std::string> input_files(const po::variables_map& vm, const char* flag) {
  const auto paths = vm[flag].as<std::vector<std::string>>();
  for (const auto& p : paths)
    if (!fs::exists(p)) throw UsageError(fmt::format("--{} {}: no such file or directory", flag, p));
  try {
    std::vector<std::string> files = ttt::expand_paths(paths);
    for (auto& f : files) f = fs::absolute(f).lexically_normal().string();  // the checkpoint may resume elsewhere
    return files;
  } catch (const ttt::Error& e) {
    throw UsageError(fmt::format("--{}: {}", flag, e.what()));
  }
}

ttt::train::ByteCorpus load_corpus(const std::vector<std::string>& files, int seq_len, const char* flag) {
  ttt::train::ByteCorpus c = ttt::train::ByteCorpus::load(files, seq_len);
  if (c.docs.empty())
    throw UsageError(fmt::format("--{}: no document of --seq-len + 1 = {} bytes in {} file{} ({} bytes in all)", flag,
                                 seq_len + 1, files.size(), files.size() == 1 ? "" : "s", c.bytes));
  return c;
}

// One JSON object per line, flushed as written: the training log survives a crash up to its last line.
class Log {
 public:
  Log(const std::string& path, const std::vector<std::string>& keep) : path_(path), f_(std::fopen(path.c_str(), "w")) {
    if (!f_) throw ttt::Error(fmt::format("{}: cannot write", path));
    for (const auto& line : keep) write_line(line);
  }
  ~Log() {
    if (f_) std::fclose(f_);
  }
  void write(const nlohmann::ordered_json& j) { write_line(j.dump()); }

 private:
  void write_line(const std::string& s) {
    if (std::fprintf(f_, "%s\n", s.c_str()) < 0 || std::fflush(f_) != 0)
      throw ttt::Error(fmt::format("{}: write failed", path_));
  }
  std::string path_;
  std::FILE* f_;
};

// The log lines of a checkpoint's run up to its step, to continue it in the new output directory.
std::vector<std::string> log_until(const std::string& path, int64_t step) {
  std::vector<std::string> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("step", int64_t(0)) <= step) out.push_back(line);
    } catch (const nlohmann::json::exception&) {
      break;  // a torn last line: the run it ends was killed while writing it
    }
  }
  return out;
}

// Whether a log holds the held-out evaluation of `step`.
bool logged_eval(const std::vector<std::string>& log, int64_t step) {
  for (const std::string& line : log) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("step", int64_t(-1)) == step && j.contains("eval_nll_ttt")) return true;
  }
  return false;
}

int body(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()
      ("data", po::value<std::vector<std::string>>()->multitoken()->composing(),
       "training text files (or directories of them), read as bytes and cut into documents of --seq-len + 1 bytes; "
       "with --resume, the checkpoint's files by default")
      ("preset", po::value<std::string>(), "model configuration by name (ttt-make-model --help lists them; tiny-bytes is made for this tool)")
      ("config", po::value<std::string>(), "model configuration from a config.json instead of --preset")
      ("mode", po::value<std::string>(), "objective: pretrain (next-token NLL, no test-time step), meta (TTT-E2E: NLL after "
       "the test-time steps, gradient through them) or meta-fo (the same loss, first-order gradient)")
      ("steps", po::value<int64_t>(), "outer steps of the run; the learning-rate schedule spans them")
      ("out", po::value<std::string>(), "output directory: the model (config.json, model.safetensors), the optimiser "
       "state (optimizer.safetensors, trainer.json) and the log train.jsonl; refused if not empty unless --force, and "
       "never the --resume directory")
      ("resume", po::value<std::string>(), "continue the run checkpointed in DIR (an earlier --out) with its settings, "
       "bit for bit as if it had not stopped")
      ("until", po::value<int64_t>(), "stop after this step (checkpointed; --resume continues), default --steps")
      ("batch", po::value<int64_t>()->default_value(8), "documents per step (their gradients are averaged)")
      ("seq-len", po::value<int64_t>(), "tokens per document (default 8 mini-batches, as the official 8K pretraining with B = 1024); "
       "a multiple of the model's mini-batch B, or the tokens after the last full mini-batch take no test-time step")
      ("lr", po::value<double>()->default_value(3e-3, "3e-3"), "peak learning rate of AdamW (official 125M pretraining: 3e-3)")
      ("end-lr", po::value<double>()->default_value(1e-5, "1e-5"), "learning rate at the end of the cosine decay (official: 1e-5)")
      ("warmup", po::value<int64_t>(), "linear warm-up steps from 0 to --lr (default 10% of --steps, as the official configs)")
      ("weight-decay", po::value<double>()->default_value(0.1, "0.1"), "AdamW's decoupled weight decay, on the tensors the parameter table marks `decays`")
      ("clip", po::value<double>()->default_value(1.0), "clip the gradient to this global norm before the update (0: never)")
      ("ilr-init", po::value<double>()->default_value(0.1, "0.1"), "meta modes: inner learning rate at step 0, rising linearly to the config's inner_lr (official: 0.1)")
      ("ilr-warmup", po::value<int64_t>(), "meta modes: steps of that rise (default --warmup, as the official configs; 0: inner_lr throughout)")
      ("seed", po::value<int64_t>()->default_value(0), "seed of the initial weights and of the document order")
      ("eval-data", po::value<std::vector<std::string>>()->multitoken()->composing(),
       "held-out text files: every document of them is scored with and without test-time training; with --resume, "
       "the checkpoint's files by default")
      ("eval-every", po::value<int64_t>(), "evaluate on --eval-data every K steps (default: at the end only; with "
       "--resume, the checkpoint's)")
      ("checkpoint-every", po::value<int64_t>(), "write a checkpoint into --out every K steps (always: at the end and on Ctrl-C)")
      ("gradient", po::value<std::string>()->default_value("reference"), "where gradients are computed: reference (the CPU "
       "oracle, double precision, every mode) or device (the OpenCL engine, float32; every mode, meta for models with one "
       "prime block). Not kept by a checkpoint: give it again with --resume")
      ("threads", po::value<int64_t>(), "CPU threads for the reference gradients and the held-out evaluation (one "
       "document each; the result does not depend on it; default: all cores)")
      ("force", po::bool_switch(),
       "write into an --out that is not empty: its config.json, model.safetensors, optimizer.safetensors and "
       "trainer.json are replaced and train.jsonl is started afresh; other files are left as they are; the --resume "
       "directory is refused even so")
      ("quiet,q", po::bool_switch(), "no progress lines");
  ttt::app::add_device_option(opts, "with --gradient device");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm,
                       "ttt-train --data FILES... (--preset NAME | --config FILE) --mode pretrain|meta|meta-fo --steps N "
                       "--out DIR [options]\n       ttt-train --resume DIR --out DIR [options]",
                       "Trains a byte-level TTT-E2E model (config \"tokenizer\": \"bytes\") on text with AdamW: b1 0.9,\n"
                       "b2 0.95, eps 1e-8, decoupled weight decay, global-norm clipping, linear warm-up then cosine\n"
                       "decay, and in the meta modes the official inner learning-rate warm-up. Gradients come from the\n"
                       "double-precision reference on the CPU, or from the OpenCL device (--gradient device). Each step averages the gradients of --batch documents\n"
                       "drawn from the data in an order fixed by --seed. Progress goes to stderr, one JSON line per\n"
                       "step (and per evaluation) to OUT/train.jsonl. Ctrl-C finishes the step, writes a checkpoint\n"
                       "and exits with status 130; --resume continues it exactly."))
    return 0;

  // Options and paths first: a bad one fails now, not after hours of training.
  if (!vm.count("out")) throw UsageError("--out DIR is required");
  const std::string out = vm["out"].as<std::string>();
  const bool resume = vm.count("resume") > 0;
  if (resume) {
    for (const char* flag : kRunFlags)
      if (!vm[flag].defaulted() && vm.count(flag))
        throw UsageError(fmt::format("--{}: a resumed run keeps the settings of its checkpoint ({}); leave it out",
                                     flag, (fs::path(vm["resume"].as<std::string>()) / "trainer.json").string()));
  } else {
    if (!vm.count("data")) throw UsageError("--data FILES is required");
    if (vm.count("preset") + vm.count("config") != 1) throw UsageError("give the model as --preset NAME or --config FILE (one of the two)");
    if (!vm.count("mode")) throw UsageError("--mode is required: pretrain, meta or meta-fo");
    if (!vm.count("steps")) throw UsageError("--steps N is required");
  }
  std::optional<int64_t> steps;
  if (vm.count("steps")) steps = ttt::app::int_option(vm, "steps", 1);
  const int64_t threads = vm.count("threads") ? ttt::app::int_option(vm, "threads", 1, 1024)
                                              : int64_t(std::max(1u, std::thread::hardware_concurrency()));
  int64_t eval_every = vm.count("eval-every") ? ttt::app::int_option(vm, "eval-every", 1) : 0;
  const int64_t ck_every = vm.count("checkpoint-every") ? ttt::app::int_option(vm, "checkpoint-every", 1) : 0;
  if (eval_every && !vm.count("eval-data") && !resume) throw UsageError("--eval-every needs --eval-data FILES");
  std::vector<std::string> eval_files = vm.count("eval-data") ? input_files(vm, "eval-data") : std::vector<std::string>{};
  // No file of --out may be an input (with --force a data file there would be replaced).
  auto check_paths = [&](const std::vector<std::string>& data) {
    ttt::app::Paths paths;
    paths.inputs("--data", data).inputs("--eval-data", eval_files).input(vm, "config");
    if (resume) {
      paths.model("--resume", vm["resume"].as<std::string>());
      for (const char* f : {"optimizer.safetensors", "trainer.json", "train.jsonl"})
        paths.input("--resume", (fs::path(vm["resume"].as<std::string>()) / f).string());
    }
    paths.output_dir("--out", out, {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json",
                                    "train.jsonl"},
                     vm["force"].as<bool>());
    paths.check();
  };

  ttt::train::Checkpoint ck;
  std::vector<std::string> data_files;
  std::vector<std::string> kept_log;
  if (resume) {
    const std::string from = vm["resume"].as<std::string>();
    if (!fs::is_directory(from)) throw UsageError(fmt::format("--resume {}: no such directory", from));
    if (std::error_code ec; fs::equivalent(out, from, ec))  // before reading it: the command line is wrong
      throw UsageError(fmt::format("--out {}: is the --resume directory; write the output somewhere else", out));
    ck = ttt::train::load_checkpoint(from);
    // The held-out evaluation goes on as the run had it, unless given again.
    if (!vm.count("eval-data")) {
      eval_files = ck.settings.eval_data;
      for (const auto& f : eval_files)
        if (!fs::is_regular_file(f))
          throw UsageError(fmt::format("--resume {}: its held-out data {} is not there; give the files with "
                                       "--eval-data", from, f));
    }
    if (!vm.count("eval-every")) eval_every = eval_files.empty() ? 0 : ck.settings.eval_every;
    if (eval_every && eval_files.empty())
      throw UsageError("--eval-every needs --eval-data FILES (the checkpoint's run had none)");
    if (steps && *steps != ck.settings.steps)
      throw UsageError(fmt::format("--steps {}: the checkpoint's run has {} (its learning-rate schedule spans them)",
                                   *steps, ck.settings.steps));
    data_files = vm.count("data") ? input_files(vm, "data") : ck.settings.data;
    check_paths(data_files);
    for (const auto& f : data_files)
      if (!vm.count("data") && !fs::is_regular_file(f))
        throw UsageError(fmt::format("--resume {}: its training data {} is not there; give the same files with --data",
                                     from, f));
    ck.settings.data = data_files;
    kept_log = log_until((fs::path(from) / "train.jsonl").string(), ck.opt.step);
  } else {
    data_files = input_files(vm, "data");
    check_paths(data_files);
    ttt::Config cfg;
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      if (!fs::is_regular_file(path)) throw UsageError(fmt::format("--config {}: no such file", path));
      try {
        cfg = ttt::Config::load(path);
      } catch (const ttt::Error& e) {
        throw UsageError(fmt::format("--config: {}", e.what()));
      }
    } else {
      try {
        cfg = ttt::preset(vm["preset"].as<std::string>());
      } catch (const ttt::Error& e) {
        throw UsageError(fmt::format("--preset: {}", e.what()));
      }
    }
    if (cfg.tokenizer != "bytes" || cfg.vocab_size < 256)
      throw UsageError(fmt::format("--{} {}: ttt-train reads text as bytes, so the model needs \"tokenizer\": \"bytes\" "
                                   "and vocab_size >= 256 (e.g. --preset tiny-bytes)",
                                   vm.count("config") ? "config" : "preset",
                                   vm[vm.count("config") ? "config" : "preset"].as<std::string>()));
    auto& s = ck.settings;
    try {
      s.mode = ttt::ref::parse_objective(vm["mode"].as<std::string>());
    } catch (const ttt::Error&) {
      throw UsageError(fmt::format("--mode {}: must be pretrain, meta or meta-fo", vm["mode"].as<std::string>()));
    }
    s.steps = *steps;
    s.batch = int(ttt::app::int_option(vm, "batch", 1, 1 << 16));
    s.seq_len = int(vm.count("seq-len") ? ttt::app::int_option(vm, "seq-len", 1, 1 << 24) : 8 * int64_t(cfg.mini_batch_size));
    s.seed = uint64_t(ttt::app::int_option(vm, "seed", 0));
    s.opt.lr = finite_option(vm, "lr", 0);
    s.opt.end_lr = finite_option(vm, "end-lr", 0);
    s.opt.warmup = vm.count("warmup") ? ttt::app::int_option(vm, "warmup", 0, s.steps) : s.steps / 10;
    s.opt.decay_steps = s.steps;
    s.opt.weight_decay = finite_option(vm, "weight-decay", 0);
    s.opt.clip = finite_option(vm, "clip", 0);
    s.ilr_init = finite_option(vm, "ilr-init", 0);
    s.ilr_warmup = vm.count("ilr-warmup") ? ttt::app::int_option(vm, "ilr-warmup", 0) : s.opt.warmup;
    s.data = data_files;
    ck.model = ttt::Model::random(cfg, s.seed);
  }
  ck.settings.eval_data = eval_files;
  ck.settings.eval_every = eval_every;
  const ttt::train::Settings& s = ck.settings;
  const int64_t until = vm.count("until") ? ttt::app::int_option(vm, "until", 1, s.steps) : s.steps;
  if (ck.opt.step >= s.steps)
    throw UsageError(fmt::format("--resume: the run is complete (step {} of {}); nothing to resume", ck.opt.step,
                                 s.steps));
  if (until <= ck.opt.step)
    throw UsageError(fmt::format("--until {}: the checkpoint is at step {} already", until, ck.opt.step));
  const ttt::train::ByteCorpus corpus = load_corpus(data_files, s.seq_len, "data");
  if (resume && corpus.fingerprint != s.data_fingerprint)
    throw UsageError(fmt::format("--data: the files differ from those the checkpoint was trained on ({})",
                                 fmt::join(s.data, ", ")));
  ck.settings.data_fingerprint = corpus.fingerprint;
  std::vector<std::vector<int32_t>> eval_docs;
  if (!eval_files.empty()) eval_docs = load_corpus(eval_files, s.seq_len, "eval-data").docs;
  const bool meta = s.mode != ttt::ref::Objective::pretrain;
  if (meta && s.seq_len <= ck.model.config.mini_batch_size)
    std::fprintf(stderr, "ttt-train: warning: --seq-len %d is not longer than a mini-batch (%d): no test-time step is "
                 "followed by tokens to score, so there is nothing to learn through (the objective is pretraining's)\n",
                 s.seq_len, ck.model.config.mini_batch_size);

  const std::string gradient_where = vm["gradient"].as<std::string>();
  if (gradient_where != "reference" && gradient_where != "device")
    throw UsageError(fmt::format("--gradient {}: must be reference or device", gradient_where));
  const bool on_device = gradient_where == "device";
  if (on_device)
    if (const std::string why = ttt::train::device_gradient_limit(s.mode, ck.model.config); !why.empty())
      throw UsageError("--gradient device --mode meta: " + why + ": use --gradient reference");
  if (!on_device && vm.count("device"))
    throw UsageError("--device selects the device of --gradient device; the reference gradient runs on the CPU");
  // The device and its engine first, so that a bad device fails before any output is written.
  std::unique_ptr<ttt::Runtime> rt;
  std::string where = "CPU reference, double";
  ttt::train::GradientSource grad;
  if (on_device) {
    rt = std::make_unique<ttt::Runtime>(ttt::app::device_spec(vm));
    grad = ttt::train::device_gradient(*rt, s.mode, ck.model.config, s.seq_len);
    where = fmt::format("gradients on {}, float32", rt->device().name);
  } else {
    grad = ttt::train::reference_gradient(s.mode);
  }

  ttt::app::catch_interrupts("ttt-train", "finishing the current step, then writing a checkpoint");
  fs::create_directories(out);
  Log log((fs::path(out) / "train.jsonl").string(), kept_log);
  const bool quiet = vm["quiet"].as<bool>();
  std::fprintf(stderr,
               "ttt-train: %s, %zu parameters; %zu documents of %d tokens from %zu file%s; batch %d, steps %lld..%lld "
               "of %lld; %lld thread%s (%s)\n",
               ttt::ref::to_string(s.mode), ck.model.num_parameters(), corpus.docs.size(), s.seq_len,
               data_files.size(), data_files.size() == 1 ? "" : "s", s.batch, (long long)ck.opt.step + 1,
               (long long)until, (long long)s.steps, (long long)threads, threads == 1 ? "" : "s", where.c_str());

  ttt::train::Trainer trainer(std::move(ck), corpus);
  const int64_t first = trainer.steps_taken();
  double train_seconds = 0, last_print = -1e9;
  const auto t0 = Clock::now();
  auto since_start = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  // Steps from `step` (whose evaluation comes after its progress line) to `until` that end with a held-out evaluation.
  auto evals_from = [&](int64_t step) {
    if (eval_docs.empty()) return int64_t(0);
    int64_t n = eval_every ? until / eval_every - (step - 1) / eval_every : 0;
    if (until == s.steps && (!eval_every || s.steps % eval_every != 0)) ++n;  // the final one
    return n;
  };
  double eval_seconds = -1;  // of the last evaluation; -1: none yet
  double eval_guess = -1;    // an evaluation's estimated seconds before one has run; -1: not estimated yet
  const size_t eval_targets = ttt::train::heldout_targets(eval_docs);
  // An interrupt drops the evaluation due at a step (the final one has its own notice at the end).
  auto eval_dropped = [&](int64_t step, const char* how) {
    if (step < s.steps)
      std::fprintf(stderr, "ttt-train: interrupted: the held-out evaluation of step %lld was %s and is not logged "
                   "(--resume does it first)\n", (long long)step, how);
  };
  auto evaluate = [&](int64_t step) {
    const double e0 = since_start();
    std::optional<ttt::Progress> bar;
    if (!quiet)
      bar.emplace(eval_targets, fmt::format("ttt-train: eval at step {} (with and without TTT)", step),
                  ttt::Progress::Mode::Auto, stderr);
    const auto e = ttt::train::evaluate_heldout(
        trainer.state().model, eval_docs, int(threads), [] { return ttt::app::interrupted() != 0; },
        [&](size_t done) {
          if (bar) bar->update(done);
        });
    if (e.documents < eval_docs.size()) {  // interrupted: no half evaluation in the log
      bar.reset();  // ends its line
      eval_dropped(step, "cut short");
      return;
    }
    if (bar) bar->finish();
    eval_seconds = since_start() - e0;
    log.write({{"step", step}, {"eval_nll_ttt", e.nll_ttt}, {"eval_nll_no_ttt", e.nll_no_ttt},
               {"eval_tokens", e.tokens}, {"eval_documents", e.documents}, {"seconds", since_start() - e0}});
    if (!quiet)
      std::fprintf(stderr, "ttt-train: eval at step %lld: NLL %.4f with TTT, %.4f without (%zu tokens)\n",
                   (long long)step, e.nll_ttt, e.nll_no_ttt, e.tokens);
  };
  // A resumed run first redoes the evaluation that an interrupt cut short: due at the checkpoint's step, not logged.
  if (resume && !eval_docs.empty() && eval_every && first > 0 && first % eval_every == 0 &&
      !logged_eval(kept_log, first)) {
    std::fprintf(stderr, "ttt-train: --resume: the held-out evaluation of step %lld was not finished; doing it now\n",
                 (long long)first);
    evaluate(first);
  }
  while (trainer.steps_taken() < until && !ttt::app::interrupted()) {
    const auto a = Clock::now();
    ttt::train::StepResult r;
    try {
      r = trainer.step(grad, on_device ? 1 : int(threads));
    } catch (const ttt::Error& e) {  // e.g. a non-finite gradient: the weights were not updated; keep them
      trainer.save(out);
      throw ttt::Error(fmt::format("{} (checkpoint of step {} written to {}: the last good state)", e.what(),
                                   (long long)trainer.steps_taken(), out));
    }
    const double dt = std::chrono::duration<double>(Clock::now() - a).count();
    train_seconds += dt;
    const int64_t done = r.step - first;
    const double tok_s = double(done) * s.batch * s.seq_len / std::max(train_seconds, 1e-9);
    log.write({{"step", r.step}, {"loss", r.loss}, {"lr", r.update.lr}, {"inner_lr", meta ? r.inner_lr : 0.0},
               {"grad_norm", r.update.grad_norm}, {"clip_scale", r.update.scale}, {"tokens", r.scored},
               {"seconds", dt}});
    if (!quiet && (r.step == first + 1 || r.step == until || since_start() - last_print >= 1.0)) {
      last_print = since_start();
      // The ETA counts the evaluations still to come: at the last one's duration once one has run, before
      // that at a timed sample's rate (one mini-batch scored both ways: "~", an estimate).
      const int64_t evals = evals_from(r.step);
      if (evals && eval_seconds < 0 && eval_guess < 0)
        eval_guess = ttt::train::heldout_seconds(ttt::train::time_heldout_sample(trainer.state().model, eval_docs),
                                                 eval_docs, trainer.state().model.config.mini_batch_size, int(threads));
      const double per_eval = eval_seconds >= 0 ? eval_seconds : std::max(eval_guess, 0.0);
      const double eta = train_seconds / double(done) * double(until - r.step) + double(evals) * per_eval;
      const std::string eta_text = (evals && eval_seconds < 0 ? "~" : "") + ttt::format_duration(eta);
      std::fprintf(stderr, "ttt-train: step %lld/%lld  loss %.4f  lr %.3g  |g| %.3g  %.0f tok/s  ETA %s\n",
                   (long long)r.step, (long long)until, r.loss, r.update.lr, r.update.grad_norm, tok_s,
                   eta_text.c_str());
      std::fflush(stderr);
    }
    if (!eval_docs.empty() && ((eval_every && r.step % eval_every == 0) || r.step == s.steps)) {
      if (!ttt::app::interrupted())
        evaluate(r.step);
      else
        eval_dropped(r.step, "skipped");
    }
    if (ck_every && r.step % ck_every == 0 && r.step < until) trainer.save(out);
  }
  trainer.save(out);
  const int64_t at = trainer.steps_taken();
  if (ttt::app::interrupted() && at == s.steps && !eval_docs.empty())
    std::fprintf(stderr, "ttt-train: interrupted: the final held-out evaluation was skipped (ttt-perplexity -m %s "
                         "--compare scores the model)\n", out.c_str());
  if (ttt::app::interrupted() && at < until) {
    std::fprintf(stderr,
                 "ttt-train: interrupted: checkpoint of step %lld written to %s (continue with --resume %s --out "
                 "NEW_DIR)\n",
                 (long long)at, out.c_str(), out.c_str());
    return 130;
  }
  std::fprintf(stderr, "ttt-train: %s after step %lld of %lld written to %s%s\n",
               at == s.steps ? "model" : "checkpoint", (long long)at, (long long)s.steps, out.c_str(),
               at == s.steps ? "" : fmt::format(" (continue with --resume {} --out NEW_DIR)", out).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-train", argc, argv, body); }
