// A corpus run: one pass over a corpus per mode (lib/eval/modes.hpp: with
// test-time training, without it, full attention), the first the main one, in
// one process or across the ranks of an MPI job. Documents the journal already holds are reported from
// it and each finished one is journaled as it arrives. Rank 0 then assembles
// the report and the NLL file from what was scored, whole or interrupted.
#pragma once

#include "lib/eval/corpus.hpp"
#include "lib/eval/evaluate.hpp"
#include "lib/eval/modes.hpp"
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
  // Every document is scored in each mode, in this order; the first is the
  // main pass (the NLL file's, --save-weights'). Two or more: a comparison.
  std::vector<Mode> modes = {Mode::ttt};
  int parallel = 1;  // documents at once on the device (a BatchSession above 1)
  // The main pass's every token's logits (KL divergence; parallel 1). Documents
  // the journal already holds are not evaluated again and give none.
  LogitRows rows;
  DocumentEnd document_end;  // the main pass's, each document's session at its end (parallel 1)
};

// What rank 0 writes at the end of a run.
struct CorpusResults {
  // Interrupted: marked partial, holding only what was scored (compared, only
  // what every mode that began scored; no comparison when only the first began).
  ReportInput report;
  // Every NLL the main pass scored, one "%.9g" line each, documents in order;
  // interrupted, a last "# partial: ..." comment line (numpy.loadtxt skips it).
  std::string nll_text;
  size_t scored = 0;   // tokens the main pass scored
  size_t planned = 0;  // tokens a whole pass scores
  bool complete = true;
};

// The report's settings for a run on engine (device, B, W, test-time training and its step size, storage types).
ReportSettings report_settings(const Engine& engine, const std::string& model_dir, const std::string& tokenizer);

class CorpusRun {
 public:
  using OnProgress = std::function<void(size_t)>;  // tokens scored so far, all passes (not an increment)
  using Stop = std::function<bool()>;              // asked after every mini-batch: stop now (an interrupt)?
  // The engine a mode's pass runs on (asked before each pass; lib/eval/modes.hpp
  // says which modes may share one).
  using EngineFor = std::function<Engine&(Mode)>;

  // corpus and workers must outlive the run.
  CorpusRun(const Corpus& corpus, CorpusOptions opts, const Workers& workers);

  // Rank 0's journal, or none: the documents it holds are not evaluated again.
  void set_journal(Journal* journal) { journal_ = journal; }
  // Documents of this corpus the journal holds: from the first mode, and (the fewest) from the others.
  std::pair<size_t, size_t> journaled() const;
  // Documents the journal holds under another name (a moved or renamed file) with the same tokens, as
  // "document 0: c3.jsonl:1 in the journal, c3b.jsonl:1 now": they are taken from it all the same.
  std::vector<std::string> renamed() const;
  void on_progress(OnProgress f) { progress_ = std::move(f); }
  void stop_when(Stop f) { stop_ = std::move(f); }

  // Tokens the whole run scores (every mode): a progress display's total.
  size_t tokens_to_score() const { return corpus_.tokens * opts_.modes.size(); }
  // Scoring time so far: model loading, kernel compilation and warm-up stay
  // outside, so a progress display and the report show one and the same rate.
  double seconds() const;

  // The passes, each on engine_for(its mode). keep: after a whole main pass,
  // takes its adapted prime weights (download_prime). Returns whether the run
  // is complete (no stop cut it short). Every rank calls it; only rank 0's
  // report is whole.
  bool run(const EngineFor& engine_for, ReportSettings settings, Model* keep = nullptr);

  // Rank 0, after run(): the report and NLL file. Moves the report out.
  CorpusResults results();

 private:
  using Clock = std::chrono::steady_clock;
  bool pass(Engine& engine, size_t mode);  // mode: an index into opts_.modes
  std::vector<size_t> replay_journal(size_t mode);  // returns the documents still to evaluate
  void store(size_t mode, size_t doc, std::vector<float> nll, double seconds);
  void advance(size_t n);

  const Corpus& corpus_;
  CorpusOptions opts_;
  const Workers& workers_;
  Journal* journal_ = nullptr;
  OnProgress progress_;
  Stop stop_ = [] { return false; };
  std::vector<std::string> hashes_;  // of each document's tokens, for the journal
  ReportInput rep_;
  std::vector<std::vector<std::vector<float>>> nll_;  // [mode][document]
  std::vector<std::vector<double>> seconds_;          // [mode][document]
  size_t started_ = 0;                                // passes begun
  size_t done_ = 0;                  // tokens scored, all passes
  double total_ = 0;                 // seconds of the passes that ended
  std::optional<Clock::time_point> since_;  // the start of the pass under way
  bool complete_ = false;
};

// Writes model into out (the --save-weights directory) with a tokenizer so
// that it reads text like the original: `tokenizer` (a tokenizer.json or
// tokenizer.model file) when given, else the ones in model_dir.
void save_adapted_model(const Model& model, const std::string& out, const std::string& model_dir,
                        const std::optional<std::string>& tokenizer = std::nullopt);

}  // namespace ttt
