// The training layer without its gradient oracle: AdamW against hand-computed
// numbers (one step, bias correction, decay only where flagged, global
// clipping, a non-finite gradient), the learning-rate schedules, the byte
// corpus and sampler, and the loop with an analytic gradient source: it
// descends, weight decay follows the parameter table, any thread count gives
// the same bits, and a checkpoint resumes exactly.
#include "lib/train/adamw.hpp"
#include "lib/train/data.hpp"
#include "lib/train/eval.hpp"
#include "lib/train/trainer.hpp"
#include "tests/model_fixtures.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;
using train::AdamW;
using train::AdamWState;
using train::heldout_seconds;
using train::HeldoutSample;
using train::time_heldout_sample;

// lr(step) == 0.1 for every step: the schedule out of the way.
AdamW constant_lr(double lr) {
  AdamW h;
  h.lr = h.end_lr = lr;
  h.warmup = 0;
  h.decay_steps = 1000;
  return h;
}

struct Tensors {
  std::vector<std::vector<float>> p;
  AdamWState s;
  Tensors(std::initializer_list<std::vector<float>> init) : p(init) {
    std::vector<int64_t> sizes;
    for (auto& t : p) sizes.push_back(int64_t(t.size()));
    s.init(sizes);
  }
  train::UpdateInfo step(const std::vector<std::vector<double>>& g, const std::vector<bool>& decays, const AdamW& h) {
    std::vector<std::span<float>> spans(p.begin(), p.end());
    return train::adamw_update(spans, s, g, decays, h);
  }
};

TEST(AdamW, OneStepByHand) {
  // t = 1: m_hat = g and v_hat = g^2 exactly, so the step is lr * (g / (|g| + eps) + wd * p).
  Tensors t({{1.0f, -2.0f}});
  const auto info = t.step({{0.5, -0.25}}, {true}, constant_lr(0.1));
  EXPECT_DOUBLE_EQ(info.grad_norm, std::sqrt(0.5 * 0.5 + 0.25 * 0.25));
  EXPECT_EQ(info.scale, 1.0);  // 0.559 < clip 1
  EXPECT_FLOAT_EQ(t.p[0][0], float(1.0 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.1 * 1.0)));     // 0.89
  EXPECT_FLOAT_EQ(t.p[0][1], float(-2.0 - 0.1 * (-0.25 / (0.25 + 1e-8) + 0.1 * -2.0)));  // -1.88
  EXPECT_FLOAT_EQ(t.s.m[0][0], 0.05f);     // (1 - b1) g
  EXPECT_FLOAT_EQ(t.s.v[0][1], 0.003125f);  // (1 - b2) g^2
  EXPECT_EQ(t.s.step, 1);
}

TEST(AdamW, BiasCorrectionSecondStep) {
  // Two steps on a scalar without decay: g1 = 1, g2 = -0.5.
  Tensors t({{0.0f}});
  const AdamW h = constant_lr(0.01);
  t.step({{1.0}}, {false}, h);
  const double p1 = -0.01 * (1.0 / (1.0 + 1e-8));
  EXPECT_FLOAT_EQ(t.p[0][0], float(p1));
  t.step({{-0.5}}, {false}, h);
  const double m = 0.9 * 0.1 + 0.1 * -0.5;           // 0.04
  const double v = 0.95 * 0.05 + 0.05 * 0.25;        // 0.06
  const double mhat = m / (1 - 0.81), vhat = v / (1 - 0.9025);
  EXPECT_FLOAT_EQ(t.s.m[0][0], float(m));
  EXPECT_FLOAT_EQ(t.s.v[0][0], float(v));
  EXPECT_NEAR(t.p[0][0], float(double(float(p1)) - 0.01 * mhat / (std::sqrt(vhat) + 1e-8)), 1e-9);
  // Without the correction the second step would be 0.01 * 0.04 / sqrt(0.06) = 0.00163; with it
  // 0.01 * (0.04 / 0.19) / sqrt(0.06 / 0.0975) = 0.0026837.
  EXPECT_NEAR(double(float(p1)) - t.p[0][0], 0.0026837, 1e-6);
}

TEST(AdamW, DecayOnlyWhereFlagged) {
  // A zero gradient leaves only the decoupled decay: p *= 1 - lr * wd where decays, unchanged elsewhere.
  Tensors t({{2.0f, -4.0f}, {1.5f}});
  t.step({{0.0, 0.0}, {0.0}}, {true, false}, constant_lr(0.5));
  EXPECT_FLOAT_EQ(t.p[0][0], 2.0f * (1 - 0.5f * 0.1f));
  EXPECT_FLOAT_EQ(t.p[0][1], -4.0f * (1 - 0.5f * 0.1f));
  EXPECT_EQ(t.p[1][0], 1.5f);
}

