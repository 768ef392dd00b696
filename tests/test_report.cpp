// The perplexity report: statistics against hand-computed values (llama.cpp's
// error formula), bucket edges, text, JSON and SVG renderings with and without
// compare, and the KL-divergence base files behind --kl-divergence (the
// progress display is in test_progress.cpp).
#include "ttt/report.hpp"

#include "lib/eval/kld.hpp"

#include "ttt/error.hpp"
#include "tests/text_util.hpp"
#include "tests/xml_check.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace ttt {
namespace {

// Suites are named report* so that `ctest -R report` selects them: ctest
// knows the tests by their gtest names only.
using json = nlohmann::json;

// ---- statistics ----

TEST(reportStats, EmptyHasNoNaN) {
  const PplStats s = ppl_stats({});
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.mean_nll, 0.0);
  EXPECT_EQ(s.ppl, 1.0);
  EXPECT_EQ(s.ppl_err, 0.0);
  EXPECT_EQ(s.nll_err, 0.0);
}

TEST(reportStats, OneValueHasNoError) {
  const PplStats s = ppl_stats({2.0f});
  EXPECT_EQ(s.count, 1u);
  EXPECT_DOUBLE_EQ(s.mean_nll, 2.0);
  EXPECT_DOUBLE_EQ(s.ppl, std::exp(2.0));
  EXPECT_EQ(s.ppl_err, 0.0);
}

// By hand: sum 10, sum_sq 30, m = 2.5, m2 = 30/4 - 6.25 = 1.25,
// nll_err = sqrt(1.25 / 3), ppl = e^2.5, ppl_err = ppl * nll_err.
TEST(reportStats, LlamaCppErrorFormula) {
  const PplStats s = ppl_stats({1, 2, 3, 4});
  EXPECT_EQ(s.count, 4u);
  EXPECT_DOUBLE_EQ(s.mean_nll, 2.5);
  EXPECT_NEAR(s.ppl, 12.182493960703473, 1e-12);
  EXPECT_NEAR(s.nll_err, 0.6454972243679028, 1e-12);
  EXPECT_NEAR(s.ppl_err, 7.863766037512831, 1e-11);

  // sum 9, sum_sq 24.125: m = 1.8, m2 = 4.825 - 3.24 = 1.585, nll_err = sqrt(1.585 / 4).
  const PplStats t = ppl_stats({0.5f, 1.5f, 2.25f, 4.0f, 0.75f});
  EXPECT_NEAR(t.mean_nll, 1.8, 1e-12);
  EXPECT_NEAR(t.nll_err, 0.6294839156007086, 1e-12);
  EXPECT_NEAR(t.ppl, 6.0496474644129465, 1e-12);
  EXPECT_NEAR(t.ppl_err, 3.80815577390256, 1e-11);
}

TEST(reportStats, ConstantValuesGiveZeroError) {
  // sum_sq/N - m^2 can round below zero; llama.cpp reports that as an
  // error, we as a zero standard error.
  const PplStats s = ppl_stats(std::vector<float>(1000, 3.1f));
  EXPECT_EQ(s.nll_err, 0.0);
  EXPECT_EQ(s.ppl_err, 0.0);
  EXPECT_NEAR(s.mean_nll, 3.1, 1e-6);
}

TEST(reportStats, MatchesTwoPassStandardError) {
  std::mt19937 rng(7);
  std::gamma_distribution<float> g(0.8f, 3.0f);
  std::vector<float> v(93);
  for (float& x : v) x = g(rng);
  double m = 0;
  for (float x : v) m += x;
  m /= double(v.size());
  double ss = 0;
  for (float x : v) ss += (x - m) * (x - m);
  const double err = std::sqrt(ss / double(v.size()) / double(v.size() - 1));
  const PplStats s = ppl_stats(v);
  EXPECT_NEAR(s.mean_nll, m, 1e-12);
  EXPECT_NEAR(s.nll_err, err, 1e-10);
  EXPECT_NEAR(s.ppl_err, std::exp(m) * err, 1e-9);
}

TEST(reportStats, SumsMerge) {
  NllSum a, b, all;
  for (int i = 0; i < 7; ++i) a.add(0.25 * i), all.add(0.25 * i);
  for (int i = 0; i < 5; ++i) b.add(1.0 + i), all.add(1.0 + i);
  a.add(b);
  const PplStats x = a.stats(), y = all.stats();
  EXPECT_EQ(x.count, 12u);
  EXPECT_DOUBLE_EQ(x.mean_nll, y.mean_nll);
  EXPECT_DOUBLE_EQ(x.ppl_err, y.ppl_err);
}

// ---- buckets ----

// A document whose NLL at position i is f(i), and without TTT f(i) + 0.5.
DocResult doc(const std::string& name, size_t n, bool compare = false, float (*f)(size_t) = nullptr) {
  DocResult d;
  d.name = name;
  for (size_t i = 0; i < n; ++i) {
    const float v = f ? f(i) : 2.0f + float(i % 7) * 0.25f;
    d.nll.push_back(v);
    if (compare) d.nll_base.push_back(v + 0.5f);
  }
  d.seconds = double(n) / 100.0;
  d.seconds_base = compare ? double(n) / 400.0 : 0;
  return d;
}

