// The machine-readable report (ttt-perplexity --json): one JSON object whose
// key names are a promise to the harnesses that read it; the schema below is
// version 1, and a change that renames or removes a key must bump it.
#include "ttt/report.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

// Schema ("format": "ttt-perplexity-report", "version": 1). A "stats" object is
//   { "tokens":   number of NLL values (scored tokens: a document of n tokens has n-1),
//     "mean_nll": mean natural-log NLL (nats),
//     "ppl":      exp(mean_nll),
//     "ppl_err":  llama.cpp's standard error of ppl,
//     "nll_err":  standard error of mean_nll }
// mean_nll, ppl, ppl_err and nll_err are null when tokens is 0 (and any
// non-finite value is null). A "run" object is a stats object plus
//   { "seconds": evaluation time, "tokens_per_s": tokens / seconds (null when seconds is 0) }.
//
// {
//   "format": "ttt-perplexity-report", "version": 1,
//   "settings": { "model": str, "device": str, "tokenizer": str, "ttt": bool,
//                 "inner_lr": num, "mini_batch": int (B), "window": int (W),
//                 "weight_dtype": str|null, "kv_dtype": str|null (storage on the device: "f32", "f16", "bf16"),
//                 "compare": bool, "extra": { str: str, ... } },
//   "timing":   { "seconds": wall time of the evaluation, "tokens_per_s": main run,
//                 "tokens_per_s_base": run without TTT (compare only) },
//   "total":     run object over all documents (+ compare fields),
//   "documents": [ run object + { "name": str, "buckets": [bucket, ...] } (+ compare fields) ],
//   "buckets":   [ bucket, ... ]   over all documents, only buckets holding tokens
//   "partial":   bool: the run was interrupted and the figures cover only what was scored,
//   "planned":   { "documents": int, "tokens": int, what the whole run would have scored (partial only),
//                  "modes": [str, ...], "modes_scored": [str, ...] }  the modes it was to score and those
//                  whose figures this report holds (an interrupted --compare: "compare" is false when one alone)
// }
// A bucket is a stats object plus { "lo": first position, "hi": one past the
// last, "label": "0-1K" } (+ compare fields without timing). Position i is the
// prediction of token i+1 from tokens 0..i.
// Compare fields, present only when settings.compare is true:
//   "base":  run (or stats) object of the same tokens without test-time training,
//   "delta": stats object of the per-token difference nll - nll_base; its
//            mean_nll is the mean difference (negative: TTT helped), nll_err
//            its paired standard error, ppl the ratio ppl / base.ppl.
// "bits_per_byte" (total, documents): the NLL in bits over the UTF-8 bytes the
// scored tokens decode to (lm-evaluation-harness's), for text documents only.
// "modes" (top level and per document, only when the run compared against full
// attention: --compare with full): [ run object + { "name": "ttt" | "swa" |
// "full", "label": str, "delta_full": stats object of nll - nll_full (absent
// for full itself) } ], the top-level ones with "buckets" too (each bucket with
// its "delta_full").
// "kld" (--kl-divergence only): the main run against a base file, llama.cpp's
// figures: { "base": path, "other_model": bool (the base's model files differ),
// "tokens": int, "kld_mean", "kld_err": mean KL divergence (nats) and its
// standard error, "kld_percentiles": { "max", "99.9%", ..., "median", ...,
// "min" }, "dp_mean", "dp_err", "dp_rms", "dp_percentiles": Δp = p(target) -
// p_base(target) as a probability (not %), "same_top", "same_top_err": the
// fraction of tokens whose most likely next token is the base's }.