TEST(AdamW, ClipsByGlobalNormAcrossTensors) {
  // ||(3, 4)|| = 5 over two tensors: every gradient is scaled by 1/5 before the moments see it.
  Tensors t({{0.0f}, {0.0f}});
  const auto info = t.step({{3.0}, {4.0}}, {false, false}, constant_lr(0.1));
  EXPECT_DOUBLE_EQ(info.grad_norm, 5.0);
  EXPECT_DOUBLE_EQ(info.scale, 0.2);
  EXPECT_FLOAT_EQ(t.s.m[0][0], 0.1f * 0.6f);
  EXPECT_FLOAT_EQ(t.s.m[1][0], 0.1f * 0.8f);
  EXPECT_FLOAT_EQ(t.s.v[1][0], 0.05f * 0.64f);
  // Under the clip nothing changes: clip 0 turns it off.
  AdamW off = constant_lr(0.1);
  off.clip = 0;
  Tensors u({{0.0f}});
  EXPECT_EQ(u.step({{3.0}}, {false}, off).scale, 1.0);
  EXPECT_FLOAT_EQ(u.s.m[0][0], 0.3f);
}

TEST(AdamW, NonFiniteGradientLeavesEverything) {
  Tensors t({{1.0f, 2.0f}});
  EXPECT_THROW(t.step({{1.0, std::numeric_limits<double>::quiet_NaN()}}, {true}, constant_lr(0.1)), Error);
  EXPECT_EQ(t.p[0][0], 1.0f);
  EXPECT_EQ(t.s.m[0][0], 0.0f);
  EXPECT_EQ(t.s.step, 0);
}

// A finite gradient whose update overflows a weight (float): nothing is written either, so a trainer
// can keep the last good state as its checkpoint.
TEST(AdamW, OverflowingUpdateLeavesEverything) {
  Tensors t({{1.0f, 2.0f}, {3.0f}});
  EXPECT_THROW(t.step({{1.0, 1.0}, {1.0}}, {true, true}, constant_lr(1e39)), Error);
  EXPECT_EQ(t.p[0][0], 1.0f);
  EXPECT_EQ(t.p[1][0], 3.0f);
  EXPECT_EQ(t.s.m[0][0], 0.0f);
  EXPECT_EQ(t.s.v[1][0], 0.0f);
  EXPECT_EQ(t.s.step, 0);
  t.step({{1.0, 1.0}, {1.0}}, {true, true}, constant_lr(0.1));  // and a sane step still works
  EXPECT_NE(t.p[0][0], 1.0f);
  EXPECT_EQ(t.s.step, 1);
}