TEST(reportBuckets, IndexRangeAndLabel) {
  EXPECT_EQ(bucket_index(0), 0u);
  EXPECT_EQ(bucket_index(1023), 0u);
  EXPECT_EQ(bucket_index(1024), 1u);
  EXPECT_EQ(bucket_index(1025), 1u);
  EXPECT_EQ(bucket_index(2047), 1u);
  EXPECT_EQ(bucket_index(2048), 2u);
  EXPECT_EQ(bucket_index(4095), 2u);
  EXPECT_EQ(bucket_index(4096), 3u);
  EXPECT_EQ(bucket_index(131071), 7u);
  EXPECT_EQ(bucket_range(0), std::make_pair(size_t(0), size_t(1024)));
  EXPECT_EQ(bucket_range(1), std::make_pair(size_t(1024), size_t(2048)));
  EXPECT_EQ(bucket_range(3), std::make_pair(size_t(4096), size_t(8192)));
  EXPECT_EQ(bucket_label(0, 1024), "0-1K");
  EXPECT_EQ(bucket_label(1024, 2048), "1K-2K");
  EXPECT_EQ(bucket_label(8192, 16384), "8K-16K");
  const auto [lo, hi] = bucket_range(10);
  EXPECT_EQ(bucket_label(lo, hi), "512K-1M");
  for (size_t p : {0, 1, 1023, 1024, 1025, 2048, 5000, 100000}) {
    const auto [a, b] = bucket_range(bucket_index(p));
    EXPECT_LE(a, p);
    EXPECT_LT(p, b);
  }
}

TEST(reportBuckets, EdgesAt1024) {
  auto f = [](size_t i) { return i < 1024 ? 1.0f : 3.0f; };
  // 1024 values: positions 0..1023, one bucket.
  auto b = position_buckets(doc("a", 1024, false, f), false);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].count, 1024u);
  // 1025 values: position 1024 opens the second bucket.
  b = position_buckets(doc("a", 1025, false, f), false);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].lo, 0u);
  EXPECT_EQ(b[0].hi, 1024u);
  EXPECT_EQ(b[0].count, 1024u);
  EXPECT_DOUBLE_EQ(b[0].mean_nll, 1.0);
  EXPECT_EQ(b[1].lo, 1024u);
  EXPECT_EQ(b[1].hi, 2048u);
  EXPECT_EQ(b[1].count, 1u);
  EXPECT_DOUBLE_EQ(b[1].mean_nll, 3.0);
  EXPECT_EQ(b[1].stats.ppl_err, 0.0);  // one token
  // 2049 values: position 2048 is the first of 2K-4K.
  b = position_buckets(doc("a", 2049, false, f), false);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[1].count, 1024u);
  EXPECT_EQ(b[2].lo, 2048u);
  EXPECT_EQ(b[2].count, 1u);
}

TEST(reportBuckets, EmptyOnesOmittedAndDocumentsPooled) {
  EXPECT_TRUE(position_buckets(std::vector<DocResult>{}, false).empty());
  EXPECT_TRUE(position_buckets(doc("empty", 0), false).empty());
  // 1500 positions: 0-1K and 1K-2K, nothing beyond.
  EXPECT_EQ(position_buckets(doc("a", 1500), false).size(), 2u);

  auto two = [](size_t) { return 2.0f; };
  auto four = [](size_t) { return 4.0f; };
  const std::vector<DocResult> docs = {doc("long", 3000, false, two), doc("short", 500, false, four),
                                       doc("empty", 0)};
  const auto b = position_buckets(docs, false);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].count, 1524u);  // 1024 + 500
  EXPECT_NEAR(b[0].mean_nll, (1024 * 2.0 + 500 * 4.0) / 1524, 1e-12);
  EXPECT_EQ(b[1].count, 1024u);
  EXPECT_DOUBLE_EQ(b[1].mean_nll, 2.0);
  EXPECT_EQ(b[2].lo, 2048u);
  EXPECT_EQ(b[2].count, 952u);
  size_t total = 0;
  for (const Bucket& x : b) total += x.count;
  EXPECT_EQ(total, 3500u);
  EXPECT_EQ(summarize(docs, false).run.count, 3500u);
}

TEST(reportBuckets, CompareCarriesBothRunsAndDifference) {
  const auto b = position_buckets(doc("a", 1500, true), true);
  ASSERT_EQ(b.size(), 2u);
  for (const Bucket& x : b) {
    EXPECT_NEAR(x.mean_nll_base - x.mean_nll, 0.5, 1e-6);
    EXPECT_NEAR(x.delta.mean_nll, -0.5, 1e-6);
    EXPECT_NEAR(x.delta.ppl, std::exp(-0.5), 1e-6);  // the PPL ratio
    EXPECT_EQ(x.stats_base.count, x.count);
  }
  // Without compare the base fields stay empty, even if nll_base is filled.
  const auto c = position_buckets(doc("a", 1500, true), false);
  EXPECT_EQ(c[0].mean_nll_base, 0.0);
  EXPECT_EQ(c[0].stats_base.count, 0u);
}

