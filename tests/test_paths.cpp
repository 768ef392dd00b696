// Every engine option on every execution path. One document at a time
// (Session) is the reference; N documents (BatchSession, N = 1, 2, 3) and a
// decoded document (Decoder, one token at a time, the NLL of each next token
// from its logits row) must give the same NLLs (1e-5) under each option, and
// each option must change the numbers exactly where it should: test-time
// training and its learning rate past the first mini-batch, the window past
// the window, the vocabulary tile and the one-row product nowhere; 16-bit
// weights and f16 keys and values round the numbers a little, the same way on every path. The
// documents are shorter than B, between B and W, and longer than W. (Two MPI
// ranks cross the same options in tests/test_scale.py.) The speed options
// (head tiles, GEMM views) also take the path they name, and their switches
// in the environment override them.
#include "ttt/batch.hpp"
#include "ttt/decode.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "host/gemm.hpp"
#include "lib/engine/options.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

namespace ttt::test {
namespace {

// B 5, W 9: lengths below B, between B and W, and past W.
Config paths_config() {
  Config c = tiny_config();
  c.sliding_window_size = 9;
  return c;
}

const size_t kLengths[] = {4, 8, 23, 13};  // tokens: 3, 7 (B < 7 < W), 22 and 12 predictions

std::vector<std::vector<int32_t>> documents(int vocab) {
  std::vector<std::vector<int32_t>> docs;
  size_t k = 0;
  for (size_t n : kLengths) {
    docs.push_back(pattern_tokens(n, vocab, 3 + 2 * k, 1 + k));
    ++k;
  }
  return docs;
}

struct Option {
  std::string name;
  std::function<void(EngineOptions&, SessionOptions&)> set;
  MatVec matvec = MatVec::Kernels;  // the one-row product (an internal knob, lib/engine/options.hpp)
  // The decoder's tolerance against Session. Decoding computes each key with a
  // one-row product, prefill with a GEMM: keys equal to float rounding, which
  // f16 rings may then round one f16 step (1e-3 relative) apart.
  double decode_tol = 1e-5;
};

const std::vector<Option>& options() {
  static const std::vector<Option> o = {
      {"defaults", [](EngineOptions&, SessionOptions&) {}},
      {"no_ttt_engine", [](EngineOptions& e, SessionOptions&) { e.ttt = false; }},
      {"no_ttt_session", [](EngineOptions&, SessionOptions& s) { s.ttt = false; }},
      {"inner_lr_engine", [](EngineOptions& e, SessionOptions&) { e.inner_lr = 0.05f; }},
      {"inner_lr_session", [](EngineOptions&, SessionOptions& s) { s.inner_lr = 0.05f; }},
      {"full_attention", [](EngineOptions& e, SessionOptions& s) { e.window = 64, s.ttt = false; }},
      {"window_64_ttt", [](EngineOptions& e, SessionOptions&) { e.window = 64; }},
      {"window_3", [](EngineOptions& e, SessionOptions&) { e.window = 3; }},
      {"vocab_tile_7", [](EngineOptions& e, SessionOptions&) { e.vocab_tile = 7; }},
      {"weights_bf16", [](EngineOptions& e, SessionOptions&) { e.weight_dtype = DType::BF16; }},
      {"weights_f16", [](EngineOptions& e, SessionOptions&) { e.weight_dtype = DType::F16; }},
      {"weights_bf16_gemv", [](EngineOptions& e, SessionOptions&) { e.weight_dtype = DType::BF16; },
       MatVec::ClblastGemv},
      {"kv_f16", [](EngineOptions& e, SessionOptions&) { e.kv_dtype = DType::F16; }, MatVec::Kernels, 2e-4},
      {"kv_f16_weights_bf16",
       [](EngineOptions& e, SessionOptions&) { e.kv_dtype = DType::F16, e.weight_dtype = DType::BF16; },
       MatVec::Kernels, 2e-4},
      {"kv_f16_full_attention",
       [](EngineOptions& e, SessionOptions& s) { e.kv_dtype = DType::F16, e.window = 64, s.ttt = false; },
       MatVec::Kernels, 2e-4},
      {"matvec_gemv", [](EngineOptions&, SessionOptions&) {}, MatVec::ClblastGemv},
      {"matvec_gemm", [](EngineOptions&, SessionOptions&) {}, MatVec::Gemm},
      {"head_tiles", [](EngineOptions& e, SessionOptions&) { e.head_tiles = true; }},
      {"head_tiles_vocab_tile_7", [](EngineOptions& e, SessionOptions&) { e.head_tiles = true, e.vocab_tile = 7; }},
      {"no_gemm_views", [](EngineOptions& e, SessionOptions&) { e.gemm_views = false; }},
  };
  return o;
}

using Nlls = std::vector<std::vector<float>>;

Nlls one_at_a_time(Engine& e, const SessionOptions& so, const std::vector<std::vector<int32_t>>& docs) {
  Session s(e, so);
  Nlls out;
  for (const auto& d : docs) out.push_back(s.evaluate(d));
  return out;
}

Nlls batched(Engine& e, const SessionOptions& so, const std::vector<std::vector<int32_t>>& docs, int slots) {
  BatchSession b(e, slots, so);
  std::vector<std::span<const int32_t>> spans(docs.begin(), docs.end());
  return b.evaluate(spans);
}

// Token by token: the NLL of each next token from the logits row the decoder gives.
Nlls decoded(Engine& e, const SessionOptions& so, const std::vector<std::vector<int32_t>>& docs) {
  Session s(e, so);
  Nlls out;
  for (const auto& d : docs) {
    Decoder dec(s);
    std::vector<float> nll;
    for (size_t t = 0; t + 1 < d.size(); ++t) {
      dec.append({&d[t], 1});
      const std::vector<float>& lg = dec.logits();
      const float m = *std::max_element(lg.begin(), lg.end());
      double z = 0;
      for (float v : lg) z += std::exp(double(v - m));
      nll.push_back(float(double(m) + std::log(z) - double(lg[size_t(d[t + 1])])));
    }
    out.push_back(nll);
  }
  return out;
}

std::vector<float> flatten(const Nlls& n) {
  std::vector<float> v;
  for (const auto& d : n) v.insert(v.end(), d.begin(), d.end());
  return v;
}

// The largest difference between two runs over predictions from..to-1 of every document.
double max_diff(const Nlls& a, const Nlls& b, size_t from, size_t to = SIZE_MAX) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t t = from; t < std::min({a[i].size(), b[i].size(), to}); ++t)
      m = std::max(m, std::fabs(double(a[i][t]) - double(b[i][t])));
  return m;
}

