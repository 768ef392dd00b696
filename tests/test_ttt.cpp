// The test-time update itself: the reference gradient of one whole inner
// step (mean loss of a mini-batch w.r.t. every prime weight, carried keys and
// values held constant) against finite differences in double precision; the
// device step against the reference (gradient norm, clipped update); and the
// run stopping, with the mini-batch named, on a non-finite loss or weight.
#include "ttt/error.hpp"
#include "ttt/engine.hpp"
#include "lib/reference/model.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

namespace ttt::test {
namespace {

std::vector<int32_t> tokens(size_t n, int vocab) { return pattern_tokens(n, vocab); }

// Gradient of the second mini-batch's loss (the first was taken with its
// update, so the window carries keys/values computed with older weights).
TEST(InnerStep, ReferenceGradientMatchesFiniteDifferences) {
  const Model m = Model::random(tiny_config(), 11, 0.3f);
  const auto tok = tokens(16, 23);
  ref::RefModel<double> r(m);
  r.step(tok.data(), tok.data() + 1, 5, true, 0.3);
  const int32_t* in = tok.data() + 5;
  const int32_t* tg = tok.data() + 6;
  std::vector<std::vector<double>> grads;
  r.chunk_loss(in, tg, 5, &grads);
  auto params = r.prime_params();
  ASSERT_EQ(grads.size(), params.size());
  ASSERT_EQ(params.size(), 6u);  // 2 suffix blocks x (w1, w3, w2)
  std::mt19937 rng(5);
  int checked = 0;
  double worst = 0;
  for (size_t p = 0; p < params.size(); ++p)
    for (int k = 0; k < 8; ++k) {
      const size_t i = rng() % params[p]->size();
      const double x0 = (*params[p])[i], eps = 1e-6;
      (*params[p])[i] = x0 + eps;
      const double fp = r.chunk_loss(in, tg, 5, nullptr);
      (*params[p])[i] = x0 - eps;
      const double fm = r.chunk_loss(in, tg, 5, nullptr);
      (*params[p])[i] = x0;
      const double num = (fp - fm) / (2 * eps), ana = grads[p][i];
      EXPECT_NEAR(ana, num, 1e-7 + 1e-5 * std::fabs(num)) << "param " << p << " index " << i;
      worst = std::max(worst, std::fabs(ana - num));
      ++checked;
    }
  std::printf("[ fd       ] %d coordinates, max |analytic - numeric| %.2e\n", checked, worst);
}

class DeviceInnerStep : public DeviceTest {};

TEST_F(DeviceInnerStep, GradNormAndUpdateMatchReference) {
  for (float clip : {0.5f, 100.f, 0.f}) {
    Config c = tiny_config();
    c.inner_clip_gradient = clip;
    const Model m = Model::random(c, 12, 0.3f);
    const auto tok = tokens(11, 23);
    ref::RefModel<double> r(m);
    Engine e(rt(), m);
    std::vector<float> nll(5);
    for (int s = 0; s < 10; s += 5) {
      r.step(tok.data() + s, tok.data() + s + 1, 5, true, 0.3);
      e.session().step(std::span(tok).subspan(size_t(s), 5), std::span(tok).subspan(size_t(s) + 1, 5), nll);
      EXPECT_TRUE(e.session().last_step().updated);
      EXPECT_NEAR(e.session().last_step().grad_norm, r.last_grad_norm(), 1e-4 * r.last_grad_norm()) << "clip " << clip;
    }
    Model adapted = m;
    e.session().download_prime(adapted);
    auto got = adapted.prime_tensors();
    auto want = r.prime_params();
    for (size_t i = 0; i < want.size(); ++i)
      for (size_t j = 0; j < want[i]->size(); ++j)
        ASSERT_NEAR(got[i].data[j], (*want[i])[j], 1e-5) << got[i].name << "[" << j << "] clip " << clip;
  }
}

TEST_F(DeviceInnerStep, PartialMiniBatchScoresWithoutUpdating) {
  const Model m = Model::random(tiny_config(), 13, 0.3f);
  const auto tok = tokens(9, 23);
  Engine e(rt(), m);
  std::vector<float> nll(3);
  e.session().step(std::span(tok).first(3), std::span(tok).subspan(1, 3), nll);
  EXPECT_FALSE(e.session().last_step().updated);
  Model after = m;
  e.session().download_prime(after);
  EXPECT_EQ(after.blocks[2].prime.w1, m.blocks[2].prime.w1);
}

std::string run_error(Runtime& rt, const Model& m, const std::vector<int32_t>& tok, EngineOptions o = {}) {
  try {
    Engine e(rt, m, o);
    e.session().evaluate(tok);
  } catch (const Error& err) {
    return err.what();
  }
  return "";
}

TEST_F(DeviceInnerStep, NonFiniteLossStopsTheRunNamingTheMiniBatch) {
  Model m = Model::random(tiny_config(), 14, 0.3f);
  m.ln_f.assign(m.ln_f.size(), 3e38f);  // logits overflow to inf
  const std::string e = run_error(rt(), m, tokens(12, 23));
  EXPECT_NE(e.find("mini-batch 0"), std::string::npos) << e;
  EXPECT_NE(e.find("non-finite loss"), std::string::npos) << e;
}

TEST_F(DeviceInnerStep, OverflowingUpdateStopsTheRun) {
  Config c = tiny_config();
  c.inner_clip_gradient = 0;
  const Model m = Model::random(c, 15, 0.3f);
  EngineOptions o;
  o.inner_lr = 3e38f;  // w - lr * g overflows
  const std::string e = run_error(rt(), m, tokens(12, 23), o);
  EXPECT_NE(e.find("mini-batch 0"), std::string::npos) << e;
  EXPECT_NE(e.find("the update made a prime weight non-finite"), std::string::npos) << e;
}

}  // namespace
}  // namespace ttt::test