TEST(reportBuckets, CompareNeedsMatchingLengths) {
  DocResult d = doc("broken", 100, true);
  d.nll_base.pop_back();
  EXPECT_THROW(position_buckets(d, true), Error);
  EXPECT_NO_THROW(position_buckets(d, false));
  ReportInput in;
  in.docs = {d};
  in.compare = true;
  EXPECT_THROW(format_report(in), Error);
  EXPECT_THROW(report_json(in), Error);
  EXPECT_THROW(render_svg(in), Error);
}

// ---- text report ----

ReportInput sample(bool compare, size_t ndocs = 3) {
  ReportInput in;
  in.compare = compare;
  in.settings.model_dir = "/models/tiny";
  in.settings.device = "pocl cpu";
  in.settings.tokenizer = "bytes";
  in.settings.inner_lr = 0.01f;
  in.settings.mini_batch = 16;
  in.settings.window = 64;
  in.settings.extra = {{"dtype", "f32"}};
  const size_t lens[] = {3000, 1025, 200};
  const char* names[] = {"alpha.txt", "beta <&> \"q\".txt", "gamma.txt"};
  for (size_t i = 0; i < ndocs; ++i) in.docs.push_back(doc(names[i % 3], lens[i % 3], compare));
  in.seconds = 50;
  return in;
}


bool has_line_starting(const std::string& text, const std::string& prefix) {
  for (const auto& l : lines(text))
    if (l.rfind(prefix, 0) == 0) return true;
  return false;
}

TEST(reportText, SeveralDocumentsTotalsBucketsAndFinalLine) {
  const ReportInput in = sample(false);
  const std::string r = format_report(in);
  std::vector<float> all;
  for (const auto& d : in.docs) all.insert(all.end(), d.nll.begin(), d.nll.end());
  const PplStats s = ppl_stats(all);
  const auto ls = lines(r);
  ASSERT_FALSE(ls.empty());
  char want[64];
  std::snprintf(want, sizeof want, "PPL = %.4f \xc2\xb1 %.5f", s.ppl, s.ppl_err);
  EXPECT_EQ(ls.back(), want);
  EXPECT_TRUE(has_line_starting(r, "alpha.txt"));
  EXPECT_TRUE(has_line_starting(r, "beta <&> \"q\".txt"));
  EXPECT_TRUE(has_line_starting(r, "gamma.txt"));
  EXPECT_TRUE(has_line_starting(r, "total"));
  EXPECT_TRUE(has_line_starting(r, "0-1K"));
  EXPECT_TRUE(has_line_starting(r, "1K-2K"));
  EXPECT_TRUE(has_line_starting(r, "2K-4K"));
  EXPECT_FALSE(has_line_starting(r, "4K-8K"));
  EXPECT_NE(r.find("/models/tiny"), std::string::npos);
  EXPECT_NE(r.find("inner_lr 0.01"), std::string::npos);
  EXPECT_NE(r.find("dtype"), std::string::npos);
  EXPECT_EQ(r.find("no TTT"), std::string::npos);
  EXPECT_NE(r.find("100.0"), std::string::npos);  // tok/s: n / (n / 100)
}

TEST(reportText, OneDocumentHasNoTotalRow) {
  const std::string r = format_report(sample(false, 1));
  EXPECT_TRUE(has_line_starting(r, "alpha.txt"));
  EXPECT_FALSE(has_line_starting(r, "total"));
  EXPECT_EQ(lines(r).back().rfind("PPL = ", 0), 0u);
}

TEST(reportText, CompareShowsBothRunsAndDifference) {
  const std::string r = format_report(sample(true));
  const auto ls = lines(r);
  ASSERT_GE(ls.size(), 2u);
  EXPECT_EQ(ls.back().rfind("PPL = ", 0), 0u);
  EXPECT_EQ(ls[ls.size() - 2].rfind("PPL (no TTT) = ", 0), 0u);
  EXPECT_NE(r.find("mean NLL"), std::string::npos);
  EXPECT_NE(r.find("-0.5000"), std::string::npos);  // Δ NLL of every row
  EXPECT_NE(r.find("-39.35%"), std::string::npos);  // ΔPPL: exp(-0.5) - 1
}