TEST(Schedule, WarmupThenCosineToTheFloor) {
  AdamW h;
  h.lr = 1.0;
  h.init_lr = 0.0;
  h.end_lr = 0.1;
  h.warmup = 10;
  h.decay_steps = 110;
  EXPECT_DOUBLE_EQ(train::learning_rate(h, 0), 0.0);  // the first update has init_lr, as optax's count 0
  EXPECT_DOUBLE_EQ(train::learning_rate(h, 5), 0.5);
  EXPECT_DOUBLE_EQ(train::learning_rate(h, 10), 1.0);             // warm-up end: the peak
  EXPECT_NEAR(train::learning_rate(h, 60), 0.55, 1e-12);          // half-way down the cosine: (peak + end) / 2
  EXPECT_NEAR(train::learning_rate(h, 35), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(train::learning_rate(h, 110), 0.1, 1e-12);          // the end: the floor
  EXPECT_NEAR(train::learning_rate(h, 500), 0.1, 1e-12);          // and it stays there
  h.warmup = 0;
  EXPECT_DOUBLE_EQ(train::learning_rate(h, 0), 1.0);
  h.lr = 0;
  EXPECT_DOUBLE_EQ(train::learning_rate(h, 50), 0.0);
}

TEST(Schedule, InnerLearningRateWarmup) {
  // ilr_init 0.1 rising to 1 over 10 steps, reached at step 9 ((step + 1) / warmup as the official code).
  EXPECT_NEAR(train::inner_learning_rate(0.1, 1.0, 10, 0), 0.19, 1e-12);
  EXPECT_NEAR(train::inner_learning_rate(0.1, 1.0, 10, 4), 0.55, 1e-12);
  EXPECT_DOUBLE_EQ(train::inner_learning_rate(0.1, 1.0, 10, 9), 1.0);
  EXPECT_DOUBLE_EQ(train::inner_learning_rate(0.1, 1.0, 10, 100), 1.0);
  EXPECT_DOUBLE_EQ(train::inner_learning_rate(0.1, 1.0, 0, 0), 1.0);
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / fmt::format("ttt_train_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

TEST(Data, CutIntoDocumentsOfSeqLenPlusOne) {
  const fs::path d = temp_dir("data");
  std::string a(25, 'a');
  a[8] = '\xff';
  const auto c = train::ByteCorpus::load({write_text(d / "a", a), write_text(d / "b", "0123456")}, 7);
  ASSERT_EQ(c.docs.size(), 3u);  // 25 bytes: three documents of 8, a tail of 1; 7 bytes: none
  EXPECT_EQ(c.docs[1][0], 255);   // bytes are unsigned ids
  EXPECT_EQ(c.bytes, 32u);
  EXPECT_NE(c.fingerprint, train::ByteCorpus::load({(d / "a").string(), (d / "b").string()}, 6).fingerprint);
  EXPECT_THROW(train::ByteCorpus::load({(d / "missing").string()}, 7), Error);
  fs::remove_all(d);
}

TEST(Data, SamplerDealsEveryDocumentOncePerEpochAndResumes) {
  train::Sampler s(7, 42);
  std::vector<size_t> first;
  for (int i = 0; i < 21; ++i) first.push_back(s.next());
  for (int e = 0; e < 3; ++e)
    EXPECT_EQ(std::set<size_t>(first.begin() + 7 * e, first.begin() + 7 * e + 7).size(), 7u);
  EXPECT_NE(std::vector<size_t>(first.begin(), first.begin() + 7), std::vector<size_t>(first.begin() + 7, first.begin() + 14));
  train::Sampler r(7, 42, 10);  // resumed at document 10
  for (int i = 10; i < 21; ++i) EXPECT_EQ(r.next(), first[size_t(i)]);
  train::Sampler other(7, 43);
  std::vector<size_t> o;
  for (int i = 0; i < 7; ++i) o.push_back(other.next());
  EXPECT_NE(o, std::vector<size_t>(first.begin(), first.begin() + 7));
}

// An analytic objective with a real gradient: 0.5 * sum (p - a)^2 over every
// parameter, a = first token / 256, so the batch (the sampler) matters too.
ref::ObjectiveResult quadratic(const Model& m, std::span<const int32_t> tokens, double inner_lr) {
  ref::ObjectiveResult r;
  const double a = tokens[0] / 256.0 + 0.01 * inner_lr;
  auto& mm = const_cast<Model&>(m);
  for (const ParamSpec& p : param_table(m.config).params) {
    std::vector<double> g;
    for (float x : p.host(mm)) {
      g.push_back(double(x) - a);
      r.loss += 0.5 * (double(x) - a) * (double(x) - a);
    }
    r.grads.push_back(std::move(g));
  }
  r.scored = tokens.size() - 1;
  return r;
}

struct LoopRun {
  fs::path dir = temp_dir("loop");
  train::ByteCorpus corpus;
  train::Checkpoint start;
  LoopRun() {
    std::string text;
    for (int i = 0; i < 200; ++i) text += char('A' + (i * 7) % 26);
    corpus = train::ByteCorpus::load({write_text(dir / "text", text)}, 9);  // 20 documents
    start.model = Model::random(tiny_config(), 5);
    start.settings.steps = 8;
    start.settings.batch = 3;
    start.settings.seq_len = 9;
    start.settings.seed = 11;
    start.settings.opt.lr = 0.05;
    start.settings.opt.warmup = 2;
    start.settings.ilr_warmup = 4;
    start.settings.data = corpus.files;
    start.settings.data_fingerprint = corpus.fingerprint;
  }
  ~LoopRun() { fs::remove_all(dir); }
};

std::vector<float> all_weights(const Model& m) {
  std::vector<float> w;
  auto& mm = const_cast<Model&>(m);
  for (const ParamSpec& p : param_table(m.config).params) w.insert(w.end(), p.host(mm).begin(), p.host(mm).end());
  return w;
}

// A gradient of zeros: what moves is the weight decay alone.
ref::ObjectiveResult zeros(const Model& m, std::span<const int32_t> tokens, double) {
  ref::ObjectiveResult r;
  for (const ParamSpec& p : param_table(m.config).params) r.grads.emplace_back(size_t(p.size()), 0.0);
  r.scored = tokens.size() - 1;
  return r;
}

// An evaluation's estimate before one has run: every document's mini-batches
// at the sample's rate, documents handed in order to the first free thread.
TEST(HeldoutEstimate, MiniBatchesAtTheSampleRateOverTheThreads) {
  auto doc = [](size_t tokens) { return std::vector<int32_t>(tokens, 1); };
  const HeldoutSample sample{2.0, 1};  // 2 s a mini-batch, both passes
  // Mini-batches of 4: 9 tokens -> 8 targets -> 2; 10 -> 9 -> 3; 2 -> 1 -> 1.
  const std::vector<std::vector<int32_t>> docs = {doc(9), doc(10), doc(2)};
  EXPECT_DOUBLE_EQ(heldout_seconds(sample, docs, 4, 1), 2.0 * (2 + 3 + 1));
  // Two threads: 2 and 3 mini-batches at once, the third document after the first: max(4 + 2, 6).
  EXPECT_DOUBLE_EQ(heldout_seconds(sample, docs, 4, 2), 6.0);
  EXPECT_DOUBLE_EQ(heldout_seconds(sample, docs, 4, 8), 6.0);  // no more threads than documents help
  EXPECT_DOUBLE_EQ(heldout_seconds({}, docs, 4, 1), 0.0);       // nothing timed: no estimate
  EXPECT_DOUBLE_EQ(heldout_seconds(sample, {}, 4, 1), 0.0);
}

TEST(HeldoutEstimate, SampleTimesOneMiniBatchOfTheFirstScorableDocument) {
  const Model m = Model::random(tiny_config(), 7);
  const HeldoutSample s = time_heldout_sample(m, {{3}, std::vector<int32_t>(40, 2)});
  EXPECT_EQ(s.minibatches, 1u);
  EXPECT_GT(s.seconds, 0.0);
  EXPECT_EQ(time_heldout_sample(m, {{3}}).minibatches, 0u);  // no document of two tokens: nothing to time
}

TEST(Loop, WeightDecayFollowsTheParameterTable) {
  LoopRun run;
  run.start.settings.opt.warmup = 0;
  run.start.settings.opt.lr = run.start.settings.opt.end_lr = 0.5;
  train::Trainer t(run.start, run.corpus);
  t.step(zeros);
  auto& before = const_cast<Model&>(run.start.model);
  auto& after = const_cast<Model&>(t.state().model);
  for (const ParamSpec& p : param_table(before.config).params) {
    const float x = p.host(before)[0], y = p.host(after)[0];
    EXPECT_FLOAT_EQ(y, p.decays ? float(double(x) * (1 - 0.5 * 0.1)) : x) << p.name;
  }
}

TEST(Loop, DescendsAnAnalyticObjective) {
  LoopRun run;
  train::Trainer t(run.start, run.corpus);
  const std::vector<int32_t> probe(10, 80);
  const double before = quadratic(t.state().model, probe, 1.0).loss;
  for (int i = 0; i < 8; ++i) t.step(quadratic);
  EXPECT_LT(quadratic(t.state().model, probe, 1.0).loss, 0.5 * before);
  EXPECT_EQ(t.steps_taken(), 8);
  EXPECT_EQ(t.state().documents_dealt, 24u);
}

TEST(Loop, ThreadsDoNotChangeTheBits) {
  LoopRun run;
  train::Trainer one(run.start, run.corpus), four(run.start, run.corpus);
  for (int i = 0; i < 3; ++i) {
    one.step(quadratic, 1);
    four.step(quadratic, 4);
  }
  EXPECT_EQ(all_weights(one.state().model), all_weights(four.state().model));
}

TEST(Loop, CheckpointResumesBitExactly) {
  LoopRun run;
  train::Trainer straight(run.start, run.corpus);
  for (int i = 0; i < 8; ++i) straight.step(quadratic);

  train::Trainer first(run.start, run.corpus);
  for (int i = 0; i < 3; ++i) first.step(quadratic);
  const std::string ck = (run.dir / "ck").string();
  first.save(ck);
  train::Trainer resumed(train::load_checkpoint(ck), run.corpus);
  EXPECT_EQ(resumed.steps_taken(), 3);
  for (int i = 3; i < 8; ++i) resumed.step(quadratic);

  EXPECT_EQ(all_weights(resumed.state().model), all_weights(straight.state().model));
  EXPECT_EQ(resumed.state().opt.m, straight.state().opt.m);
  EXPECT_EQ(resumed.state().opt.v, straight.state().opt.v);
  EXPECT_EQ(resumed.state().documents_dealt, straight.state().documents_dealt);
  // The checkpoint is a model directory like any other.
  EXPECT_EQ(all_weights(Model::load(ck)), all_weights(first.state().model));
}

TEST(Loop, TornCheckpointIsRefused) {
  LoopRun run;
  train::Trainer t(run.start, run.corpus);
  t.step(quadratic);
  const std::string ck = (run.dir / "ck").string();
  t.save(ck);
  t.step(quadratic);
  t.state().model.save(ck);  // the model of step 2 beside the optimiser state of step 1
  try {
    train::load_checkpoint(ck);
    FAIL() << "a torn checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::load_checkpoint(run.dir.string()), Error);  // no trainer.json
}

}  // namespace
}  // namespace ttt::test