namespace ttt {
namespace {

using json = nlohmann::json;

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

// A float setting as its shortest decimal (0.01f as 0.01, not 0.009999999776).
json setting(float x) {
  if (!std::isfinite(x)) return nullptr;
  return std::stod(fmt::format("{}", x));
}

json stats_json(const PplStats& s) {
  const bool any = s.count > 0;
  return {{"tokens", s.count},
          {"mean_nll", any ? num(s.mean_nll) : json(nullptr)},
          {"ppl", any ? num(s.ppl) : json(nullptr)},
          {"ppl_err", any ? num(s.ppl_err) : json(nullptr)},
          {"nll_err", any ? num(s.nll_err) : json(nullptr)}};
}

json run_json(const PplStats& s, double seconds) {
  json j = stats_json(s);
  j["seconds"] = num(seconds);
  j["tokens_per_s"] = seconds > 0 ? num(double(s.count) / seconds) : json(nullptr);
  return j;
}

json summary_json(const Summary& s, bool compare) {
  json j = run_json(s.run, s.seconds);
  if (compare) {
    j["base"] = run_json(s.base, s.seconds_base);
    j["delta"] = stats_json(s.delta);
  }
  return j;
}

json buckets_json(const std::vector<Bucket>& buckets, bool compare) {
  json a = json::array();
  for (const Bucket& b : buckets) {
    json j = {{"lo", b.lo}, {"hi", b.hi}, {"label", bucket_label(b.lo, b.hi)}};
    j.update(stats_json(b.stats));
    if (compare) {
      j["base"] = stats_json(b.stats_base);
      j["delta"] = stats_json(b.delta);
    }
    a.push_back(std::move(j));
  }
  return a;
}

// Each mode against the reference (the last mode, full attention).
json modes_json(const ReportInput& in, const std::vector<DocResult>& docs, bool with_buckets) {
  json a = json::array();
  const size_t ref = in.modes.size() - 1;
  for (size_t k = 0; k < in.modes.size(); ++k) {
    const std::vector<DocResult> view = mode_view(docs, k);
    const Summary s = summarize(view, true);
    json j = {{"name", in.modes[k].first}, {"label", in.modes[k].second}};
    j.update(run_json(s.run, s.seconds));
    if (k != ref) j["delta_full"] = stats_json(s.delta);
    if (with_buckets) {
      json b = json::array();
      for (const Bucket& x : position_buckets(view, true)) {
        json e = {{"lo", x.lo}, {"hi", x.hi}, {"label", bucket_label(x.lo, x.hi)}};
        e.update(stats_json(x.stats));
        if (k != ref) e["delta_full"] = stats_json(x.delta);
        b.push_back(std::move(e));
      }
      j["buckets"] = std::move(b);
    }
    a.push_back(std::move(j));
  }
  return a;
}

json bpb_json(const std::vector<DocResult>& docs) {
  const double b = bits_per_byte(docs);
  return b > 0 ? num(b) : json(nullptr);
}

}  // namespace

nlohmann::json report_json(const ReportInput& in) {
  validate_report_input(in);
  const bool cmp = in.compare;
  const ReportSettings& st = in.settings;

  json extra = json::object();
  for (const auto& [k, v] : st.extra) extra[clean_text(k)] = clean_text(v);
  json settings = {{"model", clean_text(st.model_dir)},
                   {"device", clean_text(st.device)},
                   {"tokenizer", clean_text(st.tokenizer)},
                   {"ttt", st.ttt},
                   {"inner_lr", setting(st.inner_lr)},
                   {"mini_batch", st.mini_batch},
                   {"window", st.window},
                   {"weight_dtype", st.weight_dtype.empty() ? json(nullptr) : json(st.weight_dtype)},
                   {"kv_dtype", st.kv_dtype.empty() ? json(nullptr) : json(st.kv_dtype)},
                   {"compare", cmp},
                   {"extra", std::move(extra)}};

  const Summary total = summarize(in.docs, cmp);
  json timing = {{"seconds", num(in.seconds)},
                 {"tokens_per_s", total.seconds > 0 ? num(total.tokens_per_s()) : json(nullptr)}};
  if (cmp) timing["tokens_per_s_base"] = total.seconds_base > 0 ? num(total.tokens_per_s_base()) : json(nullptr);

  json docs = json::array();
  for (const DocResult& d : in.docs) {
    json j = {{"name", clean_text(d.name)}};
    j.update(summary_json(summarize(d, cmp), cmp));
    j["buckets"] = buckets_json(position_buckets(d, cmp), cmp);
    j["bits_per_byte"] = bpb_json({d});
    if (has_reference_mode(in)) j["modes"] = modes_json(in, {d}, false);
    docs.push_back(std::move(j));
  }

  json out = {{"format", "ttt-perplexity-report"},
              {"version", 1},
              {"settings", std::move(settings)},
              {"timing", std::move(timing)},
              {"total", summary_json(total, cmp)},
              {"documents", std::move(docs)},
              {"buckets", buckets_json(position_buckets(in.docs, cmp), cmp)},
              {"partial", in.partial}};
  out["total"]["bits_per_byte"] = bpb_json(in.docs);
  if (has_reference_mode(in)) out["modes"] = modes_json(in, in.docs, true);
  if (in.modes.size() >= 2) {
    json names = json::array();
    for (const auto& m : in.modes) names.push_back(m.first);
    out["settings"]["modes"] = std::move(names);
  }
  if (in.partial)
    out["planned"] = {{"documents", in.documents_planned},
                      {"tokens", in.tokens_planned},
                      {"modes", in.modes_planned},
                      {"modes_scored", in.modes_scored}};
  if (in.kld) {
    const KldSummary& k = *in.kld;
    auto pct = [](const std::vector<std::pair<std::string, double>>& v) {
      json o = json::object();
      for (const auto& [name, x] : v) o[name] = num(x);
      return o;
    };
    out["kld"] = {{"base", clean_text(k.base)},     {"other_model", k.other_model},
                  {"tokens", k.count},              {"kld_mean", num(k.kld_mean)},
                  {"kld_err", num(k.kld_err)},      {"kld_percentiles", pct(k.kld_percentiles)},
                  {"dp_mean", num(k.dp_mean)},      {"dp_err", num(k.dp_err)},
                  {"dp_rms", num(k.dp_rms)},        {"dp_percentiles", pct(k.dp_percentiles)},
                  {"same_top", num(k.same_top)},    {"same_top_err", num(k.same_top_err)}};
  }
  return out;
}

}  // namespace ttt