TEST(reportKld, TextAndJson) {
  ReportInput in = sample(false, 1);
  EXPECT_EQ(format_report(in).find("KL divergence"), std::string::npos);
  EXPECT_FALSE(report_json(in).contains("kld"));
  KldSummary k;
  k.base = "ttt.kld";
  k.count = 999;
  k.kld_mean = 0.0123456, k.kld_err = 0.0001;
  k.dp_mean = -0.0125, k.dp_err = 0.001, k.dp_rms = 0.03;
  k.same_top = 0.875, k.same_top_err = 0.01;
  k.kld_percentiles = {{"max", 0.5}, {"median", 0.01}, {"min", 0}};
  k.dp_percentiles = {{"max", 0.2}, {"median", -0.01}, {"min", -0.3}};
  in.kld = k;
  const std::string r = format_report(in);
  EXPECT_TRUE(has_line_starting(r, "KL divergence against ttt.kld: 999 tokens"));
  EXPECT_NE(r.find("mean KLD         0.012346 \xc2\xb1 0.000100"), std::string::npos);
  EXPECT_NE(r.find("mean \xce\x94p          -1.250 \xc2\xb1 0.100 %"), std::string::npos);
  EXPECT_NE(r.find("RMS \xce\x94p           3.000 %"), std::string::npos);
  EXPECT_NE(r.find("max 20.000%, median -1.000%, min -30.000%"), std::string::npos);
  EXPECT_NE(r.find("same top token   87.500 \xc2\xb1 1.000 %"), std::string::npos);
  EXPECT_EQ(lines(r).back().rfind("PPL = ", 0), 0u);
  const json j = report_json(in)["kld"];
  EXPECT_EQ(j["base"], "ttt.kld");
  EXPECT_EQ(j["tokens"], 999);
  EXPECT_DOUBLE_EQ(j["kld_mean"].get<double>(), 0.0123456);
  EXPECT_DOUBLE_EQ(j["dp_rms"].get<double>(), 0.03);
  EXPECT_DOUBLE_EQ(j["same_top"].get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(j["kld_percentiles"]["max"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["dp_percentiles"]["min"].get<double>(), -0.3);
  EXPECT_FALSE(j["other_model"].get<bool>());
}

// ---- KL-divergence base files (lib/eval/kld) ----

TEST(reportKld, QuantisedRowKeepsTheLogProbabilities) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.f, 3.f);
  std::vector<float> x(93);
  for (float& v : x) v = g(rng);
  x[40] = x[41] = 20.f;  // a tie: the lowest index is the top
  const KldRow r = quantize_logits(x);
  EXPECT_EQ(r.top, 40u);
  double lse = 0;
  for (float v : x) lse += std::exp(double(v) - 20.0);
  lse = 20.0 + std::log(lse);
  EXPECT_NEAR(r.log_sum_exp, lse, 1e-5);
  for (size_t j = 0; j < x.size(); ++j) {
    const double want = std::max(double(x[j]) - lse, 20.0 - lse - double(kKldRange));
    EXPECT_NEAR(r.log_prob(j), want, r.scale) << "token " << j;
  }
}

