// A corpus run's passes (journal replay, scheduling, results into the report)
// and the assembly of its report and NLL file, whole or interrupted.
#include "lib/eval/corpus_run.hpp"

#include "lib/eval/journal.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ttt {

ReportSettings report_settings(const Engine& engine, const std::string& model_dir, const std::string& tokenizer) {
  ReportSettings st;
  st.model_dir = model_dir;
  st.device = engine.runtime().device().name;
  st.tokenizer = tokenizer;
  st.ttt = engine.ttt();
  st.inner_lr = engine.inner_lr();
  st.mini_batch = engine.config().mini_batch_size;
  st.window = engine.window();
  st.weight_dtype = dtype_flag(engine.weight_dtype());
  st.kv_dtype = dtype_flag(engine.kv_dtype());
  return st;
}

CorpusRun::CorpusRun(const Corpus& corpus, CorpusOptions opts, const Workers& workers)
    : corpus_(corpus), opts_(opts), workers_(workers) {
  if (opts_.parallel < 1) throw Error(fmt::format("a corpus run needs parallel >= 1, got {}", opts_.parallel));
  if (opts_.modes.empty()) throw Error("a corpus run needs at least one mode");
  for (const auto& d : corpus_.docs) {
    rep_.docs.push_back({d.name, {}, {}, 0, 0, {}, {}, 0});
    hashes_.push_back(tokens_hash(d.tokens));
  }
  nll_.assign(opts_.modes.size(), std::vector<std::vector<float>>(corpus_.docs.size()));
  seconds_.assign(opts_.modes.size(), std::vector<double>(corpus_.docs.size(), 0.0));
}

std::pair<size_t, size_t> CorpusRun::journaled() const {
  if (!journal_) return {0, 0};
  std::vector<size_t> per_mode(opts_.modes.size(), 0);
  for (const auto& [key, r] : journal_->done())
    if (key.first < corpus_.docs.size())
      for (size_t k = 0; k < opts_.modes.size(); ++k)
        if (key.second == mode_name(opts_.modes[k])) ++per_mode[k];
  size_t others = per_mode.size() > 1 ? SIZE_MAX : 0;
  for (size_t k = 1; k < per_mode.size(); ++k) others = std::min(others, per_mode[k]);
  return {per_mode[0], others};
}

std::vector<std::string> CorpusRun::renamed() const {
  std::vector<std::string> out;
  if (!journal_) return out;
  for (const auto& [key, r] : journal_->done())
    if (key.first < corpus_.docs.size() && key.second == mode_name(opts_.modes[0]) &&
        r.name != corpus_.docs[key.first].name && r.tokens_hash == hashes_[key.first])
      out.push_back(fmt::format("document {}: {} in the journal, {} now", key.first, r.name,
                                corpus_.docs[key.first].name));
  return out;
}

double CorpusRun::seconds() const {
  return total_ + (since_ ? std::chrono::duration<double>(Clock::now() - *since_).count() : 0.0);
}

void CorpusRun::advance(size_t n) {
  done_ += n;
  if (progress_) progress_(done_);
}

void CorpusRun::store(size_t mode, size_t doc, std::vector<float> nll, double seconds) {
  nll_[mode][doc] = std::move(nll);
  seconds_[mode][doc] = seconds;
}

std::vector<size_t> CorpusRun::replay_journal(size_t mode) {
  const std::string name = mode_name(opts_.modes[mode]);
  std::vector<size_t> todo;
  for (size_t i = 0; i < corpus_.docs.size(); ++i) {
    const JournalRecord* r = nullptr;
    if (journal_) {
      const auto it = journal_->done().find({i, name});
      if (it != journal_->done().end()) r = &it->second;
    }
    if (!r) {
      todo.push_back(i);
      continue;
    }
    const Document& d = corpus_.docs[i];
    // Documents match by their tokens; a name alone may change (a moved or renamed file: see renamed()).
    if (r->tokens_hash != hashes_[i] || r->nll.size() + 1 != d.tokens.size())
      throw Error(fmt::format("{}: document {} has other tokens now ({}) than in the journal ({}); use a new journal",
                              journal_->path(), i, d.name, r->name));
    store(mode, i, r->nll, r->seconds);
    advance(r->nll.size());
  }
  return todo;
}

