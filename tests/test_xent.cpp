// Fused tiled cross-entropy: NLL and the gradient w.r.t. the final hidden
// states, device vs reference (full logits) for tied and untied output
// embeddings, tiles that do and do not divide V, BOS targets excluded; the
// reference backward against finite differences.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/cases.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

using Case = cases::Xent;

class Xent : public DeviceTest, public ::testing::WithParamInterface<Case> {};

TEST_P(Xent, NllAndGradientMatchReference) {
  const auto c = GetParam();
  const int bos = 3 % c.V;
  auto h = random_vec(size_t(c.T) * c.D, 1, -2, 2), W = random_vec(size_t(c.V) * c.D, 2, -1, 1);
  std::vector<int32_t> targets(static_cast<size_t>(c.T));
  for (int t = 0; t < c.T; ++t) targets[size_t(t)] = (t * 31 + 5) % c.V;
  if (c.T > 2) targets[1] = bos;  // excluded from the loss
  int count = 0;
  for (auto t : targets) count += t != bos;
  const float inv = count ? 1.f / float(count) : 0.f;
  // Reference: logits = h @ Wv^T where Wv (V, D) is the embedding view.
  std::vector<float> Wv = W;  // (V, D)
  if (!c.tied)                // W is stored (D, V): Wv[v][d] = W[d][v]
    for (int v = 0; v < c.V; ++v)
      for (int d = 0; d < c.D; ++d) Wv[size_t(v) * c.D + d] = W[size_t(d) * c.V + v];
  std::vector<float> logits(size_t(c.T) * c.V), nll(size_t(c.T)), dl(logits.size()), w(size_t(c.T)),
      dh(size_t(c.T) * c.D);
  ref::matmul(logits.data(), h.data(), Wv.data(), c.T, c.V, c.D, false, true, false);
  ref::xent_fwd(nll.data(), logits.data(), targets.data(), c.T, c.V);
  for (int t = 0; t < c.T; ++t) w[size_t(t)] = targets[size_t(t)] == bos ? 0.f : inv;
  ref::xent_bwd(dl.data(), logits.data(), targets.data(), w.data(), c.T, c.V);
  ref::matmul(dh.data(), dl.data(), Wv.data(), c.T, c.D, c.V, false, false, false);

  ops::XentScratch scratch(dev(), c.T, c.D, c.tile);
  auto dtargets = int_buffer(dev(), targets);
  Canaried dhid(dev(), h), dW(dev(), W), dnll(dev(), size_t(c.T)), ddh(dev(), h.size()), dnll2(dev(), size_t(c.T));
  ops::xent(dev(), scratch, dnll.buf, &ddh.buf, dhid.buf, dW.buf, c.tied, dtargets, c.T, c.D, c.V, bos, inv);
  ops::xent(dev(), scratch, dnll2.buf, nullptr, dhid.buf, dW.buf, c.tied, dtargets, c.T, c.D, c.V, bos, inv);
  EXPECT_TRUE(all_close(dnll.get(), nll, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(dnll2.get(), nll, 1e-5, 1e-5)) << "forward-only sweep";
  EXPECT_TRUE(all_close(ddh.get(), dh, 1e-6, 1e-4));
  for (auto* b : {&dhid, &dW, &dnll, &ddh, &dnll2}) EXPECT_TRUE(b->canary_intact());
  {
    // The head laid out for the logits GEMMs (Engine's head_tiles): the same bits, tile by tile.
    std::vector<float> lay(W.size());
    for (int v0 = 0; v0 < c.V; v0 += c.tile)
      ops::logits_tile_layout(lay.data() + size_t(v0) * c.D, W.data(), c.tied, c.V, c.D, v0, std::min(c.tile, c.V - v0));
    Canaried dlay(dev(), lay), dnll3(dev(), size_t(c.T)), ddh3(dev(), h.size());
    ops::xent(dev(), scratch, dnll3.buf, &ddh3.buf, dhid.buf, dW.buf, c.tied, dtargets, c.T, c.D, c.V, bos, inv,
              DType::F32, &dlay.buf);
    EXPECT_EQ(dnll3.get(), dnll.get()) << "logits from the laid-out tiles";
    EXPECT_EQ(ddh3.get(), ddh.get()) << "dh from the laid-out tiles";
    EXPECT_TRUE(all_close(dnll3.get(), nll, 1e-5, 1e-5));
  }

  // The second sweep for training: dh again, and the output embedding's gradient,
  // (V, D) = dl^T h tied, (D, V) = h^T dl as lm_head; both buffers overwritten.
  std::vector<float> dWv(size_t(c.V) * c.D), dWant(dWv.size());
  ref::matmul(dWv.data(), dl.data(), h.data(), c.V, c.D, c.T, true, false, false);
  for (int v = 0; v < c.V; ++v)
    for (int d = 0; d < c.D; ++d)
      dWant[c.tied ? size_t(v) * c.D + d : size_t(d) * c.V + v] = dWv[size_t(v) * c.D + d];
  Canaried ddh2(dev(), h.size(), 7.f), ddW(dev(), W.size(), 7.f);
  ops::xent_bwd_weights(dev(), scratch, ddh2.buf, ddW.buf, dhid.buf, dW.buf, c.tied, dtargets, c.T, c.D, c.V, bos,
                        inv);
  EXPECT_TRUE(all_close(ddh2.get(), dh, 1e-6, 1e-4)) << "second sweep dh";
  EXPECT_TRUE(all_close(ddW.get(), dWant, 1e-6, 1e-4)) << "output embedding gradient";
  EXPECT_TRUE(ddh2.canary_intact());
  EXPECT_TRUE(ddW.canary_intact());
}

INSTANTIATE_TEST_SUITE_P(Shapes, Xent, ::testing::ValuesIn(cases::xent()), [](const auto& i) { return i.param.name(); });

// A NaN logit reaches the loss (the engine stops on a non-finite loss),
// whether or not it is the row's target: one NaN weight makes column 5's
// logit NaN in every row, so every row's NLL must be NaN.
TEST_F(DeviceTest, XentNanLogitReachesTheLoss) {
  const int T = 4, D = 8, V = 40, tile = 16;
  auto h = random_vec(size_t(T) * D, 1, -2, 2), W = random_vec(size_t(V) * D, 2, -1, 1);
  W[size_t(5) * D + 3] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<int32_t> targets = {5, 7, 30, 0};
  ops::XentScratch scratch(dev(), T, D, tile);
  auto dtargets = int_buffer(dev(), targets);
  Canaried dhid(dev(), h), dW(dev(), W), dnll(dev(), size_t(T));
  ops::xent(dev(), scratch, dnll.buf, nullptr, dhid.buf, dW.buf, true, dtargets, T, D, V, -1, 0.25f);
  for (float v : dnll.get()) EXPECT_TRUE(std::isnan(v)) << v;
}

TEST(XentReference, BackwardMatchesFiniteDifferences) {
  const int T = 3, V = 6;
  auto l = to_double(random_vec(T * V, 3, -3, 3));
  const std::vector<int32_t> targets = {1, 5, 0};
  const std::vector<double> w = {0.5, 0.25, 0.0};
  auto f = [&](const std::vector<double>& ll) {
    std::vector<double> nll(T);
    ref::xent_fwd(nll.data(), ll.data(), targets.data(), T, V);
    return dot(nll, w);
  };
  std::vector<double> dl(T * V);
  ref::xent_bwd(dl.data(), l.data(), targets.data(), w.data(), T, V);
  EXPECT_TRUE(all_close(dl, numeric_grad(l, f), 1e-8, 1e-6));
}

}  // namespace
}  // namespace ttt::test
