// The device engine on the golden cases of an independent float64
// implementation: per-token NLL without and with test-time training (1e-3),
// the adapted prime weights (1e-4 relative L2 per tensor); plus the
// properties the engine promises: inner_lr 0 equals no-TTT exactly, two runs
// are bit-identical, a reset document reproduces itself, and the device
// matches the CPU reference model step by step on other shapes.
#include "ttt/engine.hpp"
#include "ttt/params.hpp"
#include "lib/reference/model.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include <cstring>

namespace ttt::test {
namespace {

class GoldenModel : public DeviceTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(GoldenModel, NllWithoutTttMatches) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  Engine e(rt(), m, {.ttt = false, .inner_lr = std::nullopt});
  auto nll = e.session().evaluate(read_ints(dir + "/tokens.txt"));
  auto want = read_doubles(dir + "/nll_no_ttt.txt");
  EXPECT_TRUE(all_close(nll, want, 1e-3, 0));
  RecordProperty("max_abs_diff", std::to_string(max_abs_diff(nll, want)));
  std::printf("[ golden   ] %s no-TTT: %zu tokens, max |diff| %.3g\n", GetParam().c_str(), nll.size(),
              max_abs_diff(nll, want));
}

TEST_P(GoldenModel, NllWithTttAndAdaptedWeightsMatch) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  Engine e(rt(), m);
  auto nll = e.session().evaluate(read_ints(dir + "/tokens.txt"));
  auto want = read_doubles(dir + "/nll_ttt.txt");
  EXPECT_TRUE(all_close(nll, want, 1e-3, 0));
  Model adapted = m, golden = m;
  e.session().download_prime(adapted);
  load_prime_weights(golden, dir + "/prime_after.safetensors");
  auto got = adapted.prime_tensors(), ref = golden.prime_tensors();
  ASSERT_EQ(got.size(), ref.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    int64_t n = 1;
    for (auto d : got[i].shape) n *= d;
    const double r = rel_l2(std::vector<float>(got[i].data, got[i].data + n), ref[i].data);
    EXPECT_LT(r, 1e-4) << got[i].name;
    worst = std::max(worst, r);
  }
  std::printf("[ golden   ] %s TTT: %zu tokens, max |diff| %.3g, prime rel L2 %.3g\n", GetParam().c_str(), nll.size(),
              max_abs_diff(nll, want), worst);
}

TEST_P(GoldenModel, ZeroInnerLrEqualsNoTttExactly) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  auto tokens = read_ints(dir + "/tokens.txt");
  Engine off(rt(), m, {.ttt = false, .inner_lr = std::nullopt}), zero(rt(), m, {.ttt = true, .inner_lr = 0.f});
  auto a = off.session().evaluate(tokens), b = zero.session().evaluate(tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST_P(GoldenModel, RunsAreBitIdenticalAndResetRestoresTheStart) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  auto tokens = read_ints(dir + "/tokens.txt");
  Engine e1(rt(), m), e2(rt(), m);
  auto a = e1.session().evaluate(tokens), b = e2.session().evaluate(tokens), c = e1.session().evaluate(tokens);  // evaluate() resets
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenModel, ::testing::ValuesIn(golden_cases()), golden_case_name);

class SixteenBitWeights : public DeviceTest {};

// The bf16 golden file kept in bf16 on the device (the default, auto) scores as
// its f32 widening does: the stored numbers are the same, in half the bytes.
// Prefill: GEMMs on widened weights, the head widened per tile.
TEST_F(SixteenBitWeights, Bf16StorageMatchesTheF32Widening) {
  const std::string dir = golden_dir("bf16-weights");
  const Model m = Model::load(dir);
  ASSERT_EQ(m.dtype, DType::BF16);
  const auto tokens = read_ints(dir + "/tokens.txt");
  std::vector<float> a, b;
  {
    EngineOptions ho, wo;
    ho.weight_dtype = std::nullopt;
    wo.weight_dtype = DType::F32;
    Engine half(rt(), m, ho), wide(rt(), m, wo);
    EXPECT_EQ(half.weight_dtype(), DType::BF16);
    EXPECT_EQ(wide.weight_dtype(), DType::F32);
    EXPECT_LT(double(half.weight_bytes()), 0.6 * double(wide.weight_bytes()));
    // Every matrix in bf16, the prime MLPs' included (norm gains f32) ...
    const ParamTable t = param_table(m.config);
    size_t want = 0;
    for (const DeviceTensor& d : t.device)
      want += size_t(d.size()) * (d.parts.empty() || t.params[size_t(d.parts.front())].role == ParamRole::Norm ? 4 : 2);
    EXPECT_EQ(half.weight_bytes(), want);
    // ... and a session starts from the stored prime weights widened exactly: the f32 widening's, bit for bit.
    const SessionState sh = half.session().state(), sw = wide.session().state();
    ASSERT_EQ(sh.prime.size(), sw.prime.size());
    for (size_t k = 0; k < sh.prime.size(); ++k)
      EXPECT_EQ(0, std::memcmp(sh.prime[k].data(), sw.prime[k].data(), sh.prime[k].size() * sizeof(float))) << k;
    a = half.session().evaluate(tokens);
    b = wide.session().evaluate(tokens);
  }
  EXPECT_TRUE(all_close(a, b, 1e-3, 0));
  EXPECT_TRUE(all_close(a, read_doubles(dir + "/nll_ttt.txt"), 1e-3, 0));
  std::printf("[ bf16     ] TTT NLL bf16 storage vs f32 widening: max |diff| %.3g\n", max_abs_diff(a, to_double(b)));
  // Decode: one token at a time through the 16-bit matvec kernels, two engines interleaved on one
  // context, then the logits row: the same numbers as the f32 widening.
  Engine half(rt(), m, [] { EngineOptions o; o.weight_dtype = std::nullopt; return o; }());
  Engine wide(rt(), m, [] { EngineOptions o; o.weight_dtype = DType::F32; return o; }());
  Session &sh = half.session(), &sw = wide.session();
  sh.reset();
  sw.reset();
  for (size_t i = 0; i < 7 && i < tokens.size(); ++i) {
    sh.forward({&tokens[i], 1});
    sw.forward({&tokens[i], 1});
  }
  const auto lw = sw.logits(0), lh = sh.logits(0);
  EXPECT_TRUE(all_close(lh, std::vector<double>(lw.begin(), lw.end()), 1e-4, 1e-4)) << "one-token logits";
}

