// The training objectives' oracle (lib/reference/meta.hpp): forward pinned to
// RefModel<double>, gradients of pretrain and meta against central finite
// differences of the loss for every parameter tensor, meta_fo against finite
// differences with the inner increments frozen, and the relations between the
// three objectives; every autodiff op's first and second derivatives against
// finite differences. DISABLED_TimingByteModel measures the byte-level training config.
#include "lib/reference/autodiff.hpp"
#include "lib/reference/meta.hpp"
#include "lib/reference/model.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"
#include "tests/model_fixtures.hpp"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <functional>
#include <random>

namespace ttt::test {
namespace {

using ref::Objective;
namespace ad = ref::ad;

// 3 blocks, 2 with a prime MLP, W 6 < document, B 5: 18 targets = 3 full
// mini-batches and a partial one of 3; targets 3, 6 and 12 are BOS. The clip
// (2.65) leaves the first two steps alone and cuts the third (asserted below).
Config meta_config() {
  Config c = tiny_config();
  c.inner_clip_gradient = 2.65f;
  return c;
}

std::vector<int32_t> meta_tokens() {
  auto t = pattern_tokens(19, 23);
  t[0] = t[4] = t[7] = 2;  // bos_token_id (t[13] already is)
  return t;
}

double mean_non_bos(const std::vector<double>& nll, const std::vector<int32_t>& tok, int bos) {
  double s = 0;
  int n = 0;
  for (size_t i = 0; i < nll.size(); ++i)
    if (tok[i + 1] != bos) s += nll[i], ++n;
  return s / n;
}

double rel_diff(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < a[i].size(); ++j) {
      num += (a[i][j] - b[i][j]) * (a[i][j] - b[i][j]);
      den += b[i][j] * b[i][j];
    }
  return std::sqrt(num / den);
}

// Central differences of f at `per_tensor` sampled entries of every parameter
// tensor. The model holds floats: the step is whatever float(x +- h) gives,
// measured exactly in double.
void check_fd(Model m, const std::vector<std::vector<double>>& grads, const std::function<double(const Model&)>& f,
              int per_tensor, const char* what) {
  const ParamTable tab = param_table(m.config);
  ASSERT_EQ(grads.size(), tab.params.size());
  std::mt19937 rng(7);
  const double h = 1.0 / 8192;
  double worst_abs = 0, worst_rel = 0;
  int checked = 0;
  for (size_t p = 0; p < tab.params.size(); ++p) {
    std::vector<float>& w = tab.params[p].host(m);
    ASSERT_EQ(grads[p].size(), w.size()) << tab.params[p].name;
    for (int k = 0; k < per_tensor; ++k) {
      const size_t i = rng() % w.size();
      const float x0 = w[i], xp = float(x0 + h), xm = float(x0 - h);
      w[i] = xp;
      const double fp = f(m);
      w[i] = xm;
      const double fm = f(m);
      w[i] = x0;
      const double num = (fp - fm) / (double(xp) - double(xm)), ana = grads[p][i];
      const double err = std::fabs(ana - num);
      EXPECT_LE(err, 2e-8 + 1e-5 * std::fabs(num)) << what << " " << tab.params[p].name << "[" << i << "]: analytic "
                                                   << ana << " numeric " << num;
      worst_abs = std::max(worst_abs, err);
      if (std::fabs(num) > 1e-4) worst_rel = std::max(worst_rel, err / std::fabs(num));
      ++checked;
    }
  }
  std::printf("[ fd       ] %s: %d entries of %zu tensors, max abs err %.2e, max rel err (|g| > 1e-4) %.2e\n", what,
              checked, tab.params.size(), worst_abs, worst_rel);
}

// One autodiff op on small random inputs, reduced to a scalar by a cubic probe
// so that its second and third derivatives are not zero.
struct OpCase {
  const char* name;
  std::vector<std::pair<int, int>> shapes;
  std::function<ad::Var(const std::vector<ad::Var>&)> f;
  bool positive = false;  // inputs in (0.5, 1.5) (log, powc)
};

// order 1: the probe P and dP/dx; order 2: h = (dP/dx . v) and dh/dx, through create_graph.
double op_value(const OpCase& oc, const std::vector<std::vector<double>>& x, int order,
                std::vector<std::vector<double>>* grads) {
  ad::Tape t;
  std::vector<ad::Var> in;
  for (size_t i = 0; i < x.size(); ++i) in.push_back(t.leaf(oc.shapes[i].first, oc.shapes[i].second, x[i], true));
  ad::Var y = oc.f(in);
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  auto random_like = [&](ad::Var a) {
    std::vector<double> v(a->size());
    for (auto& e : v) e = u(rng);
    return t.constant(a->rows, a->cols, v);
  };
  ad::Var out = ad::scale(ad::sum_all(ad::mul(random_like(y), ad::mul(y, ad::mul(y, y)))), 1.0 / 3);
  if (order == 2) {
    std::vector<ad::Var> g = ad::grad(out, in, true);
    ad::Var h = nullptr;
    for (ad::Var gi : g) {
      ad::Var d = ad::sum_all(ad::mul(gi, random_like(gi)));
      h = h ? ad::add(h, d) : d;
    }
    out = h;
  }
  if (grads) {
    grads->clear();
    for (ad::Var g : ad::grad(out, in, false)) grads->push_back(g->v);
  }
  return out->v[0];
}

TEST(Autodiff, FirstAndSecondDerivativesOfEveryOp) {
  using V = const std::vector<ad::Var>&;
  const std::vector<OpCase> cases = {
      {"matmul", {{3, 4}, {4, 5}}, [](V a) { return ad::matmul(a[0], a[1]); }},
      {"matmul_ta", {{4, 3}, {4, 5}}, [](V a) { return ad::matmul(a[0], a[1], true, false); }},
      {"matmul_tb", {{3, 4}, {5, 4}}, [](V a) { return ad::matmul(a[0], a[1], false, true); }},
      {"matmul_tatb", {{4, 3}, {5, 4}}, [](V a) { return ad::matmul(a[0], a[1], true, true); }},
      {"add", {{2, 3}, {2, 3}}, [](V a) { return ad::add(a[0], a[1]); }},
      {"sub", {{2, 3}, {2, 3}}, [](V a) { return ad::sub(a[0], a[1]); }},
      {"mul", {{2, 3}, {2, 3}}, [](V a) { return ad::mul(a[0], a[1]); }},
      {"scale", {{2, 3}}, [](V a) { return ad::scale(a[0], -1.7); }},
      {"add_const", {{2, 3}}, [](V a) { return ad::add_const(a[0], 0.4); }},
      {"powc", {{2, 3}}, [](V a) { return ad::powc(a[0], -0.5); }, true},
      {"powc_-1", {{2, 3}}, [](V a) { return ad::powc(a[0], -1.0); }, true},
      {"exp", {{2, 3}}, [](V a) { return ad::exp(a[0]); }},
      {"log", {{2, 3}}, [](V a) { return ad::log(a[0]); }, true},
      {"sigmoid", {{2, 3}}, [](V a) { return ad::sigmoid(a[0]); }},
      {"silu", {{2, 3}}, [](V a) { return ad::silu(a[0]); }},
      {"mul_col", {{3, 4}, {3, 1}}, [](V a) { return ad::mul_col(a[0], a[1]); }},
      {"mul_row", {{3, 4}, {1, 4}}, [](V a) { return ad::mul_row(a[0], a[1]); }},
      {"mul_s", {{3, 4}, {1, 1}}, [](V a) { return ad::mul_s(a[0], a[1]); }},
      {"rowsum", {{3, 4}}, [](V a) { return ad::rowsum(a[0]); }},
      {"colsum", {{3, 4}}, [](V a) { return ad::colsum(a[0]); }},
      {"sum_all", {{3, 4}}, [](V a) { return ad::sum_all(a[0]); }},
      {"expand_col", {{3, 1}}, [](V a) { return ad::expand_col(a[0], 4); }},
      {"expand_row", {{1, 4}}, [](V a) { return ad::expand_row(a[0], 3); }},
      {"expand_all", {{1, 1}}, [](V a) { return ad::expand_all(a[0], 2, 3); }},
      {"reshape", {{3, 4}}, [](V a) { return ad::mul(ad::reshape(a[0], 6, 2), ad::reshape(a[0], 6, 2)); }},
      {"slice_rows", {{5, 3}}, [](V a) { return ad::slice_rows(a[0], 1, 3); }},
      {"pad_rows", {{2, 3}}, [](V a) { return ad::add_const(ad::pad_rows(a[0], 1, 4), 0.3); }},
      {"slice_cols", {{3, 5}}, [](V a) { return ad::slice_cols(a[0], 2, 2); }},
      {"pad_cols", {{3, 2}}, [](V a) { return ad::add_const(ad::pad_cols(a[0], 1, 4), 0.3); }},
      {"concat_rows", {{2, 3}, {3, 3}}, [](V a) { return ad::concat_rows(a[0], a[1]); }},
      {"concat_cols", {{3, 2}, {3, 1}, {3, 3}}, [](V a) { return ad::concat_cols(a); }},
      {"gather_rows", {{4, 3}}, [](V a) { return ad::gather_rows(a[0], {2, 0, 2, 3, 2}); }},
      {"scatter_rows", {{5, 3}}, [](V a) { return ad::scatter_rows(a[0], {2, 0, 2, 3, 2}, 4); }},
      {"pick", {{3, 4}}, [](V a) { return ad::pick(a[0], {1, 3, 1}); }},
      {"place", {{3, 1}}, [](V a) { return ad::add_const(ad::place(a[0], {1, 3, 1}, 4), 0.2); }},
      {"rope", {{3, 8}}, [](V a) { return ad::rope(a[0], 5, 2, 10000.0); }},
      {"rope_inverse", {{3, 8}}, [](V a) { return ad::rope(a[0], 5, 2, 10000.0, true); }},
      {"softmax_window", {{3, 6}}, [](V a) { return ad::softmax_window(ad::scale(a[0], 2.0), 7, 3, 4); }},
      {"rmsnorm", {{3, 4}, {1, 4}}, [](V a) { return ad::rmsnorm(a[0], a[1], 1e-3); }},
      {"nll_rows", {{3, 5}}, [](V a) { return ad::nll_rows(ad::scale(a[0], 2.0), {4, 0, 2}); }},
  };
  std::mt19937 rng(11);
  double worst = 0;
  for (const OpCase& oc : cases) {
    std::vector<std::vector<double>> x;
    for (auto [r, c] : oc.shapes) {
      std::uniform_real_distribution<double> u(oc.positive ? 0.5 : -1.0, oc.positive ? 1.5 : 1.0);
      x.emplace_back(size_t(r) * c);
      for (auto& e : x.back()) e = u(rng);
    }
    for (int order : {1, 2}) {
      std::vector<std::vector<double>> grads;
      op_value(oc, x, order, &grads);
      double scale = 0;
      for (const auto& g : grads)
        for (double e : g) scale = std::max(scale, std::fabs(e));
      EXPECT_GT(scale, 1e-3) << oc.name << " order " << order << ": a zero derivative checks nothing";
      for (size_t i = 0; i < x.size(); ++i)
        for (size_t j = 0; j < x[i].size(); ++j) {
          const double h = 1e-5, x0 = x[i][j];
          x[i][j] = x0 + h;
          const double fp = op_value(oc, x, order, nullptr);
          x[i][j] = x0 - h;
          const double fm = op_value(oc, x, order, nullptr);
          x[i][j] = x0;
          const double num = (fp - fm) / (2 * h), err = std::fabs(num - grads[i][j]);
          EXPECT_LE(err, 1e-7 * (1 + scale)) << oc.name << " order " << order << " input " << i << "[" << j
                                             << "]: analytic " << grads[i][j] << " numeric " << num;
          worst = std::max(worst, err / (1 + scale));
        }
    }
  }
  std::printf("[ fd       ] %zu ops, first and second order: max err / (1 + max|g|) %.2e\n", cases.size(), worst);
}

TEST(MetaRef, ParseObjective) {
  for (Objective o : {Objective::pretrain, Objective::meta, Objective::meta_fo})
    EXPECT_EQ(ref::parse_objective(ref::to_string(o)), o);
  EXPECT_THROW(ref::parse_objective("metafo"), Error);
}

// What the outer optimiser reads from the table: every tensor decays (the
// official AdamW has no mask); the test-time step takes the prime MLPs only.
TEST(MetaRef, ParamTableFlags) {
  const ParamTable tab = param_table(meta_config());
  int prime = 0;
  for (const ParamSpec& p : tab.params) {
    EXPECT_TRUE(p.decays) << p.name;
    const bool is_prime = p.name.find(".prime.") != std::string::npos;
    EXPECT_EQ(p.trainable, is_prime) << p.name;
    prime += is_prime;
  }
  EXPECT_EQ(prime, 6);
}

// The forward is the golden-exact reference: meta = evaluate(ttt) and
// pretrain = evaluate(no ttt), averaged over the non-BOS targets.
TEST(MetaRef, LossesMatchReferenceModel) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  ref::RefModel<double> r(m);
  const double want_ttt = mean_non_bos(r.evaluate(tok, true), tok, 2);
  const double want_plain = mean_non_bos(r.evaluate(tok, false), tok, 2);
  const double lr = m.config.inner_lr;
  for (bool grads : {false, true}) {
    const auto meta = ref::objective(m, tok, Objective::meta, lr, grads);
    const auto fo = ref::objective(m, tok, Objective::meta_fo, lr, grads);
    const auto pre = ref::objective(m, tok, Objective::pretrain, lr, grads);
    EXPECT_NEAR(meta.loss, want_ttt, 1e-12 * want_ttt);
    EXPECT_EQ(fo.loss, meta.loss);
    EXPECT_NEAR(pre.loss, want_plain, 1e-12 * want_plain);
    EXPECT_EQ(meta.scored, 15u);
    EXPECT_GT(std::fabs(meta.loss - pre.loss), 1e-4);  // the steps change the loss
  }
}