TEST(reportKld, BaseFileRoundTripAndComparison) {
  const std::string path = testing::TempDir() + "/report_kld.kld";
  std::vector<Document> docs{{"a", {1, 0, 1}, 0}, {"b", {0, 1}, 0}};  // 2 + 1 predicted tokens, V = 2
  const KldHeader h = kld_header(docs, 2, 7);
  {
    KldWriter w(path, h);
    w.row(0, 0, std::vector<float>{0.f, 0.f});  // p = (0.5, 0.5)
    w.row(0, 1, std::vector<float>{3.f, 1.f});
    w.row(1, 0, std::vector<float>{-2.f, 5.f});
    EXPECT_THROW(w.row(0, 0, std::vector<float>{0.f, 0.f}), Error) << "rows past the last one";
    w.commit();
  }
  KldComparer same(path, h);
  EXPECT_FALSE(same.other_model());
  same.row(0, 0, 0, std::vector<float>{4.f, 4.f});  // shifted logits: the same distribution
  same.row(0, 1, 1, std::vector<float>{3.f, 1.f});
  same.row(1, 0, 1, std::vector<float>{-2.f, 5.f});
  const KldSummary s = same.summary();
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.kld_mean, 0.0);
  EXPECT_EQ(s.dp_rms, 0.0);
  EXPECT_EQ(s.same_top, 1.0);

  KldComparer other(path, kld_header(docs, 2, 8));
  EXPECT_TRUE(other.other_model());
  other.row(0, 0, 0, std::vector<float>{float(std::log(3.0)), 0.f});  // p = (0.75, 0.25) against (0.5, 0.5)
  const KldSummary o = other.summary();
  EXPECT_NEAR(o.kld_mean, 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25), 1e-3);
  EXPECT_NEAR(o.dp_mean, 0.25, 1e-3);  // p(target 0): 0.75 - 0.5
  EXPECT_EQ(o.same_top, 1.0);          // the tie's top is token 0, as is 0.75's

  // Another vocabulary, other tokens, another token count: refused, naming the file.
  auto refused = [&](const KldHeader& want, const char* what) {
    try {
      KldComparer c(path, want);
      ADD_FAILURE() << "accepted a base of " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  refused(kld_header(docs, 3, 7), "another vocabulary");
  std::vector<Document> changed = docs;
  changed[1].tokens = {1, 1};
  refused(kld_header(changed, 2, 7), "other tokens");
  changed[1].tokens = {0, 1, 1};
  refused(kld_header(changed, 2, 7), "another token count");
  std::remove(path.c_str());
}

TEST(reportText, EmptyInputStillRenders) {
  ReportInput in;
  const std::string r = format_report(in);
  EXPECT_EQ(lines(r).back(), "PPL = - (no tokens)");
}

TEST(reportText, PartialRunIsMarked) {
  ReportInput in = sample(false);
  EXPECT_EQ(format_report(in).find("INTERRUPTED"), std::string::npos);
  in.partial = true;
  in.documents_planned = 5;
  in.tokens_planned = 9999;
  const std::string r = format_report(in);
  EXPECT_NE(r.find("INTERRUPTED: partial results, 4225 of 9999 tokens scored in 3 of 5 documents"), std::string::npos)
      << r;
  EXPECT_EQ(lines(r).back().rfind("PPL = ", 0), 0u);  // still last, for harnesses
}

// ---- JSON ----

TEST(reportJson, PartialRunIsMarked) {
  ReportInput in = sample(false);
  json j = report_json(in);
  EXPECT_EQ(j["partial"], false);
  EXPECT_FALSE(j.contains("planned"));
  in.partial = true;
  in.documents_planned = 5;
  in.tokens_planned = 9999;
  j = report_json(in);
  EXPECT_EQ(j["partial"], true);
  EXPECT_EQ(j["planned"]["documents"], 5);
  EXPECT_EQ(j["planned"]["tokens"], 9999);
  EXPECT_EQ(j["total"]["tokens"], 4225);
  // An interrupted --compare ttt,swa that holds ttt's figures alone says so.
  in.modes_planned = {"ttt", "swa"};
  in.modes_scored = {"ttt"};
  j = report_json(in);
  EXPECT_EQ(j["settings"]["compare"], false);
  EXPECT_EQ(j["planned"]["modes"], json({"ttt", "swa"}));
  EXPECT_EQ(j["planned"]["modes_scored"], json({"ttt"}));
}

TEST(reportJson, KeysAndValues) {
  const ReportInput in = sample(false);
  const json j = report_json(in);
  EXPECT_EQ(j.at("format"), "ttt-perplexity-report");
  EXPECT_EQ(j.at("version"), 1);
  const json& st = j.at("settings");
  EXPECT_EQ(st.at("model"), "/models/tiny");
  EXPECT_EQ(st.at("device"), "pocl cpu");
  EXPECT_EQ(st.at("tokenizer"), "bytes");
  EXPECT_EQ(st.at("ttt"), true);
  EXPECT_DOUBLE_EQ(st.at("inner_lr").get<double>(), 0.01);  // shortest decimal of 0.01f
  EXPECT_EQ(st.at("mini_batch"), 16);
  EXPECT_EQ(st.at("window"), 64);
  EXPECT_EQ(st.at("compare"), false);
  EXPECT_EQ(st.at("extra").at("dtype"), "f32");
  EXPECT_DOUBLE_EQ(j.at("timing").at("seconds").get<double>(), 50.0);
  EXPECT_NEAR(j.at("timing").at("tokens_per_s").get<double>(), 100.0, 1e-9);
  EXPECT_FALSE(j.at("timing").contains("tokens_per_s_base"));

  ASSERT_EQ(j.at("documents").size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const json& d = j["documents"][i];
    const PplStats s = ppl_stats(in.docs[i].nll);
    EXPECT_EQ(d.at("name"), in.docs[i].name);
    EXPECT_EQ(d.at("tokens"), s.count);
    EXPECT_DOUBLE_EQ(d.at("mean_nll").get<double>(), s.mean_nll);
    EXPECT_DOUBLE_EQ(d.at("ppl").get<double>(), s.ppl);
    EXPECT_DOUBLE_EQ(d.at("ppl_err").get<double>(), s.ppl_err);
    EXPECT_DOUBLE_EQ(d.at("nll_err").get<double>(), s.nll_err);
    EXPECT_NEAR(d.at("tokens_per_s").get<double>(), 100.0, 1e-9);
    EXPECT_NEAR(d.at("seconds").get<double>(), in.docs[i].seconds, 1e-12);
    EXPECT_EQ(d.at("buckets").size(), position_buckets(in.docs[i], false).size());
    EXPECT_FALSE(d.contains("base"));
    EXPECT_FALSE(d.contains("delta"));
  }
  const auto buckets = position_buckets(in.docs, false);
  ASSERT_EQ(j.at("buckets").size(), buckets.size());
  for (size_t k = 0; k < buckets.size(); ++k) {
    const json& b = j["buckets"][k];
    EXPECT_EQ(b.at("lo"), buckets[k].lo);
    EXPECT_EQ(b.at("hi"), buckets[k].hi);
    EXPECT_EQ(b.at("label"), bucket_label(buckets[k].lo, buckets[k].hi));
    EXPECT_EQ(b.at("tokens"), buckets[k].count);
    EXPECT_DOUBLE_EQ(b.at("mean_nll").get<double>(), buckets[k].mean_nll);
    EXPECT_TRUE(b.contains("ppl") && b.contains("ppl_err") && b.contains("nll_err"));
  }
  EXPECT_EQ(j["buckets"][0]["label"], "0-1K");
  EXPECT_EQ(j.at("total").at("tokens"), 3000u + 1025u + 200u);
  // Round trip through text, as a harness would read it.
  EXPECT_EQ(json::parse(j.dump()), j);
}

TEST(reportJson, CompareAddsBaseAndDelta) {
  const ReportInput in = sample(true);
  const json j = report_json(in);
  EXPECT_EQ(j["settings"]["compare"], true);
  EXPECT_NEAR(j["timing"]["tokens_per_s_base"].get<double>(), 400.0, 1e-9);
  for (const json* o : {&j["total"], &j["documents"][0], &j["buckets"][0], &j["documents"][1]["buckets"][1]}) {
    ASSERT_TRUE(o->contains("base")) << o->dump();
    ASSERT_TRUE(o->contains("delta"));
    EXPECT_NEAR((*o)["base"]["mean_nll"].get<double>() - (*o)["mean_nll"].get<double>(), 0.5, 1e-6);
    EXPECT_NEAR((*o)["delta"]["mean_nll"].get<double>(), -0.5, 1e-6);
    EXPECT_NEAR((*o)["delta"]["ppl"].get<double>(), (*o)["ppl"].get<double>() / (*o)["base"]["ppl"].get<double>(),
                1e-6);
    EXPECT_EQ((*o)["base"]["tokens"], (*o)["tokens"]);
  }
  EXPECT_NEAR(j["documents"][0]["base"]["tokens_per_s"].get<double>(), 400.0, 1e-9);
  EXPECT_FALSE(j["buckets"][0]["base"].contains("tokens_per_s"));  // buckets carry no timing
}

TEST(reportJson, EmptyDocumentGivesNulls) {
  ReportInput in;
  in.docs.push_back(doc("one-token-document", 0));
  const json j = report_json(in);
  const json& d = j["documents"][0];
  EXPECT_EQ(d["tokens"], 0);
  EXPECT_TRUE(d["mean_nll"].is_null());
  EXPECT_TRUE(d["ppl"].is_null());
  EXPECT_TRUE(d["ppl_err"].is_null());
  EXPECT_TRUE(d["tokens_per_s"].is_null());
  EXPECT_TRUE(j["buckets"].empty());
  EXPECT_TRUE(j["total"]["ppl"].is_null());
}

TEST(reportJson, BadUtf8NamesStillDump) {
  ReportInput in;
  in.docs.push_back(doc(std::string("caf\xc3\xa9-\xff\xfe-\x01.txt"), 10));
  in.settings.device = "\xc3";
  const json j = report_json(in);
  std::string s;
  ASSERT_NO_THROW(s = j.dump());
  EXPECT_EQ(j["documents"][0]["name"], "caf\xc3\xa9-\xef\xbf\xbd\xef\xbf\xbd- .txt");
  EXPECT_EQ(clean_text("ok \xe2\x82\xac"), "ok \xe2\x82\xac");              // a 3-byte sequence passes
  EXPECT_EQ(clean_text("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");              // cut short
  EXPECT_EQ(clean_text("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");              // overlong '/'
  EXPECT_EQ(clean_text("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
}

// ---- SVG ----


TEST(reportSvg, CheckerCatchesBrokenXml) {
  EXPECT_TRUE(test::well_formed("<svg><g a=\"1\"><text>x &amp; y</text></g><path d=\"M0 0\"/></svg>"));
  EXPECT_FALSE(test::well_formed("<svg><g></svg>"));
  EXPECT_FALSE(test::well_formed("<svg><text>a & b</text></svg>"));
  EXPECT_FALSE(test::well_formed("<svg a=1></svg>"));
  EXPECT_FALSE(test::well_formed("<svg></svg><svg></svg>"));
}

TEST(reportSvg, WellFormedWithOneCurve) {
  ReportInput in = sample(false);
  in.settings.model_dir = "/models/<R&D> \"x\"";
  const std::string svg = render_svg(in);
  EXPECT_TRUE(test::well_formed(svg));
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("&lt;R&amp;D&gt; &quot;x&quot;"), std::string::npos);
  EXPECT_EQ(count(svg, "<path "), 1u);
  EXPECT_EQ(count(svg, "<circle "), position_buckets(in.docs, false).size() + 1);  // + legend
  EXPECT_EQ(svg.find("no TTT"), std::string::npos);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("@import"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(reportSvg, CompareDrawsBothCurvesAndTheDifference) {
  const ReportInput in = sample(true);
  const std::string svg = render_svg(in);
  EXPECT_TRUE(test::well_formed(svg));
  EXPECT_EQ(count(svg, "<path "), 3u);  // TTT, no TTT, difference
  EXPECT_NE(svg.find(">TTT: PPL"), std::string::npos);
  EXPECT_NE(svg.find(">no TTT: PPL"), std::string::npos);
  // the two runs in distinct colours
  const size_t p1 = svg.find("<path "), p2 = svg.find("<path ", p1 + 1);
  auto stroke = [&](size_t at) {
    const size_t a = svg.find("stroke=\"", at) + 8;
    return svg.substr(a, svg.find('"', a) - a);
  };
  EXPECT_NE(stroke(p1), stroke(p2));
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

// The geometry of a rendered plot, read back from the SVG: curve points
// (path class="curve"), bucket dots, the plot areas and the legend box.
struct Box {
  double x = 0, y = 0, w = 0, h = 0;
  bool contains(double px, double py) const { return px >= x && px <= x + w && py >= y && py <= y + h; }
  bool overlaps(const Box& o) const { return x < o.x + o.w && o.x < x + w && y < o.y + o.h && o.y < y + h; }
};
struct Plot {
  std::vector<std::vector<std::pair<double, double>>> paths;  // each curve's points, in path order
  std::vector<std::vector<size_t>> moves;                     // indices in a path where a subpath starts (M)
  std::vector<std::pair<double, double>> dots;
  std::vector<Box> areas;
  Box legend;
  std::vector<double> update_x;  // the dotted first-update lines
};

double attr(const std::string& tag, const std::string& name) {
  const size_t a = tag.find(" " + name + "=\"");
  if (a == std::string::npos) return NAN;
  return std::stod(tag.substr(a + name.size() + 3));
}

Plot read_plot(const std::string& svg) {
  Plot p;
  for (const std::string& l : lines(svg)) {
    if (l.find("class=\"curve\"") != std::string::npos) {
      const size_t a = l.find(" d=\"") + 4;
      const std::string d = l.substr(a, l.find('"', a) - a);
      p.paths.emplace_back();
      p.moves.emplace_back();
      for (size_t i = 0; i < d.size();) {
        const char op = d[i];
        size_t used = 0;
        const double x = std::stod(d.substr(i + 1), &used);
        i += 1 + used;
        const double y = std::stod(d.substr(i), &used);
        i += used;
        while (i < d.size() && d[i] == ' ') ++i;
        if (op == 'M') p.moves.back().push_back(p.paths.back().size());
        p.paths.back().push_back({x, y});
      }
    } else if (l.find("<circle class=\"dot\"") != std::string::npos) {
      p.dots.push_back({attr(l, "cx"), attr(l, "cy")});
    } else if (l.find("class=\"plot-area\"") != std::string::npos) {
      p.areas.push_back({attr(l, "x"), attr(l, "y"), attr(l, "width"), attr(l, "height")});
    } else if (l.find("id=\"legend-box\"") != std::string::npos) {
      p.legend = {attr(l, "x"), attr(l, "y"), attr(l, "width"), attr(l, "height")};
    } else if (l.find("class=\"first-update\"") != std::string::npos) {
      p.update_x.push_back(attr(l, "x1"));
    }
  }
  return p;
}

// Documents whose loss falls with position, like a model's: a curve from the
// top left to the bottom right, where a legend used to sit.
ReportInput falling(bool compare, size_t ndocs) {
  ReportInput in = sample(compare, 0);
  for (size_t k = 0; k < ndocs; ++k)
    in.docs.push_back(doc("d" + std::to_string(k), 3000 + 500 * k, compare,
                          [](size_t i) { return 5.5f - 0.1f * std::log2(float(i + 1)) + 0.05f * float(i % 3); }));
  return in;
}

TEST(reportSvg, LegendNeverCoversData) {
  for (bool cmp : {false, true})
    for (const ReportInput& in : {sample(cmp), falling(cmp, 1), falling(cmp, 4)}) {
      const Plot p = read_plot(render_svg(in));
      ASSERT_GT(p.legend.w, 0);
      ASSERT_EQ(p.areas.size(), cmp ? 2u : 1u);
      for (const Box& a : p.areas) EXPECT_FALSE(p.legend.overlaps(a)) << "the legend lies on a plot area";
      for (const auto& path : p.paths)
        for (auto [x, y] : path) EXPECT_FALSE(p.legend.contains(x, y)) << "curve point " << x << "," << y;
      for (auto [x, y] : p.dots) EXPECT_FALSE(p.legend.contains(x, y)) << "dot " << x << "," << y;
    }
}

TEST(reportSvg, AxesFitTheDataWithHeadroom) {
  for (bool cmp : {false, true}) {
    const Plot p = read_plot(render_svg(falling(cmp, 4)));
    ASSERT_FALSE(p.paths.empty());
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY;
    for (const auto& path : p.paths)
      for (auto [x, y] : path) xmin = std::min(xmin, x), xmax = std::max(xmax, x);
    for (auto [x, y] : p.dots) xmin = std::min(xmin, x), xmax = std::max(xmax, x);
    // The x axis starts at the first plotted position (not at 1) and ends at the last.
    EXPECT_NEAR(xmin, p.areas[0].x, 0.11);
    EXPECT_NEAR(xmax, p.areas[0].x + p.areas[0].w, 0.11);
    // Headroom: the highest point of the NLL panel stays clear of its top edge.
    for (size_t k = 0; k < (cmp ? 2u : 1u); ++k)
      for (auto [x, y] : p.paths[k]) ymin = std::min(ymin, y);
    EXPECT_GE(ymin - p.areas[0].y, 0.05 * p.areas[0].h);
  }
}

// Test-time training acts from position B on; a smoothing window that takes
// in positions on both sides shows a gain before there can be one.
TEST(reportSvg, NoSmoothingAcrossTheFirstUpdate) {
  for (bool cmp : {false, true}) {
    ReportInput in = sample(cmp, 0);
    in.settings.mini_batch = 64;
    for (int k = 0; k < 3; ++k)
      in.docs.push_back(doc("step", 2000, cmp, [](size_t i) { return i < 64 ? 5.0f : 4.0f; }));
    const Plot p = read_plot(render_svg(in));
    ASSERT_EQ(p.update_x.size(), cmp ? 2u : 1u);
    const auto& curve = p.paths[0];
    ASSERT_GT(curve.size(), 2u);
    const double before = curve.front().second, after = curve.back().second;
    ASSERT_GT(after - before, 10);  // 4 is lower than 5: larger y
    bool crossed = false;
    for (auto [x, y] : curve) {
      EXPECT_TRUE(std::fabs(y - before) < 0.06 || std::fabs(y - after) < 0.06) << "a mixed window at x " << x;
      EXPECT_EQ(x > p.update_x[0], std::fabs(y - after) < 0.06) << x;
      crossed = crossed || x > p.update_x[0];
    }
    EXPECT_TRUE(crossed);
    EXPECT_EQ(p.moves[0].size(), 2u) << "the curve is two segments, broken at the update";
  }
}

TEST(reportSvg, NoRepeatedPathPoints) {
  for (bool cmp : {false, true})
    for (const ReportInput& in : {sample(cmp), falling(cmp, 1), falling(cmp, 4)})
      for (const auto& path : read_plot(render_svg(in)).paths) {
        ASSERT_GT(path.size(), 2u);
        for (size_t i = 1; i < path.size(); ++i) EXPECT_NE(path[i], path[i - 1]) << "point " << i;
      }
}

TEST(reportSvg, EdgeCasesStayValid) {
  ReportInput empty;
  const std::string e = render_svg(empty);
  EXPECT_TRUE(test::well_formed(e));
  EXPECT_NE(e.find("no tokens"), std::string::npos);
  ReportInput one;
  one.docs.push_back(doc("one", 1));
  EXPECT_TRUE(test::well_formed(render_svg(one)));
  ReportInput flat;
  flat.docs.push_back(doc("flat", 5000, true, [](size_t) { return 2.0f; }));
  flat.compare = true;
  EXPECT_TRUE(test::well_formed(render_svg(flat)));
  SvgOptions lin;
  lin.log_x = false;
  lin.title = "linear & small";
  lin.width = 400;
  const std::string l = render_svg(sample(true), lin);
  EXPECT_TRUE(test::well_formed(l));
  EXPECT_NE(l.find("linear &amp; small"), std::string::npos);
  if (const char* dir = std::getenv("TTT_REPORT_SAMPLE_DIR")) {  // for looking at, e.g. with rsvg-convert
    std::FILE* f = std::fopen((std::string(dir) + "/sample-report.svg").c_str(), "w");
    if (f) {
      const std::string s = render_svg(sample(true));
      std::fwrite(s.data(), 1, s.size(), f);
      std::fclose(f);
    }
  }
}

// ---- modes (--compare ttt,swa,full) and bits per byte ----

ReportInput three_modes() {
  ReportInput in;
  in.compare = true;
  in.modes = {{"ttt", "TTT"}, {"swa", "no TTT"}, {"full", "full attention"}};
  in.settings.ttt = true;
  in.settings.mini_batch = 16;
  for (size_t n : {40u, 1500u}) {
    DocResult d = doc("d" + std::to_string(n), n, true);
    std::vector<float> full = d.nll;
    for (float& x : full) x -= 0.25f;
    d.mode_nll = {d.nll, d.nll_base, full};
    d.mode_seconds = {1, 2, 3};
    in.docs.push_back(d);
  }
  return in;
}

TEST(reportModes, EachModeAgainstFullAttention) {
  const ReportInput in = three_modes();
  ASSERT_TRUE(has_reference_mode(in));
  const Summary ttt = summarize(mode_view(in.docs, 0), true), swa = summarize(mode_view(in.docs, 1), true);
  EXPECT_NEAR(ttt.delta.mean_nll, 0.25, 1e-6);  // ttt - full
  EXPECT_NEAR(swa.delta.mean_nll, 0.75, 1e-6);  // (ttt + 0.5) - full
  const nlohmann::json j = report_json(in);
  ASSERT_EQ(j.at("modes").size(), 3u);
  EXPECT_EQ(j["modes"][2]["name"], "full");
  EXPECT_FALSE(j["modes"][2].contains("delta_full"));
  EXPECT_NEAR(j["modes"][1]["delta_full"]["mean_nll"].get<double>(), 0.75, 1e-6);
  EXPECT_EQ(j["documents"][1]["modes"].size(), 3u);
  const std::string text = format_report(in);
  EXPECT_NE(text.find("modes (each against full attention)"), std::string::npos);
  const std::string svg = render_svg(in);
  EXPECT_NE(svg.find("\xce\x94NLL (mode \xe2\x88\x92 full attention)"), std::string::npos);
  // Two modes without full are the classic pair: no modes section.
  ReportInput pair = in;
  pair.modes.pop_back();
  for (DocResult& d : pair.docs) d.mode_nll.pop_back(), d.mode_seconds.pop_back();
  EXPECT_FALSE(has_reference_mode(pair));
  EXPECT_FALSE(report_json(pair).contains("modes"));
}

TEST(reportModes, MismatchedModeIsAnError) {
  ReportInput in = three_modes();
  in.docs[0].mode_nll[2].pop_back();
  EXPECT_THROW(validate_report_input(in), Error);
}

TEST(reportBitsPerByte, NatsToBitsOverBytes) {
  std::vector<DocResult> docs{doc("a", 10), doc("b", 6)};
  EXPECT_EQ(bits_per_byte(docs), 0.0);  // token ids: unknown bytes
  docs[0].bytes = 20;
  double sum = 0;
  for (float x : docs[0].nll) sum += x;
  EXPECT_NEAR(bits_per_byte(docs), sum / std::log(2.0) / 20.0, 1e-12);  // b has no bytes: left out
}

}  // namespace
}  // namespace ttt
