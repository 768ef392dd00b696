// A corpus run's passes (journal replay, scheduling, results into the report)
// and the assembly of its report and NLL file, whole or interrupted.
#include "lib/eval/corpus_run.hpp"

#include "lib/eval/journal.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ttt {

ReportSettings report_settings(const Engine& engine, const std::string& model_dir, const std::string& tokenizer) {
  return {model_dir,       engine.context().device().name, tokenizer, engine.ttt(), engine.inner_lr(),
          engine.config().mini_batch_size, engine.window(), {}};
}

CorpusRun::CorpusRun(const Corpus& corpus, CorpusOptions opts, const Workers& workers)
    : corpus_(corpus), opts_(opts), workers_(workers) {
  if (opts_.parallel < 1) throw Error(fmt::format("a corpus run needs parallel >= 1, got {}", opts_.parallel));
  rep_.compare = opts_.compare;
  for (const auto& d : corpus_.docs) {
    rep_.docs.push_back({d.name, {}, {}, 0, 0});
    hashes_.push_back(tokens_hash(d.tokens));
  }
}

std::pair<size_t, size_t> CorpusRun::journaled() const {
  std::pair<size_t, size_t> n{0, 0};
  if (!journal_) return n;
  for (const auto& [key, r] : journal_->done())
    if (key.first < corpus_.docs.size()) ++(key.second ? n.second : n.first);
  return n;
}

double CorpusRun::seconds() const {
  return total_ + (since_ ? std::chrono::duration<double>(Clock::now() - *since_).count() : 0.0);
}

void CorpusRun::advance(size_t n) {
  done_ += n;
  if (progress_) progress_(done_);
}

void CorpusRun::store(bool base, size_t doc, std::vector<float> nll, double seconds) {
  DocResult& d = rep_.docs[doc];
  (base ? d.nll_base : d.nll) = std::move(nll);
  (base ? d.seconds_base : d.seconds) = seconds;
}

std::vector<size_t> CorpusRun::replay_journal(bool base) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < corpus_.docs.size(); ++i) {
    const JournalRecord* r = nullptr;
    if (journal_) {
      const auto it = journal_->done().find({i, base});
      if (it != journal_->done().end()) r = &it->second;
    }
    if (!r) {
      todo.push_back(i);
      continue;
    }
    const Document& d = corpus_.docs[i];
    if (r->name != d.name || r->tokens_hash != hashes_[i] || r->nll.size() + 1 != d.tokens.size())
      throw Error(fmt::format("{}: document {} is {} in the journal but {} now (other tokens); use a new journal",
                              journal_->path(), i, r->name, d.name));
    store(base, i, r->nll, r->seconds);
    advance(r->nll.size());
  }
  return todo;
}

// One pass over the documents, with (base = false: as the engine has it) or
// without test-time training. Returns false when a stop cut it short.
bool CorpusRun::pass(Engine& engine, bool base) {
  auto sched = workers_.scheduler(replay_journal(base), [&](size_t i, std::vector<float> nll, double s, bool remote) {
    if (remote) advance(nll.size());
    if (journal_) journal_->append({i, base, corpus_.docs[i].name, hashes_[i], s, nll});
    store(base, i, std::move(nll), s);
  });
  const SessionOptions session{.ttt = !base && engine.ttt(), .inner_lr = std::nullopt};
  since_ = Clock::now();
  PassEnd end = evaluate_pass(engine, session, corpus_.docs, opts_.parallel, *sched, [&](size_t n) { advance(n); },
                              stop_);
  total_ = seconds();
  since_.reset();
  workers_.barrier();
  // The scored prefix of the document the stop came in: reported, never journaled.
  if (end.doc) store(base, *end.doc, std::move(end.nll), end.seconds);
  return !end.interrupted;
}

bool CorpusRun::run(Engine& engine, ReportSettings settings, Model* keep) {
  rep_.settings = std::move(settings);
  complete_ = pass(engine, false);
  if (complete_ && keep) engine.download_prime(*keep);
  if (opts_.compare && complete_ && !stop_()) {
    base_started_ = true;
    complete_ = pass(engine, true);
  }
  rep_.seconds = seconds();
  complete_ = complete_ && (!opts_.compare || base_started_);
  return complete_;
}

CorpusResults CorpusRun::results() {
  CorpusResults out;
  out.complete = complete_;
  out.planned = corpus_.tokens;
  ReportInput& rep = out.report = std::move(rep_);
  for (const auto& d : rep.docs) {
    out.scored += d.nll.size();
    for (float v : d.nll) out.nll_text += fmt::format("{:.9g}\n", v);
  }
  if (complete_) return out;
  out.nll_text += fmt::format("# partial: {} of {} tokens scored (interrupted)\n", out.scored, out.planned);
  rep.partial = true;
  rep.documents_planned = corpus_.docs.size();
  rep.tokens_planned = corpus_.tokens;
  // Compare only what both passes scored; without any pass without TTT there is nothing to compare.
  // Either way the report says what of the comparison is missing.
  if (opts_.compare && !base_started_) {
    rep.compare = false;
    rep.settings.extra.emplace_back("comparison", "MISSING: interrupted before the run without test-time training "
                                                  "started; the figures are those with test-time training alone");
  } else if (opts_.compare) {
    size_t base = 0;
    for (auto& d : rep.docs) {
      base += d.nll_base.size();
      d.nll.resize(std::min(d.nll.size(), d.nll_base.size()));
    }
    rep.settings.extra.emplace_back(
        "comparison", fmt::format("INCOMPLETE: {} of {} tokens scored without test-time training; both runs are "
                                  "compared on those alone",
                                  base, out.planned));
  }
  std::erase_if(rep.docs, [](const DocResult& d) { return d.nll.empty(); });
  for (auto& d : rep.docs)
    if (!rep.compare) d.nll_base.clear();
  return out;
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f) throw Error(fmt::format("{}: cannot read", path));
  return ss.str();
}

}  // namespace

void save_adapted_model(const Model& model, const std::string& out, const std::string& model_dir,
                        const std::optional<std::string>& tokenizer) {
  namespace fs = std::filesystem;
  model.save(out);
  if (tokenizer) {
    const fs::path tok = *tokenizer;
    write_file_atomic((fs::path(out) / (tok.extension() == ".json" ? "tokenizer.json" : "tokenizer.model")).string(),
                      read_file(tok.string()));
    return;
  }
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (fs::exists(fs::path(model_dir) / name))
      write_file_atomic((fs::path(out) / name).string(), read_file((fs::path(model_dir) / name).string()));
}

}  // namespace ttt