// The official weighting: the mean over mini-batches of each one's mean.
TEST(MetaRef, MeanOverMiniBatches) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  ref::RefModel<double> r(m);
  const auto nll = r.evaluate(tok, true);
  double want = 0;
  for (size_t s = 0; s < nll.size(); s += 5) {
    double sum = 0;
    int n = 0;
    for (size_t t = s; t < std::min(nll.size(), s + 5); ++t)
      if (tok[t + 1] != 2) sum += nll[t], ++n;
    want += sum / n / 4;
  }
  ref::ObjectiveOptions opt;
  opt.mean_over_mini_batches = true;
  const auto got = ref::objective(m, tok, Objective::meta, m.config.inner_lr, false, opt);
  EXPECT_NEAR(got.loss, want, 1e-12 * want);
  EXPECT_GT(std::fabs(got.loss - mean_non_bos(nll, tok, 2)), 1e-6);  // the two weightings differ here
}

// The fixture exercises both sides of the clip, away from its kink (finite differences stay on one side).
TEST(MetaRef, ClipActiveOnSomeStepsOnly) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto r = ref::objective(m, meta_tokens(), Objective::meta, m.config.inner_lr, false);
  const double clip = m.config.inner_clip_gradient;
  ASSERT_EQ(r.inner_norms.size(), 3u);  // 3 full mini-batches, the partial one takes no step
  int clipped = 0;
  for (double n : r.inner_norms) {
    EXPECT_GT(std::fabs(n / clip - 1), 0.05) << "norm " << n << " too close to the clip " << clip;
    clipped += n >= clip;
  }
  EXPECT_GE(clipped, 1);
  EXPECT_LE(clipped, 2);
  std::printf("[ clip     ] %.3f: norms %.3f %.3f %.3f\n", clip, r.inner_norms[0], r.inner_norms[1], r.inner_norms[2]);
}

