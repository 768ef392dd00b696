// The perplexity report of ttt-perplexity: statistics (PPL with llama.cpp's
// standard error), per-position buckets, and three renderings of one
// ReportInput: plain text for people, JSON for programs, an SVG plot of loss
// against token position. report.cpp holds the statistics and the text,
// report_json.cpp and report_svg.cpp the other two.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ttt {

// Perplexity of a set of per-token NLLs (natural log).
// N = 0 gives {0, 0, 1, 0, 0} (exp of an empty mean of 0, no error), and
// N = 1 gives an error of 0: a standard error needs two samples, and NaN in a
// report helps nobody. Renderers print "-" (text) or null (JSON) for count 0.
struct PplStats {
  size_t count = 0;
  double mean_nll = 0;
  double ppl = 1;      // exp(mean_nll)
  double ppl_err = 0;  // ppl * nll_err (llama.cpp's "PPL = x +/- err")
  double nll_err = 0;  // standard error of mean_nll
};
PplStats ppl_stats(const std::vector<float>& nll);

// Running sums behind PplStats, so documents, buckets and totals merge without
// keeping the values. Sums are double, as in llama.cpp, whose formula this is:
//   m = sum/N, m2 = sum_sq/N - m^2, nll_err = sqrt(m2/(N-1)), ppl_err = exp(m) * nll_err.
// m2 <= 0 (rounding on constant data) gives an error of 0 where llama.cpp
// prints "Unexpected negative standard deviation".
struct NllSum {
  size_t n = 0;
  double sum = 0, sum_sq = 0;
  void add(double x) {
    ++n;
    sum += x;
    sum_sq += x * x;
  }
  void add(const NllSum& o) {
    n += o.n;
    sum += o.sum;
    sum_sq += o.sum_sq;
  }
  PplStats stats() const;
};

// One evaluated document. nll[i] is the NLL of token i+1 given tokens 0..i
// ("position i"); nll_base is the same document without test-time training,
// filled only with --compare (then it has nll's length), empty otherwise.
struct DocResult {
  std::string name;
  std::vector<float> nll;
  std::vector<float> nll_base;
  double seconds = 0, seconds_base = 0;  // evaluation time of each run
  // With ReportInput::modes: each mode's NLLs and time, in the modes' order
  // (every one as long as nll); nll and nll_base then hold the first two.
  std::vector<std::vector<float>> mode_nll;
  std::vector<double> mode_seconds;
  // The UTF-8 bytes of text this document's scored tokens (positions 1..) decode
  // to, for bits per byte; 0: unknown (token-id documents).
  size_t bytes = 0;
};

// What the run was: printed in the text header, emitted under "settings".
struct ReportSettings {
  std::string model_dir;
  std::string device;
  std::string tokenizer;
  bool ttt = true;     // the main run (DocResult::nll) used test-time training
  float inner_lr = 0;
  int mini_batch = 0;  // B
  int window = 0;      // W (sliding window)
  // Storage on the device as the tools' flags spell it ("f32", "f16", "bf16"); empty: not recorded.
  std::string weight_dtype, kv_dtype;
  // Anything else the app wants on record (e.g. {"dtype", "f32"}), in order.
  std::vector<std::pair<std::string, std::string>> extra;
};

// The main run against a KL-divergence base (ttt-perplexity --kl-divergence),
// llama.cpp's figures: per token, KLD = sum_j p_base(j) ln(p_base(j) / p(j))
// over the vocabulary, and Δp = p(target) - p_base(target).
struct KldSummary {
  std::string base;          // the base file
  bool other_model = false;  // made from another model directory's bytes
  size_t count = 0;          // tokens compared
  double kld_mean = 0, kld_err = 0;
  double dp_mean = 0, dp_err = 0, dp_rms = 0;
  double same_top = 0, same_top_err = 0;  // fraction of tokens whose most likely next token is the base's
  // ("max", v), ("99.9%", v), ..., ("median", v), ..., ("min", v)
  std::vector<std::pair<std::string, double>> kld_percentiles, dp_percentiles;
};