struct PathRun {
  Nlls reference;  // Session, one document at a time
  int window = 0;
  bool ttt = false;
};

PathRun run_option(Runtime& rt, const Model& m, const Option& o, const std::vector<std::vector<int32_t>>& docs) {
  EngineOptions eo;
  SessionOptions so;
  o.set(eo, so);
  Engine e(rt, m, eo);
  set_matvec(e, o.matvec);
  PathRun r{one_at_a_time(e, so, docs), e.window(), Session(e, so).ttt()};
  for (int n : {1, 2, 3})
    EXPECT_TRUE(all_close(flatten(batched(e, so, docs, n)), flatten(r.reference), 1e-5, 0))
        << o.name << ": BatchSession with " << n << " slots differs from Session";
  EXPECT_TRUE(all_close(flatten(decoded(e, so, docs)), flatten(r.reference), o.decode_tol, 0))
      << o.name << ": the decoded NLLs differ from Session";
  return r;
}

class PathsTest : public DeviceTest {};

TEST_F(PathsTest, EveryOptionGivesTheSameNumbersOnEveryPath) {
  const Model m = Model::random(paths_config(), 31, 0.3f);
  const auto docs = documents(m.config.vocab_size);
  std::map<std::string, PathRun> runs;
  for (const Option& o : options()) {
    SCOPED_TRACE(o.name);
    runs[o.name] = run_option(rt(), m, o, docs);
  }
  const size_t B = size_t(m.config.mini_batch_size), W = size_t(m.config.sliding_window_size);
  const PathRun& base = runs.at("defaults");
  auto ref = [&](const char* name) -> const Nlls& { return runs.at(name).reference; };
  ASSERT_TRUE(base.ttt);
  ASSERT_EQ(base.window, int(W));
  const double same = 1e-5, changed = 1e-3;

  // Each option reached the engine and the session as asked.
  EXPECT_FALSE(runs.at("no_ttt_engine").ttt);
  EXPECT_FALSE(runs.at("no_ttt_session").ttt);
  EXPECT_FALSE(runs.at("full_attention").ttt);
  EXPECT_EQ(runs.at("full_attention").window, 64);
  EXPECT_EQ(runs.at("window_3").window, 3);

  // Test-time training acts from the second mini-batch on: the first is scored before any step.
  for (const char* o : {"no_ttt_engine", "no_ttt_session", "inner_lr_engine", "inner_lr_session"}) {
    EXPECT_LT(max_diff(ref(o), base.reference, 0, B), same) << o << " changed the first mini-batch";
    EXPECT_GT(max_diff(ref(o), base.reference, B), changed) << o << " changed nothing after the first step";
  }
  // The engine's and the session's way of saying the same thing agree.
  EXPECT_LT(max_diff(ref("no_ttt_engine"), ref("no_ttt_session"), 0), same);
  EXPECT_LT(max_diff(ref("inner_lr_engine"), ref("inner_lr_session"), 0), same);

  // The window: a longer one changes nothing until a query would lose a key, then everything.
  EXPECT_LT(max_diff(ref("full_attention"), ref("no_ttt_engine"), 0, W), same);
  EXPECT_GT(max_diff(ref("full_attention"), ref("no_ttt_engine"), W), changed);
  EXPECT_LT(max_diff(ref("window_64_ttt"), base.reference, 0, W), same);
  EXPECT_GT(max_diff(ref("window_64_ttt"), base.reference, W), changed);
  EXPECT_LT(max_diff(ref("window_3"), base.reference, 0, 3), same);
  EXPECT_GT(max_diff(ref("window_3"), base.reference, 3), changed);

  // 16-bit storage rounds the weights: close to f32, the same on every path (checked above).
  for (const char* o : {"weights_bf16", "weights_f16", "weights_bf16_gemv"})
    EXPECT_LT(max_diff(ref(o), base.reference, 0), 5e-2) << o;
  EXPECT_LT(max_diff(ref("weights_bf16"), ref("weights_bf16_gemv"), 0), same);
  // f16 keys and values round them as they enter the rings (the same way on
  // every path, checked above): close to f32 and yet not equal to it.
  const std::pair<const char*, const char*> kv16[] = {
      {"kv_f16", "defaults"}, {"kv_f16_weights_bf16", "weights_bf16"}, {"kv_f16_full_attention", "full_attention"}};
  for (auto [o, f32] : kv16) {
    EXPECT_LT(max_diff(ref(o), ref(f32), 0), 1e-2) << o;
    EXPECT_GT(max_diff(ref(o), ref(f32), 0), 0.0) << o << " is the f32 run: the rings were not stored in f16";
    std::printf("[ kv f16   ] %s vs %s: max |NLL diff| %.3g\n", o, f32, max_diff(ref(o), ref(f32), 0));
  }

  // The vocabulary tile, the one-row product, head tiles and GEMM views are speed choices: the same numbers.
  for (const char* o : {"vocab_tile_7", "matvec_gemv", "matvec_gemm", "head_tiles", "no_gemm_views"})
    EXPECT_LT(max_diff(ref(o), base.reference, 0), same) << o;
  EXPECT_LT(max_diff(ref("head_tiles_vocab_tile_7"), ref("vocab_tile_7"), 0), same);
}