TEST(MetaRef, PretrainGradientMatchesFiniteDifferences) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  const double lr = m.config.inner_lr;
  const auto r = ref::objective(m, tok, Objective::pretrain, lr);
  check_fd(m, r.grads, [&](const Model& x) { return ref::objective(x, tok, Objective::pretrain, lr, false).loss; },
           3, "pretrain");
}

TEST(MetaRef, MetaGradientMatchesFiniteDifferences) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  const double lr = m.config.inner_lr;
  const auto r = ref::objective(m, tok, Objective::meta, lr);
  check_fd(m, r.grads, [&](const Model& x) { return ref::objective(x, tok, Objective::meta, lr, false).loss; }, 3,
           "meta");
}

// meta_fo's gradient is that of the loss with the increments meta_fo took
// frozen as constants: W_c = W_0 + sum of the first c.
TEST(MetaRef, MetaFoGradientMatchesFrozenIncrementFiniteDifferences) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  const double lr = m.config.inner_lr;
  ref::ObjectiveOptions rec;
  rec.record_increments = true;
  const auto r = ref::objective(m, tok, Objective::meta_fo, lr, true, rec);
  ASSERT_EQ(r.increments.size(), 3u);
  ref::ObjectiveOptions frozen;
  frozen.frozen_increments = &r.increments;
  EXPECT_NEAR(ref::objective(m, tok, Objective::meta_fo, lr, false, frozen).loss, r.loss, 1e-13);
  check_fd(m, r.grads,
           [&](const Model& x) { return ref::objective(x, tok, Objective::meta_fo, lr, false, frozen).loss; }, 3,
           "meta_fo (frozen increments)");
}