struct ReportInput {
  std::vector<DocResult> docs;
  ReportSettings settings;
  double seconds = 0;    // scoring time of the whole evaluation (all runs; kernel compilation excluded)
  bool compare = false;  // docs carry nll_base: report both runs and their difference
  // An interrupted run: docs hold only what was scored (a document's scored
  // prefix counts); the planned counts are what the whole run would have had.
  bool partial = false;
  size_t documents_planned = 0, tokens_planned = 0;
  // Partial only: every mode the run was to score, and those whose figures it
  // holds (an interrupted --compare ttt,swa may hold ttt's alone: then compare is false).
  std::vector<std::string> modes_planned, modes_scored;
  // The modes every document was scored in (ttt-perplexity --compare), as
  // (name, label) pairs: e.g. ("ttt", "TTT"), ("swa", "no TTT"), ("full",
  // "full attention"). Two or more whose last is "full" (the reference): the
  // renderings add each mode's figures and its difference to the reference,
  // the paper's Fig. 6. Otherwise the first two label the compare pair.
  std::vector<std::pair<std::string, std::string>> modes;
  std::optional<KldSummary> kld;  // --kl-divergence: the main run against its base
};

// Whether in carries a comparison against full attention (see ReportInput::modes).
bool has_reference_mode(const ReportInput& in);
// The documents as mode k against the reference (the last mode): nll is mode
// k's, nll_base the reference's, so summarize(view, true) and
// position_buckets(view, true) give mode k, the reference and their difference.
std::vector<DocResult> mode_view(const std::vector<DocResult>& docs, size_t k);
// Bits per byte of the scored tokens: total NLL / ln 2 / bytes, over the
// documents that know their bytes (0 when none do).
double bits_per_byte(const std::vector<DocResult>& docs);

// Throws ttt::Error when compare is on and a document's nll_base does not
// match its nll in length. Every function below that takes compare calls it.
void validate_report_input(const ReportInput& in);

// Both runs of one document or of all together, plus their paired per-token
// difference nll - nll_base (delta: mean_nll is the mean difference, nll_err
// its standard error, and ppl = exp(mean) = ppl / ppl_base, the PPL ratio).
// base and delta are empty (count 0) unless compare.
struct Summary {
  PplStats run, base, delta;
  double seconds = 0, seconds_base = 0;
  double tokens_per_s() const { return seconds > 0 ? double(run.count) / seconds : 0; }
  double tokens_per_s_base() const { return seconds_base > 0 ? double(base.count) / seconds_base : 0; }
};
Summary summarize(const DocResult& doc, bool compare);
Summary summarize(const std::vector<DocResult>& docs, bool compare);

// Position buckets [lo, hi): [0, 1024), [1024, 2048), [2048, 4096), ... each
// twice the last. Only buckets holding tokens are returned, in order.
struct Bucket {
  size_t lo = 0, hi = 0;
  size_t count = 0;           // tokens in the bucket over the documents
  double mean_nll = 0;        // == stats.mean_nll
  double mean_nll_base = 0;   // == stats_base.mean_nll; 0 unless compare
  PplStats stats, stats_base, delta;  // as in Summary
};
size_t bucket_index(size_t pos);                          // 1023 -> 0, 1024 -> 1, 2048 -> 2
std::pair<size_t, size_t> bucket_range(size_t index);     // 0 -> [0, 1024), 1 -> [1024, 2048)
std::string bucket_label(size_t lo, size_t hi);           // "0-1K", "1K-2K", "512K-1M"
std::vector<Bucket> position_buckets(const std::vector<DocResult>& docs, bool compare);
std::vector<Bucket> position_buckets(const DocResult& doc, bool compare);

// The plain-text report: settings, one line per document (and the total
// when there are several), the bucket table, and last the line "PPL = x ± err"
// (llama.cpp's final estimate, so a harness can read the last line).
std::string format_report(const ReportInput& in);

// Everything in the report as JSON; the key names are listed in report_json.cpp.
nlohmann::json report_json(const ReportInput& in);

// A standalone SVG of mean NLL against token position (log axis); with
// compare both runs and a panel of their difference.
struct SvgOptions {
  int width = 880;
  int height = 0;       // 0: 500, or 680 with compare (room for the difference panel)
  bool log_x = true;    // log-spaced position axis, where the early drop is visible
  std::string title;    // default: "Loss by token position" plus the model directory's name
};
std::string render_svg(const ReportInput& in, const SvgOptions& opt = {});

// Text safe for JSON and XML: invalid UTF-8 becomes U+FFFD, control
// characters (other than tab) become spaces. Document names come from file
// names, which need not be either.
std::string clean_text(const std::string& s);

}  // namespace ttt