// The context's GEMM plan as it was, put back when the test ends (engines and tests change it).
struct PlanGuard {
  host::Context& ctx;
  const host::GemmPlan plan;
  explicit PlanGuard(host::Context& c) : ctx(c), plan(host::gemm_plan(c)) {}
  PlanGuard(const PlanGuard&) = delete;
  PlanGuard& operator=(const PlanGuard&) = delete;
  ~PlanGuard() { host::set_gemm_plan(ctx, plan); }
};

size_t head_tile_bytes(const Engine& e) {
  for (const auto& [part, n] : device_parts(e))
    if (part == "head tiles") return n;
  return 0;
}

// Head tiles are kept where CLBlast would otherwise transpose each tile of an
// f32 head (a column-major plan, set here whatever the device's record says):
// V x D floats more, none under a row-major plan or for a 16-bit head, and the
// NLLs of every path as without them. $TTT_HEAD_TILES=on|off overrides the
// option; any other value is an error naming it. (The paths test above runs
// them under the device's own plan; the ctest entries head_tiles.* run whole
// suites with $TTT_HEAD_TILES=on.)
TEST_F(PathsTest, HeadTilesAreKeptWhereTheyApplyAndChangeNoNumber) {
  ScopedEnv unset("TTT_HEAD_TILES", nullptr);
  host::Context& ctx = host::context(rt());
  const PlanGuard saved(ctx);
  host::GemmPlan plan = saved.plan;
  plan.col_major = true;
  host::set_gemm_plan(ctx, plan);

  const Model m = Model::random(paths_config(), 31, 0.3f);
  const auto docs = documents(m.config.vocab_size);
  const size_t tiles = size_t(m.config.vocab_size) * size_t(m.config.hidden_size) * sizeof(float);
  EngineOptions on;
  on.head_tiles = true;
  Engine plain(rt(), m), tiled(rt(), m, on);
  EXPECT_EQ(head_tile_bytes(plain), size_t(0));
  EXPECT_EQ(head_tile_bytes(tiled), tiles);
  EXPECT_EQ(tiled.device_bytes(), plain.device_bytes() + tiles);
  const Nlls want = one_at_a_time(plain, {}, docs);
  EXPECT_LT(max_diff(one_at_a_time(tiled, {}, docs), want, 0), 1e-5);
  EXPECT_TRUE(all_close(flatten(batched(tiled, {}, docs, 2)), flatten(want), 1e-5, 0)) << "BatchSession with tiles";
  EXPECT_TRUE(all_close(flatten(decoded(tiled, {}, docs)), flatten(want), 1e-5, 0)) << "Decoder with tiles";

  EngineOptions bf16 = on;
  bf16.weight_dtype = DType::BF16;
  EXPECT_EQ(head_tile_bytes(Engine(rt(), m, bf16)), size_t(0)) << "a 16-bit head is widened per tile, not tiled";
  {
    ScopedEnv off("TTT_HEAD_TILES", "off");
    EXPECT_EQ(head_tile_bytes(Engine(rt(), m, on)), size_t(0)) << "$TTT_HEAD_TILES=off overrides the option";
  }
  {
    ScopedEnv env_on("TTT_HEAD_TILES", "on");
    EXPECT_EQ(head_tile_bytes(Engine(rt(), m)), tiles) << "$TTT_HEAD_TILES=on overrides the option";
  }
  {
    ScopedEnv typo("TTT_HEAD_TILES", "yes");
    try {
      Engine e(rt(), m);
      ADD_FAILURE() << "$TTT_HEAD_TILES=yes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("TTT_HEAD_TILES"), std::string::npos) << e.what();
    }
  }
  plan.col_major = false;
  host::set_gemm_plan(ctx, plan);
  EXPECT_EQ(head_tile_bytes(Engine(rt(), m, on)), size_t(0)) << "a row-major plan transposes no tile";
}

