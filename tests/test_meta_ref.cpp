// The training objectives' oracle (lib/reference/meta.hpp): forward pinned to
// RefModel<double>, gradients of pretrain and meta against central finite
// differences of the loss for every parameter tensor, meta_fo against finite
// differences with the inner increments frozen, and the relations between the
// three objectives. DISABLED_TimingByteModel measures the byte-level training config.
#include "lib/reference/meta.hpp"
#include "lib/reference/model.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"
#include "tests/model_fixtures.hpp"

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>

namespace ttt::test {
namespace {

using ref::Objective;

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
    const auto r = ref::objective(m, tok, o, 1.0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ timing   ] %-8s loss %.6f  %.2f s per objective + gradient\n", ref::to_string(o), r.loss, s);
  }
}

}  // namespace
}  // namespace ttt::test
