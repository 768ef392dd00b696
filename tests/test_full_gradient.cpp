// The device gradient of the pretrain objective (lib/engine/full_gradient.hpp)
// against the double-precision oracle ref::objective, whose own gradients are
// checked by finite differences in test_meta_ref: every parameter tensor, on
// model variants that switch each option (tied or untied head, qk-norm, pre-
// and post-norm, prime blocks or none, window shorter or longer than the
// document, BOS targets), documents of several lengths on one object, and the
// errors of bad calls.
#include "lib/engine/full_gradient.hpp"
#include "lib/reference/meta.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>

namespace ttt::test {
namespace {

class FullGradientTest : public DeviceTest {};

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
#define EXPECT_THROW_MSG(stmt, text) EXPECT_THAT(error_of([&] { (void)(stmt); }), ::testing::HasSubstr(text))

std::vector<int32_t> doc(size_t n, int vocab, int bos) {
  auto t = pattern_tokens(n, vocab, 7, 3);
  for (size_t i = 3; i < n; i += 5) t[i] = bos;  // BOS targets, not scored
  return t;
}

// Each tensor's device gradient within 2e-4 of the oracle's, relative to the tensor's largest entry.
void expect_matches_oracle(FullGradient& fg, const Model& m, const std::vector<int32_t>& tokens,
                           const std::string& what, ref::Objective o = ref::Objective::pretrain,
                           double inner_lr = 0.0) {
  const ref::ObjectiveResult want = ref::objective(m, tokens, o, inner_lr, true);
  const ref::ObjectiveResult got = fg.objective(m, tokens, o, inner_lr);
  ASSERT_EQ(got.inner_norms.size(), want.inner_norms.size()) << what << ": test-time steps";
  for (size_t k = 0; k < want.inner_norms.size(); ++k)
    EXPECT_NEAR(got.inner_norms[k], want.inner_norms[k], 1e-5 * want.inner_norms[k]) << what << ": step " << k;
  const ParamTable table = param_table(m.config);
  EXPECT_EQ(got.scored, want.scored) << what;
  EXPECT_NEAR(got.loss, want.loss, 2e-6 * std::abs(want.loss) + 1e-6) << what;
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  ASSERT_EQ(got.grads.size(), table.params.size()) << what;
  int nonzero = 0;
  for (size_t i = 0; i < want.grads.size(); ++i) {
    ASSERT_EQ(got.grads[i].size(), want.grads[i].size()) << what << " " << table.params[i].name;
    double scale = 0, err = 0;
    for (size_t j = 0; j < want.grads[i].size(); ++j) {
      scale = std::max(scale, std::abs(want.grads[i][j]));
      err = std::max(err, std::abs(got.grads[i][j] - want.grads[i][j]));
    }
    nonzero += scale > 0;
    EXPECT_LE(err, 2e-4 * scale + 1e-7) << what << ": " << table.params[i].name << " (largest entry " << scale << ")";
  }
  EXPECT_GT(nonzero, int(want.grads.size()) / 2) << what << ": most tensors have a gradient";
}

TEST_F(FullGradientTest, MatchesTheOracleOnModelVariants) {
  struct Variant {
    const char* name;
    void (*edit)(Config&);
  };
  const Variant variants[] = {
      {"tiny (tied, 2 prime blocks, W 6)", [](Config&) {}},
      {"untied head", [](Config& c) { c.tie_word_embeddings = false; }},
      {"qk-norm on", [](Config& c) { c.qk_norm = true; }},
      {"pre- and post-norm off", [](Config& c) { c.pre_norm = false; c.post_norm = false; }},
      {"no prime blocks", [](Config& c) { c.prime = false; c.suffix_len = 0; }},
      {"window longer than the document", [](Config& c) { c.sliding_window_size = 64; }},
      {"4 heads of 6, untied, qk-norm", [](Config& c) {
         c.hidden_size = 24;
         c.num_attention_heads = 4;
         c.tie_word_embeddings = false;
         c.qk_norm = true;
       }},
  };
  for (const Variant& v : variants) {
    Config c = tiny_config();
    v.edit(c);
    const Model m = Model::random(c, 5, 0.3f);
    FullGradient fg(rt(), c, 24, 7);  // vocabulary tiles of 7: V 23 in 4 tiles, the last partial
    expect_matches_oracle(fg, m, doc(20, c.vocab_size, c.bos_token_id), v.name);
  }
}

// meta-fo: the engine's test-time steps, then the document read whole with each
// mini-batch's prime weights; the oracle holds the same increments constant. The
// tiny config's clip (0.5) is active, its B 5 leaves a partial last mini-batch,
// and inner_lr 0 must give the pretrain gradient.
TEST_F(FullGradientTest, MetaFirstOrderMatchesTheOracle) {
  struct Variant {
    const char* name;
    double inner_lr;
    void (*edit)(Config&);
  };
  const Variant variants[] = {
      {"tiny, inner lr 0.3, clip 0.5", 0.3, [](Config&) {}},
      {"untied, no clip, inner lr 1", 1.0, [](Config& c) {
         c.tie_word_embeddings = false;
         c.inner_clip_gradient = 0.f;
       }},
      {"one prime block, W 12 > B 5", 0.5, [](Config& c) {
         c.suffix_len = 1;
         c.sliding_window_size = 12;
       }},
      {"no prime blocks (meta-fo is pretrain)", 0.3, [](Config& c) { c.prime = false; c.suffix_len = 0; }},
  };
  const Config base = tiny_config();
  for (const Variant& v : variants) {
    Config c = base;
    v.edit(c);
    const Model m = Model::random(c, 9, 0.3f);
    FullGradient fg(rt(), c, 24, 7);
    const auto tokens = doc(23, c.vocab_size, c.bos_token_id);  // 22 targets: mini-batches 5, 5, 5, 5, 2
    expect_matches_oracle(fg, m, tokens, v.name, ref::Objective::meta_fo, v.inner_lr);
    expect_matches_oracle(fg, m, doc(9, c.vocab_size, c.bos_token_id), std::string(v.name) + ", 8 targets",
                          ref::Objective::meta_fo, v.inner_lr);
  }
  // inner_lr 0: no test-time change, the pretrain gradient (to rounding: the
  // prime GEMMs run per mini-batch); a real inner_lr changes it.
  const Model m = Model::random(base, 9, 0.3f);
  FullGradient fg(rt(), base, 24);
  const auto tokens = doc(23, base.vocab_size, base.bos_token_id);
  const auto pre = fg.pretrain(m, tokens);
  EXPECT_LT(ref::max_relative_difference(fg.meta_fo(m, tokens, 0.0), pre), 1e-6);
  EXPECT_GT(ref::max_relative_difference(fg.meta_fo(m, tokens, 0.3), pre), 1e-2);
  EXPECT_THROW_MSG(fg.meta_fo(m, tokens, -1.0), "inner learning rate -1");
}

// meta (second order): the reverse sweep over the mini-batches with the
// tangent pass of each (meta_gradient.cpp) against the oracle's autodiff
// through the inner steps, on one-prime-block variants: clip active and not,
// tied and untied, norms off, qk-norm with W > B, a partial last mini-batch,
// BOS targets, a mini-batch of BOS targets only. The second-order terms must
// matter: meta differs from meta-fo far beyond the tolerance.
struct MetaVariant {
  const char* name;  // also the test's name
  double inner_lr;
  void (*edit)(Config&);
};
const MetaVariant kMetaVariants[] = {
    {"ClipActive", 0.5, [](Config&) {}},  // the tiny config's clip 0.5
    {"UntiedNoClip", 1.0, [](Config& c) {
       c.tie_word_embeddings = false;
       c.inner_clip_gradient = 0.f;
     }},
    {"NormsOffClip2", 2.0, [](Config& c) {
       c.pre_norm = false;
       c.post_norm = false;
       c.inner_clip_gradient = 2.f;
     }},
    {"W3BelowB5OneLayer", 0.8, [](Config& c) {
       c.sliding_window_size = 3;
       c.num_hidden_layers = 1;
       c.inner_clip_gradient = 0.f;
     }},
    {"QkNormW12B5FourHeadsOf6", 0.7, [](Config& c) {
       c.qk_norm = true;
       c.sliding_window_size = 12;
       c.hidden_size = 24;
       c.num_attention_heads = 4;
     }},
};

class MetaSecondOrder : public DeviceTest, public ::testing::WithParamInterface<MetaVariant> {};

TEST_P(MetaSecondOrder, MatchesTheOracle) {
  const MetaVariant& v = GetParam();
  Config c = tiny_config();
  c.suffix_len = 1;
  v.edit(c);
  const Model m = Model::random(c, 11, 0.3f);
  FullGradient fg(rt(), c, 24, 7);
  const auto tokens = doc(23, c.vocab_size, c.bos_token_id);  // 22 targets: mini-batches 5, 5, 5, 5, 2
  expect_matches_oracle(fg, m, tokens, v.name, ref::Objective::meta, v.inner_lr);
  EXPECT_GT(ref::max_relative_difference(fg.objective(m, tokens, ref::Objective::meta, v.inner_lr),
                                         fg.meta_fo(m, tokens, v.inner_lr)),
            1e-2)
      << v.name << ": the second-order terms change the gradient";
  expect_matches_oracle(fg, m, doc(12, c.vocab_size, c.bos_token_id), std::string(v.name) + ", 11 targets",
                        ref::Objective::meta, v.inner_lr);
}

INSTANTIATE_TEST_SUITE_P(Variants, MetaSecondOrder, ::testing::ValuesIn(kMetaVariants),
                         [](const ::testing::TestParamInfo<MetaVariant>& i) { return std::string(i.param.name); });

// The clip active on some steps only (its value set between the steps' norms), a
// document of whole mini-batches, one object reused across objectives and lengths.
TEST_F(FullGradientTest, MetaSecondOrderWithMixedClipOnOneObject) {
  Config c = tiny_config();
  c.suffix_len = 1;
  c.inner_clip_gradient = 0.f;
  const double lr = 0.6;
  const auto tokens = doc(21, c.vocab_size, c.bos_token_id);  // 20 targets: 4 whole mini-batches
  auto norms = ref::objective(Model::random(c, 4, 0.3f), tokens, ref::Objective::meta, lr, false).inner_norms;
  ASSERT_EQ(norms.size(), 4u);
  std::sort(norms.begin(), norms.end());
  c.inner_clip_gradient = float((norms[1] + norms[2]) / 2);
  const Model m = Model::random(c, 4, 0.3f);
  FullGradient fg(rt(), c, 24, 7);
  const auto want = ref::objective(m, tokens, ref::Objective::meta, lr, false).inner_norms;
  const auto clipped = std::count_if(want.begin(), want.end(), [&](double n) { return n >= c.inner_clip_gradient; });
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, long(want.size()));
  expect_matches_oracle(fg, m, tokens, "clip on some steps", ref::Objective::meta, lr);
  fg.pretrain(m, doc(24, c.vocab_size, c.bos_token_id));
  expect_matches_oracle(fg, m, doc(9, c.vocab_size, c.bos_token_id), "after pretrain, 8 targets",
                        ref::Objective::meta, lr);
  fg.meta_fo(m, doc(25, c.vocab_size, c.bos_token_id), lr);
  expect_matches_oracle(fg, m, doc(25, c.vocab_size, c.bos_token_id), "after meta-fo, 24 targets",
                        ref::Objective::meta, lr);
  expect_matches_oracle(fg, m, tokens, "meta-fo after meta", ref::Objective::meta_fo, lr);
  EXPECT_EQ(device_objective_limit(c, ref::Objective::meta), "");
}

TEST_F(FullGradientTest, MetaSecondOrderOnBosMiniBatchAndItsLimit) {
  // A mini-batch whose targets are all BOS takes a step of zero gradient.
  Config c = tiny_config();
  c.suffix_len = 1;
  const Model m = Model::random(c, 3, 0.3f);
  FullGradient fg(rt(), c, 24, 7);
  auto tokens = doc(23, c.vocab_size, c.bos_token_id);
  for (int i = 6; i <= 10; ++i) tokens[size_t(i)] = c.bos_token_id;  // the targets of mini-batch 1
  expect_matches_oracle(fg, m, tokens, "a mini-batch of BOS targets", ref::Objective::meta, 0.5);
  // Two prime blocks: the first's MLP feeds the second's attention, whose double backward is not on the device.
  const Model two = Model::random(tiny_config(), 3, 0.3f);
  FullGradient fg2(rt(), two.config, 24);
  EXPECT_THROW_MSG(fg2.objective(two, tokens, ref::Objective::meta, 0.5),
                   "FullGradient: the device's meta gradient (second order) covers models with one prime block "
                   "(suffix_len 1); this config has suffix_len 2");
  EXPECT_EQ(device_objective_limit(two.config, ref::Objective::meta_fo), "");
}

// One object, documents of several lengths, weights changed between calls:
// nothing of an earlier call leaks into the next.
TEST_F(FullGradientTest, ReusedAcrossDocumentsAndWeights) {
  const Config c = tiny_config();
  FullGradient fg(rt(), c, 30);
  const Model a = Model::random(c, 1, 0.3f), b = Model::random(c, 2, 0.3f);
  expect_matches_oracle(fg, a, doc(31, c.vocab_size, c.bos_token_id), "31 tokens (the maximum)");
  expect_matches_oracle(fg, b, doc(9, c.vocab_size, c.bos_token_id), "9 tokens, other weights");
  expect_matches_oracle(fg, a, pattern_tokens(2, c.vocab_size, 5, 1), "2 tokens");
  const auto again = fg.pretrain(a, doc(31, c.vocab_size, c.bos_token_id));
  const auto first = fg.pretrain(a, doc(31, c.vocab_size, c.bos_token_id));
  EXPECT_EQ(again.grads, first.grads) << "the same call twice gives the same numbers";
}

TEST_F(FullGradientTest, BadCallsNameTheFault) {
  const Config c = tiny_config();
  FullGradient fg(rt(), c, 10);
  const Model m = Model::random(c, 1, 0.3f);
  EXPECT_THROW_MSG(fg.pretrain(m, pattern_tokens(12, c.vocab_size)), "12 tokens; a document needs 2..11");
  EXPECT_THROW_MSG(fg.pretrain(m, pattern_tokens(1, c.vocab_size)), "1 tokens");
  auto bad = pattern_tokens(8, c.vocab_size);
  bad[4] = c.vocab_size;
  EXPECT_THROW_MSG(fg.pretrain(m, bad), "token id 23 at position 4");
  Config other = c;
  other.hidden_size = 32;
  EXPECT_THROW_MSG(fg.pretrain(Model::random(other, 1), pattern_tokens(8, c.vocab_size)), "config");
  EXPECT_THROW_MSG(FullGradient(rt(), c, 0), "max_tokens 0");
}

}  // namespace
}  // namespace ttt::test
