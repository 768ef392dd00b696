// The device engine on the golden cases of an independent float64
// implementation: per-token NLL without and with test-time training (1e-3),
// the adapted prime weights (1e-4 relative L2 per tensor); plus the
// properties the engine promises: inner_lr 0 equals no-TTT exactly, two runs
// are bit-identical, a reset document reproduces itself, and the device
// matches the CPU reference model step by step on other shapes.
#include "ttt/engine.hpp"
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
  Engine e(dev(), m, {.ttt = false, .inner_lr = std::nullopt});
  auto nll = e.evaluate(read_ints(dir + "/tokens.txt"));
  auto want = read_doubles(dir + "/nll_no_ttt.txt");
  EXPECT_TRUE(all_close(nll, want, 1e-3, 0));
  RecordProperty("max_abs_diff", std::to_string(max_abs_diff(nll, want)));
  std::printf("[ golden   ] %s no-TTT: %zu tokens, max |diff| %.3g\n", GetParam().c_str(), nll.size(),
              max_abs_diff(nll, want));
}

TEST_P(GoldenModel, NllWithTttAndAdaptedWeightsMatch) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  Engine e(dev(), m);
  auto nll = e.evaluate(read_ints(dir + "/tokens.txt"));
  auto want = read_doubles(dir + "/nll_ttt.txt");
  EXPECT_TRUE(all_close(nll, want, 1e-3, 0));
  Model adapted = m, golden = m;
  e.download_prime(adapted);
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
  Engine off(dev(), m, {.ttt = false, .inner_lr = std::nullopt}), zero(dev(), m, {.ttt = true, .inner_lr = 0.f});
  auto a = off.evaluate(tokens), b = zero.evaluate(tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST_P(GoldenModel, RunsAreBitIdenticalAndResetRestoresTheStart) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  auto tokens = read_ints(dir + "/tokens.txt");
  Engine e1(dev(), m), e2(dev(), m);
  auto a = e1.evaluate(tokens), b = e2.evaluate(tokens), c = e1.evaluate(tokens);  // evaluate() resets
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenModel, ::testing::ValuesIn(golden_cases()), golden_case_name);

class SixteenBitWeights : public DeviceTest {};

// The bf16 golden file kept in bf16 on the device (the default, auto) scores as
// its f32 widening does: the stored numbers are the same, in half the bytes.
// Prefill: GEMMs on widened weights, the head widened per tile.
TEST_F(SixteenBitWeights, Bf16StorageMatchesTheF32Widening) {
  auto& ctx = dev();
  const std::string dir = golden_dir("bf16-weights");
  const Model m = Model::load(dir);
  ASSERT_EQ(m.dtype, DType::BF16);
  const auto tokens = read_ints(dir + "/tokens.txt");
  std::vector<float> a, b;
  {
    Engine half(ctx, m, {.weight_dtype = std::nullopt}), wide(ctx, m, {.weight_dtype = DType::F32});
    EXPECT_EQ(half.weight_dtype(), DType::BF16);
    EXPECT_EQ(wide.weight_dtype(), DType::F32);
    EXPECT_LT(double(half.weight_bytes()), 0.6 * double(wide.weight_bytes()));
    a = half.evaluate(tokens);
    b = wide.evaluate(tokens);
  }
  EXPECT_TRUE(all_close(a, b, 1e-3, 0));
  EXPECT_TRUE(all_close(a, read_doubles(dir + "/nll_ttt.txt"), 1e-3, 0));
  std::printf("[ bf16     ] TTT NLL bf16 storage vs f32 widening: max |diff| %.3g\n", max_abs_diff(a, to_double(b)));
  // Decode (T = 1 through the 16-bit matvec kernels) is not compared here yet: in this test process a bf16
  // engine's one-token logits differed from the f32 widening's (open in issue 20; the kernels alone match their
  // twins in test_matvec, and a standalone program gets equal logits).
}

// f16 storage of an f32 file rounds the weights: close to, not equal to, f32.
TEST_F(SixteenBitWeights, F16StorageOfAnF32FileStaysClose) {
  auto& ctx = dev();
  const std::string dir = golden_dir("tiny");
  const Model m = Model::load(dir);
  ASSERT_EQ(m.dtype, DType::F32);
  const auto tokens = read_ints(dir + "/tokens.txt");
  Engine f16(ctx, m, {.ttt = false, .weight_dtype = DType::F16}), f32(ctx, m, {.ttt = false});
  EXPECT_EQ(f32.weight_dtype(), DType::F32);  // auto keeps an f32 file f32
  const auto a = f16.evaluate(tokens), b = f32.evaluate(tokens);
  EXPECT_TRUE(all_close(a, b, 1e-2, 0));
  std::printf("[ f16      ] no-TTT NLL f16 storage vs f32: max |diff| %.3g\n", max_abs_diff(a, to_double(b)));
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
  Engine e(dev(), m);
  auto got = e.evaluate(tokens);
  EXPECT_TRUE(all_close(got, want, 1e-4, 1e-4));
  Model adapted = m;
  e.download_prime(adapted);
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