// f16 storage of an f32 file rounds the weights: close to, not equal to, f32.
TEST_F(SixteenBitWeights, F16StorageOfAnF32FileStaysClose) {
  const std::string dir = golden_dir("tiny");
  const Model m = Model::load(dir);
  ASSERT_EQ(m.dtype, DType::F32);
  const auto tokens = read_ints(dir + "/tokens.txt");
  EngineOptions o16, o32;
  o16.ttt = o32.ttt = false;
  o16.weight_dtype = DType::F16;
  o32.weight_dtype = std::nullopt;
  Engine f16(rt(), m, o16), f32(rt(), m, o32);
  EXPECT_EQ(f32.weight_dtype(), DType::F32);  // auto keeps an f32 file f32
  const auto a = f16.session().evaluate(tokens), b = f32.session().evaluate(tokens);
  EXPECT_TRUE(all_close(a, b, 1e-2, 0));
  std::printf("[ f16      ] no-TTT NLL f16 storage vs f32: max |diff| %.3g\n", max_abs_diff(a, to_double(b)));
}

// f16 keys and values over every golden case (about 1.1K tokens in all, with
// test-time training): the mean NLL moves by at most 5e-3 (issue 20's target)
// and per token by at most 5e-2; and it does move (the rings are f16).
TEST_F(SixteenBitWeights, F16KeysAndValuesMoveTheGoldenMeanNllLittle) {
  double shift = 0, abs_shift = 0, worst = 0;
  size_t count = 0;
  for (const std::string& name : golden_cases()) {
    const std::string dir = golden_dir(name);
    const Model m = Model::load(dir);
    const auto tokens = read_ints(dir + "/tokens.txt");
    EngineOptions o16;
    o16.kv_dtype = DType::F16;
    Engine f16(rt(), m, o16), f32(rt(), m);
    const auto a = f16.session().evaluate(tokens), b = f32.session().evaluate(tokens);
    ASSERT_EQ(a.size(), b.size());
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const double d = double(a[i]) - double(b[i]);
      s += d;
      abs_shift += std::fabs(d);
      worst = std::max(worst, std::fabs(d));
    }
    shift += s;
    count += a.size();
    std::printf("[ kv f16   ] %s: %zu tokens, mean NLL shift %.3g, max |diff| %.3g\n", name.c_str(), a.size(),
                s / double(a.size()), max_abs_diff(a, to_double(b)));
  }
  shift /= double(count);
  abs_shift /= double(count);
  std::printf("[ kv f16   ] all golden cases: %zu tokens, mean NLL shift %.3g, mean |shift| %.3g, max %.3g\n", count,
              shift, abs_shift, worst);
  RecordProperty("mean_nll_shift", std::to_string(shift));
  EXPECT_GE(count, size_t(1000));
  EXPECT_LE(std::fabs(shift), 5e-3);
  EXPECT_LE(worst, 5e-2);
  EXPECT_GT(abs_shift, 0.0) << "f16 rings gave the f32 numbers: they were not stored in f16";
}

// Shapes the golden cases do not cover: untied lm_head, BOS targets in the
// loss mask, qk_norm/post_norm off, no clipping, several suffix blocks with
// W < B, head_dim 80. Device vs the float64 reference, mini-batch by mini-batch.
struct Variant {
  const char* name;
  void (*edit)(Config&);
};
const Variant kVariants[] = {
    {"untied_bos", [](Config& c) { c.tie_word_embeddings = false; c.bos_token_id = 5; }},
    {"no_qk_norm_no_post_norm", [](Config& c) { c.qk_norm = false; c.post_norm = false; }},
    {"no_pre_norm", [](Config& c) { c.pre_norm = false; }},
    {"no_clip_small_window", [](Config& c) { c.inner_clip_gradient = 0; c.sliding_window_size = 5; c.suffix_len = 3; }},
    {"head_dim_80", [](Config& c) { c.hidden_size = 160; c.num_attention_heads = 2; }},
};

class ModelVariant : public DeviceTest, public ::testing::WithParamInterface<Variant> {};

TEST_P(ModelVariant, DeviceMatchesReference) {
  Config c = small_config();
  GetParam().edit(c);
  Model m = Model::random(c, 7, 0.2f);
  std::vector<int32_t> tokens(45);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % 61);
  tokens[9] = tokens[20] = 5;  // BOS targets where the variant has one
  ref::RefModel<double> r(m);
  auto want = r.evaluate(tokens, true);
  Engine e(rt(), m);
  auto got = e.session().evaluate(tokens);
  EXPECT_TRUE(all_close(got, want, 1e-4, 1e-4));
  Model adapted = m;
  e.session().download_prime(adapted);
  auto params = r.prime_params();
  auto out = adapted.prime_tensors();
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<float> g(out[i].data, out[i].data + params[i]->size());
    std::vector<float> w(params[i]->begin(), params[i]->end());
    EXPECT_LT(rel_l2(g, w.data()), 1e-4) << out[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelVariant, ::testing::ValuesIn(kVariants),
                         [](const auto& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace ttt::test