// Second-order terms and the path through the clip matter: meta and meta_fo differ.
TEST(MetaRef, MetaAndMetaFoGradientsDiffer) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  const double lr = m.config.inner_lr;
  const auto meta = ref::objective(m, tok, Objective::meta, lr);
  const auto fo = ref::objective(m, tok, Objective::meta_fo, lr);
  const double d = rel_diff(meta.grads, fo.grads);
  std::printf("[ meta-fo  ] relative L2 distance of the gradients %.3e\n", d);
  EXPECT_GT(d, 1e-3);
  // Every tensor before the first prime block changes too: its outputs feed the inner gradients.
  const ParamTable tab = param_table(m.config);
  for (size_t p = 0; p < tab.params.size(); ++p) {
    if (tab.params[p].block != 0) continue;
    EXPECT_GT(rel_diff({meta.grads[p]}, {fo.grads[p]}), 1e-6) << tab.params[p].name;
  }
}

TEST(MetaRef, ZeroInnerLrMakesAllObjectivesAgree) {
  const Model m = Model::random(meta_config(), 21, 0.3f);
  const auto tok = meta_tokens();
  const auto pre = ref::objective(m, tok, Objective::pretrain, 0.0);
  const auto meta = ref::objective(m, tok, Objective::meta, 0.0);
  const auto fo = ref::objective(m, tok, Objective::meta_fo, 0.0);
  EXPECT_NEAR(meta.loss, pre.loss, 1e-14);
  EXPECT_NEAR(fo.loss, pre.loss, 1e-14);
  EXPECT_LT(rel_diff(meta.grads, pre.grads), 1e-12);
  EXPECT_LT(rel_diff(fo.grads, pre.grads), 1e-12);
  EXPECT_EQ(meta.inner_norms.size(), 3u);
}

