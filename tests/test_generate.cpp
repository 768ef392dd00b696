// Generation: the sampler and the text stream on the host; on the device,
// greedy decoding is deterministic, generating then scoring a text gives the
// prefill's adapted weights and NLLs, single-token decoding through the
// key/value ring matches the double-precision reference across its
// wrap-around (positions W-1, W, W+1, 3W+5), and full attention equals the
// sliding window when the window covers the context, and the reference with
// an unbounded window when it does not.
#include "ttt/decode.hpp"
#include "ttt/error.hpp"
#include "ttt/sampling.hpp"
#include "lib/reference/model.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include <cmath>
#include <set>

namespace ttt::test {
namespace {

// ---- host: sampler and text stream ----

TEST(Sampler, GreedyTakesTheArgmaxLowestIdOnTies) {
  Sampler s;
  EXPECT_EQ(s.sample(std::vector<float>{0.f, 3.f, -1.f, 3.f}, {}), 1);
}

TEST(Sampler, SameSeedSameChoicesAndTopKOneIsGreedy) {
  const auto logits = random_vec(1000, 3, -2.f, 2.f);
  SamplingOptions o;
  o.temperature = 0.8f;
  o.top_p = 0.9f;
  o.seed = 42;
  Sampler a(o), b(o);
  std::vector<int32_t> ra, rb;
  for (int i = 0; i < 50; ++i) {
    ra.push_back(a.sample(logits, ra));
    rb.push_back(b.sample(logits, rb));
  }
  EXPECT_EQ(ra, rb);
  EXPECT_GT(std::set<int32_t>(ra.begin(), ra.end()).size(), 5u) << "temperature 0.8 should vary its choices";
  o.top_k = 1;
  Sampler k1(o);
  const int32_t greedy = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(k1.sample(logits, {}), greedy);
}

// The empirical distribution follows softmax(logits / T) restricted by top-p.
TEST(Sampler, FrequenciesFollowTheTemperatureSoftmaxAndTopP) {
  const std::vector<float> logits = {1.f, 0.f, 2.f, -1.f};
  SamplingOptions o;
  o.temperature = 2.f;
  o.seed = 7;
  double z = 0;
  std::vector<double> p(4);
  for (int i = 0; i < 4; ++i) z += p[size_t(i)] = std::exp(logits[size_t(i)] / 2.0);
  Sampler s(o);
  std::vector<int> count(4);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[size_t(s.sample(logits, {}))];
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(count[size_t(i)] / double(n), p[size_t(i)] / z, 0.015) << "id " << i;
  // top-p 0.5: id 2 (p = 0.39) alone is short of 0.5, ids 2 and 0 (0.63) reach it.
  o.top_p = 0.5f;
  Sampler tp(o);
  for (int i = 0; i < 200; ++i) {
    const int32_t id = tp.sample(logits, {});
    EXPECT_TRUE(id == 2 || id == 0) << id;
  }
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingOptions o;
  o.repeat_penalty = 2.f;
  Sampler s(o);
  // id 0: 3 -> 1.5 < 2 (id 1); with id 0 out of the last-n window it wins again.
  const std::vector<float> logits = {3.f, 2.f, -0.5f};
  const std::vector<int32_t> recent = {0};
  EXPECT_EQ(s.sample(logits, recent), 1);
  o.repeat_last_n = 0;
  EXPECT_EQ(Sampler(o).sample(logits, recent), 0);
  EXPECT_THROW(Sampler(SamplingOptions{.temperature = -1.f}), Error);
  EXPECT_THROW(Sampler(SamplingOptions{.top_p = 0.f}), Error);
}

TEST(Sampler, NeverChoosesAnIdBeyondTheUsableVocabularyButEndOfText) {
  // A model of 300 ids read by the 256-byte tokenizer: ids 256..299 have no text.
  std::vector<float> logits(300, 0.f);
  logits[290] = 9.f;  // the most likely id has no text
  logits[299] = 5.f;  // end-of-text
  logits[7] = 4.f;
  EXPECT_EQ(Sampler().sample(logits, {}), 290);  // no usable vocabulary given: every id
  EXPECT_EQ(Sampler({.vocab = 256}).sample(logits, {}), 7);
  EXPECT_EQ(Sampler({.vocab = 256, .eos = 299}).sample(logits, {}), 299);
  for (const SamplingOptions o : {SamplingOptions{.temperature = 2.f, .vocab = 256, .eos = 299},
                                  SamplingOptions{.temperature = 2.f, .top_k = 50, .vocab = 256, .eos = 299},
                                  SamplingOptions{.temperature = 2.f, .top_p = 0.99f, .vocab = 256, .eos = 299}}) {
    Sampler s(o);
    int eos = 0;
    for (int i = 0; i < 2000; ++i) {
      const int32_t id = s.sample(logits, {});
      ASSERT_TRUE(id < 256 || id == 299) << id;
      eos += id == 299;
    }
    EXPECT_GT(eos, 0);
  }
  EXPECT_THROW(Sampler(SamplingOptions{.vocab = -1}), Error);
}

TEST(TextStream, HoldsAUtf8CharacterSplitAcrossTokensUntilItIsWhole) {
  TextStream t;
  EXPECT_EQ(t.push("a\xC3"), "a");
  EXPECT_EQ(t.push("\xA9"), "\xC3\xA9");
  EXPECT_EQ(t.push("\xF0\x9F"), "");   // 4-byte emoji in three pieces
  EXPECT_EQ(t.push("\x98"), "");
  EXPECT_EQ(t.push("\x80z"), "\xF0\x9F\x98\x80z");
  EXPECT_EQ(t.push("\x80"), "\x80");   // a stray continuation byte cannot complete: out at once
  EXPECT_EQ(t.push("\xE2\x82"), "");
  EXPECT_EQ(t.finish(), "\xE2\x82");   // an unfinished character comes out raw at the end
  EXPECT_EQ(t.text(), "a\xC3\xA9\xF0\x9F\x98\x80z\x80\xE2\x82");
  EXPECT_EQ(incomplete_utf8_tail("\xC3"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("\xC3\xA9"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xE2\x82"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("\xC0"), 0u);  // never a valid lead byte
}

// At the end of generation an incomplete character comes out as its raw bytes;
// on an interrupt (keep_incomplete false) it is dropped: whole characters only.
TEST(TextStream, FinishKeepsOrDropsAnIncompleteCharacter) {
  for (bool keep : {true, false}) {
    TextStream t;
    EXPECT_EQ(t.push("\xc3\xa9" "A"), "\xc3\xa9" "A");
    EXPECT_EQ(t.push("\xc3"), "");
    EXPECT_EQ(t.finish(keep), keep ? "\xc3" : "");
    EXPECT_EQ(t.text(), keep ? "\xc3\xa9" "A\xc3" : "\xc3\xa9" "A");
  }
}

TEST(TextStream, StopsAtAStopStringSplitAcrossTokensWithoutPrintingIt) {
  TextStream t({"\n\nUser:", "END"});
  EXPECT_EQ(t.push("Hello"), "Hello");
  EXPECT_EQ(t.push(" E"), " ");  // "E" may begin "END"
  EXPECT_EQ(t.push("x"), "Ex");
  EXPECT_EQ(t.push("\n\nUs"), "");
  EXPECT_FALSE(t.stopped());
  EXPECT_EQ(t.push("er: more"), "");
  EXPECT_TRUE(t.stopped());
  EXPECT_EQ(t.push("after"), "");
  EXPECT_EQ(t.finish(), "");
  EXPECT_EQ(t.text(), "Hello Ex");
}

// ---- device: decoding ----

Config decode_config() {
  Config c = tiny_config();
  c.eos_token_id = 3;
  return c;
}

double nll_of(const std::vector<float>& logits, int32_t target) {
  double m = -INFINITY, s = 0;
  for (float x : logits) m = std::max(m, double(x));
  for (float x : logits) s += std::exp(double(x) - m);
  return m + std::log(s) - double(logits[size_t(target)]);
}

// Greedy generation of n tokens after the prompt; per generated token, the
// NLL its logits give to it (the position predicting it is doc.size() - 1).
struct Generated {
  std::vector<int32_t> doc;
  std::vector<double> nll;  // for positions prompt-1 .. end-2
  int64_t steps = 0;
  std::vector<float> scored;
};
Generated generate(Session& s, const std::vector<int32_t>& prompt, int n) {
  Decoder d(s);
  Sampler greedy;
  Generated g;
  d.append(prompt);
  for (int i = 0; i < n; ++i) {
    const auto& logits = d.logits();
    const int32_t id = greedy.sample(logits, d.tokens());
    g.nll.push_back(nll_of(logits, id));
    d.append({&id, 1});
  }
  g.doc = d.tokens();
  g.steps = d.steps();
  g.scored = d.nll();
  return g;
}

std::vector<int32_t> prompt_tokens(size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = int32_t((i * 7 + 4) % 23);
  return t;
}

class Decode : public DeviceTest {};

TEST_F(Decode, GreedyGenerationIsDeterministic) {
  const Model m = Model::random(decode_config(), 21, 0.5f);
  Engine e(rt(), m);
  const auto a = generate(e.session(), prompt_tokens(7), 17);
  const auto b = generate(e.session(), prompt_tokens(7), 17);
  EXPECT_EQ(a.doc, b.doc);
  EXPECT_EQ(a.nll, b.nll);
  EXPECT_EQ(a.steps, 4);  // 24 tokens: mini-batches of inputs 0..19 have all their targets
}

// Prompt lengths that end inside, at, and just after a mini-batch, so that
// the step comes from a prefill, a replay of a prompt tail, or single tokens.
TEST_F(Decode, GenerateThenScoreGivesThePrefillWeightsAndNlls) {
  const Model m = Model::random(decode_config(), 22, 0.5f);
  Engine e(rt(), m);
  for (size_t plen : {1u, 3u, 5u, 6u, 12u}) {
    const int n = int(21 - plen);  // 21 tokens: 4 full mini-batches, every step taken
    const auto g = generate(e.session(), prompt_tokens(plen), n);
    ASSERT_EQ(g.doc.size(), 21u);
    EXPECT_EQ(g.steps, 4);
    Model adapted_gen = m;
    e.session().download_prime(adapted_gen);
    Session fresh(e);
    const auto nll = fresh.evaluate(g.doc);
    Model adapted_pre = m;
    fresh.download_prime(adapted_pre);
    auto a = adapted_gen.prime_tensors(), b = adapted_pre.prime_tensors();
    for (size_t i = 0; i < a.size(); ++i) {
      size_t n = 1;
      for (int64_t d : a[i].shape) n *= size_t(d);
      EXPECT_TRUE(all_close(std::vector<float>(a[i].data, a[i].data + n), std::vector<float>(b[i].data, b[i].data + n),
                            1e-6, 1e-5))
          << a[i].name << " prompt " << plen;
    }
    // The steps' NLLs, and the NLLs the decode logits gave to every generated token.
    EXPECT_TRUE(all_close(g.scored, nll, 1e-5, 1e-5)) << "prompt " << plen;
    std::vector<float> tail(nll.end() - long(g.nll.size()), nll.end());
    EXPECT_TRUE(all_close(tail, g.nll, 1e-5, 1e-5)) << "prompt " << plen;
  }
}

// Decoding one token at a time, with and without test-time training, against
// the reference scoring the finished text: positions W-1, W, W+1 (the window
// fills, then slides) and 3W+5 (the ring of W + B - 1 rows wrapped twice).
TEST_F(Decode, RingWrapAroundMatchesTheReference) {
  const Config c = decode_config();
  const Model m = Model::random(c, 23, 0.5f);
  const int W = c.sliding_window_size, last = 3 * W + 5;
  for (bool ttt : {false, true}) {
    EngineOptions o;
    o.ttt = ttt;
    Engine e(rt(), m, o);
    const auto g = generate(e.session(), prompt_tokens(1), last + 1);  // positions 0..last predicted
    ref::RefModel<double> r(m);
    const auto want = r.evaluate(g.doc, ttt);
    ASSERT_EQ(want.size(), g.nll.size());
    for (int p : {W - 1, W, W + 1, last})
      EXPECT_NEAR(g.nll[size_t(p)], want[size_t(p)], 2e-5) << "position " << p << (ttt ? " ttt" : " no-ttt");
    EXPECT_TRUE(all_close(g.nll, want, 2e-5, 1e-5)) << (ttt ? "ttt" : "no-ttt");
  }
}

TEST_F(Decode, FullAttentionEqualsSlidingWindowWhenTheWindowCoversTheContext) {
  Config c = decode_config();
  c.sliding_window_size = 40;
  const Model m = Model::random(c, 24, 0.5f);
  const auto doc = prompt_tokens(33);
  Engine swa(rt(), m);
  EngineOptions o;
  o.window = 1000;
  Engine full(rt(), m, o);
  EXPECT_EQ(full.window(), 1000);
  EXPECT_TRUE(all_close(full.session().evaluate(doc), swa.session().evaluate(doc), 1e-6, 1e-6));
  const auto a = generate(swa.session(), prompt_tokens(4), 20), b = generate(full.session(), prompt_tokens(4), 20);
  EXPECT_EQ(a.doc, b.doc);
  EXPECT_TRUE(all_close(a.nll, b.nll, 1e-6, 1e-6));
}

// Window 6 in the model, 100 in the engine: the reference with window 100.
TEST_F(Decode, FullAttentionMatchesTheReferenceWithAnUnboundedWindow) {
  const Model m = Model::random(decode_config(), 25, 0.5f);
  Model unbounded = m;
  unbounded.config.sliding_window_size = 100;
  for (bool ttt : {false, true}) {
    EngineOptions o;
    o.window = 100;
    o.ttt = ttt;
    Engine full(rt(), m, o);
    const auto g = generate(full.session(), prompt_tokens(3), 25);
    ref::RefModel<double> r(unbounded), windowed(m);
    const auto want = r.evaluate(g.doc, ttt);
    EXPECT_TRUE(all_close(full.session().evaluate(g.doc), want, 2e-5, 1e-5)) << (ttt ? "ttt" : "no-ttt");
    const std::vector<double> tail(want.end() - long(g.nll.size()), want.end());
    EXPECT_TRUE(all_close(g.nll, tail, 2e-5, 1e-5)) << (ttt ? "ttt" : "no-ttt");
    // And it is not the sliding window.
    const auto swa = windowed.evaluate(g.doc, ttt);
    EXPECT_GT(std::fabs(swa.back() - want.back()), 1e-4);
  }
}

TEST_F(Decode, ReplayNeedsTheEndOfAMiniBatch) {
  const Model m = Model::random(decode_config(), 26, 0.5f);
  Engine e(rt(), m);
  const auto t = prompt_tokens(6);
  e.session().reset();
  e.session().forward({t.data(), 3});
  EXPECT_THROW(e.session().replay({t.data(), 5}, {t.data() + 1, 5}), Error);
}

}  // namespace
}  // namespace ttt::test