// One pass over the documents in opts_.modes[mode]. Returns false when a stop cut it short.
bool CorpusRun::pass(Engine& engine, size_t mode) {
  const Mode m = opts_.modes[mode];
  auto sched = workers_.scheduler(replay_journal(mode), [&](size_t i, std::vector<float> nll, double s, bool remote) {
    if (remote) advance(nll.size());
    if (journal_) journal_->append({i, mode_name(m), corpus_.docs[i].name, hashes_[i], s, nll});
    store(mode, i, std::move(nll), s);
  });
  const SessionOptions session{.ttt = m == Mode::ttt && engine.ttt(), .inner_lr = std::nullopt};
  since_ = Clock::now();
  PassEnd end = evaluate_pass(engine, session, corpus_.docs, opts_.parallel, *sched, [&](size_t n) { advance(n); },
                              stop_, mode == 0 ? PassHooks{opts_.rows, opts_.document_end} : PassHooks{});
  total_ = seconds();
  since_.reset();
  workers_.barrier();
  // The scored prefixes of the documents the stop came in: reported, never journaled.
  for (PassEnd::Cut& c : end.cut) store(mode, c.doc, std::move(c.nll), c.seconds);
  return !end.interrupted;
}

bool CorpusRun::run(const EngineFor& engine_for, ReportSettings settings, Model* keep) {
  rep_.settings = std::move(settings);
  complete_ = true;
  for (size_t k = 0; k < opts_.modes.size() && complete_; ++k) {
    if (k > 0 && stop_()) {
      complete_ = false;
      break;
    }
    Engine& engine = engine_for(opts_.modes[k]);
    started_ = k + 1;
    complete_ = pass(engine, k);
    if (k == 0 && complete_ && keep) engine.session().download_prime(*keep);
  }
  rep_.seconds = seconds();
  return complete_;
}

CorpusResults CorpusRun::results() {
  CorpusResults out;
  out.complete = complete_;
  out.planned = corpus_.tokens;
  ReportInput& rep = out.report = std::move(rep_);
  for (const auto& nll : nll_[0]) {
    out.scored += nll.size();
    for (float v : nll) out.nll_text += fmt::format("{:.9g}\n", v);
  }
  // Interrupted, compare only what every mode that began scored; one mode alone compares nothing.
  const size_t modes = complete_ ? opts_.modes.size() : std::max<size_t>(started_, 1);
  if (modes >= 2)
    for (size_t k = 0; k < modes; ++k) rep.modes.emplace_back(mode_name(opts_.modes[k]), mode_label(opts_.modes[k]));
  rep.compare = modes >= 2;
  for (size_t i = 0; i < rep.docs.size(); ++i) {
    DocResult& d = rep.docs[i];
    size_t n = nll_[0][i].size();
    for (size_t k = 1; k < modes; ++k) n = std::min(n, nll_[k][i].size());
    for (size_t k = 0; k < modes; ++k) {
      std::vector<float>& v = nll_[k][i];
      v.resize(n);
      if (k == 0) d.nll = v, d.seconds = seconds_[k][i];
      if (k == 1) d.nll_base = v, d.seconds_base = seconds_[k][i];
      if (modes >= 2) d.mode_nll.push_back(std::move(v)), d.mode_seconds.push_back(seconds_[k][i]);
    }
    // Bits per byte need the bytes of the tokens scored: a document's prefix has none known.
    if (n + 1 == corpus_.docs[i].tokens.size()) d.bytes = corpus_.docs[i].bytes;
  }
  if (complete_) return out;
  out.nll_text += fmt::format("# partial: {} of {} tokens scored (interrupted)\n", out.scored, out.planned);
  rep.partial = true;
  rep.documents_planned = corpus_.docs.size();
  rep.tokens_planned = corpus_.tokens;
  for (size_t k = 0; k < opts_.modes.size(); ++k) {
    rep.modes_planned.push_back(mode_name(opts_.modes[k]));
    if (k < modes) rep.modes_scored.push_back(mode_name(opts_.modes[k]));
  }
  // Say what of the comparison is missing: modes never started, or compared on a prefix.
  if (opts_.modes.size() >= 2) {
    std::string missing;
    for (size_t k = modes; k < opts_.modes.size(); ++k)
      missing += (missing.empty() ? "" : ", ") + std::string(mode_name(opts_.modes[k]));
    size_t compared = 0;
    for (const auto& d : rep.docs) compared += d.nll.size();
    if (modes < 2)
      rep.settings.extra.emplace_back("comparison", fmt::format("MISSING: interrupted before {} started; the figures "
                                                                "are those of {} alone",
                                                                missing, mode_name(opts_.modes[0])));
    else
      rep.settings.extra.emplace_back(
          "comparison", fmt::format("INCOMPLETE: {} of {} tokens scored in every compared mode{}; the modes are "
                                    "compared on those alone",
                                    compared, out.planned, missing.empty() ? "" : "; never started: " + missing));
  }
  std::erase_if(rep.docs, [](const DocResult& d) { return d.nll.empty(); });
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