// GEMM views are a setting of the context that each engine sets as it is
// built (EngineOptions::gemm_views); $TTT_GEMM_VIEWS=on|off overrides it.
// (The paths test above checks that the numbers stay the same without them.)
TEST_F(PathsTest, EnginesSetGemmViewsOnTheirContext) {
  ScopedEnv unset("TTT_GEMM_VIEWS", nullptr);
  host::Context& ctx = host::context(rt());
  const PlanGuard saved(ctx);
  const Model m = Model::random(paths_config(), 31, 0.3f);
  EngineOptions off;
  off.gemm_views = false;
  { Engine e(rt(), m, off); }
  EXPECT_FALSE(host::gemm_plan(ctx).views);
  { Engine e(rt(), m); }
  EXPECT_TRUE(host::gemm_plan(ctx).views);
  {
    ScopedEnv env("TTT_GEMM_VIEWS", "off");
    Engine e(rt(), m);
    EXPECT_FALSE(host::gemm_plan(ctx).views) << "$TTT_GEMM_VIEWS=off overrides the option";
  }
  {
    ScopedEnv env("TTT_GEMM_VIEWS", "on");
    Engine e(rt(), m, off);
    EXPECT_TRUE(host::gemm_plan(ctx).views) << "$TTT_GEMM_VIEWS=on overrides the option";
  }
}

}  // namespace
}  // namespace ttt::test
