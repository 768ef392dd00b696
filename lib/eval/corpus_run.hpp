// A corpus run: the main pass over a corpus (test-time training as the engine
// has it), then with `compare` a pass without it, in one process or across the
// ranks of an MPI job. Documents the journal already holds are reported from
// it and each finished one is journaled as it arrives. Rank 0 then assembles
// the report and the NLL file from what was scored, whole or interrupted.
#pragma once

#include "lib/eval/corpus.hpp"
#include "lib/eval/evaluate.hpp"
#include "ttt/engine.hpp"
#include "ttt/report.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ttt {

class Journal;

struct CorpusOptions {
  bool compare = false;  // after the main pass, every document again without test-time training
  int parallel = 1;      // documents at once on the device (a BatchSession above 1)
};

// What rank 0 writes at the end of a run.
struct CorpusResults {
  // Interrupted: marked partial, holding only what was scored (with compare,
  // only what both passes scored; no comparison when the second never began).
  ReportInput report;
  // Every NLL the main pass scored, one "%.9g" line each, documents in order;
  // interrupted, a last "# partial: ..." comment line (numpy.loadtxt skips it).
  std::string nll_text;
  size_t scored = 0;   // tokens the main pass scored
  size_t planned = 0;  // tokens a whole pass scores
  bool complete = true;
};

// The report's settings for a run on engine (device, B, W, test-time training and its step size).
ReportSettings report_settings(const Engine& engine, const std::string& model_dir, const std::string& tokenizer);

class CorpusRun {
 public:
  using OnProgress = std::function<void(size_t)>;  // tokens scored so far, all passes (not an increment)
  using Stop = std::function<bool()>;              // asked after every mini-batch: stop now (an interrupt)?

  // corpus and workers must outlive the run.
  CorpusRun(const Corpus& corpus, CorpusOptions opts, const Workers& workers);

  // Rank 0's journal, or none: the documents it holds are not evaluated again.
  void set_journal(Journal* journal) { journal_ = journal; }
  // Documents of this corpus the journal holds: from the main pass, and from the pass without TTT.
  std::pair<size_t, size_t> journaled() const;
  void on_progress(OnProgress f) { progress_ = std::move(f); }
  void stop_when(Stop f) { stop_ = std::move(f); }

  // Tokens the whole run scores (both passes with compare): a progress display's total.
  size_t tokens_to_score() const { return corpus_.tokens * (opts_.compare ? 2 : 1); }
  // Scoring time so far: model loading, kernel compilation and warm-up stay
  // outside, so a progress display and the report show one and the same rate.
  double seconds() const;

  // The passes on engine. keep: after a whole main pass, takes its adapted
  // prime weights (download_prime). Returns whether the run is complete (no
  // stop cut it short). Every rank calls it; only rank 0's report is whole.
  bool run(Engine& engine, ReportSettings settings, Model* keep = nullptr);

  // Rank 0, after run(): the report and NLL file. Moves the report out.
  CorpusResults results();

 private:
  using Clock = std::chrono::steady_clock;
  bool pass(Engine& engine, bool base);
  std::vector<size_t> replay_journal(bool base);  // returns the documents still to evaluate
  void store(bool base, size_t doc, std::vector<float> nll, double seconds);
  void advance(size_t n);

  const Corpus& corpus_;
  CorpusOptions opts_;
  const Workers& workers_;
  Journal* journal_ = nullptr;
  OnProgress progress_;
  Stop stop_ = [] { return false; };
  std::vector<std::string> hashes_;  // of each document's tokens, for the journal
  ReportInput rep_;
  size_t done_ = 0;                  // tokens scored, all passes
  double total_ = 0;                 // seconds of the passes that ended
  std::optional<Clock::time_point> since_;  // the start of the pass under way
  bool complete_ = false, base_started_ = false;
};

// Writes model into out (the --save-weights directory) with a tokenizer so
// that it reads text like the original: `tokenizer` (a tokenizer.json or
// tokenizer.model file) when given, else the ones in model_dir.
void save_adapted_model(const Model& model, const std::string& out, const std::string& model_dir,
                        const std::optional<std::string>& tokenizer = std::nullopt);

}  // namespace ttt