// Untied head, no qk-norm, no pre-norm, one suffix block, W > B: the other branches of the forward.
TEST(MetaRef, VariantGradientsMatchFiniteDifferences) {
  Config c = meta_config();
  c.tie_word_embeddings = false;
  c.qk_norm = false;
  c.pre_norm = false;
  c.suffix_len = 1;
  c.sliding_window_size = 7;
  c.mini_batch_size = 4;
  c.inner_clip_gradient = 0.f;
  const Model m = Model::random(c, 22, 0.15f);
  const auto tok = meta_tokens();
  const auto r = ref::objective(m, tok, Objective::meta, 0.5);
  EXPECT_EQ(r.inner_norms.size(), 4u);
  check_fd(m, r.grads, [&](const Model& x) { return ref::objective(x, tok, Objective::meta, 0.5, false).loss; }, 2,
           "meta (variant)");
}

// The byte-level training config: seconds per objective and gradient.
// Run with --gtest_also_run_disabled_tests.
TEST(MetaRef, DISABLED_TimingByteModel) {
  Config c = preset("tiny");
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_attention_heads = 4;
  c.num_hidden_layers = 4;
  c.suffix_len = 1;
  c.sliding_window_size = 64;
  c.mini_batch_size = 64;
  c.inner_lr = 1.f;
  c.inner_clip_gradient = 1.f;
  const Model m = Model::random(c, 3, 0.02f);
  std::vector<int32_t> tok(1025);
  std::mt19937 rng(1);
  for (auto& t : tok) t = int32_t(rng() % 256);
  ref::objective(m, tok, Objective::pretrain, 1.0);  // warm-up: first-touch of the memory
  for (Objective o : {Objective::pretrain, Objective::meta_fo, Objective::meta}) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    const auto r = ref::objective(m, tok, o, 1.0);
    const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ timing   ] %-8s loss %.6f  %.2f s per objective + gradient (%.2f s of CPU)\n", ref::to_string(o),
                r.loss, s, cpu);
  }
}

}  // namespace
}  // namespace ttt::test
