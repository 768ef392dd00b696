// The FMA peak probe (cl/peak.cl) against its twin. Embedding, RoPE and SwiGLU: device vs reference on awkward sizes with
// canaries; RoPE at large positions and through strided slices; the
// reference backwards of RoPE and SwiGLU against finite differences.
#include "lib/ops/ops.hpp"
#include "lib/ops/peak.hpp"
#include "lib/reference/ops.hpp"
#include "lib/reference/peak.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

class Elementwise : public DeviceTest {};

// ttt-bench's peak probe computes what its twin computes (so its FLOP count
// is the work done), at zero, one, odd and long chains; the tail after 1000
// steps is near the fixed point b / (1 - a), finite.
TEST_F(Elementwise, FmaPeakMatchesReference) {
  for (auto [items, iters] : {std::pair<size_t, int>{64, 0}, {64, 1}, {128, 7}, {192, 1000}}) {
    std::vector<float> want(items);
    ref::fma_peak(want.data(), items, 0.999f, 1e-3f, iters);
    Canaried out(dev(), items);
    ops::fma_peak(dev(), out.buf, items, 0.999f, 1e-3f, iters);
    EXPECT_TRUE(all_close(out.get(), want, 1e-5, 1e-5)) << "items=" << items << " iters=" << iters;
    EXPECT_TRUE(out.canary_intact());
  }
  EXPECT_EQ(ops::fma_peak_flops(64, 10), 2.0 * 16 * 8 * 10 * 64);
  host::Buffer small(dev(), 4 * 64, "small");
  EXPECT_THROW(ops::fma_peak(dev(), small, 128, 0.999f, 1e-3f, 1), Error);  // 128 items do not fit in 64 floats
}

TEST_F(Elementwise, EmbeddingMatchesReference) {
  for (auto [T, D, V] : {std::tuple{1, 1, 1}, {7, 93, 11}, {1025, 64, 300}, {3, 80, 2}}) {
    std::vector<int32_t> ids(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t) ids[size_t(t)] = (t * 7919 + 3) % V;
    auto wte = random_vec(size_t(V) * D, 1);
    std::vector<float> want(size_t(T) * D);
    ref::embedding_fwd(want.data(), ids.data(), wte.data(), T, D);
    auto dids = int_buffer(dev(), ids);
    Canaried dwte(dev(), wte), out(dev(), want.size());
    ops::embedding_fwd(dev(), out.buf, dids, dwte.buf, T, D);
    EXPECT_EQ(out.get(), want) << "T=" << T << " D=" << D;
    EXPECT_TRUE(out.canary_intact());
  }
}

// A 16-bit embedding (f16, bf16) gathers exactly the widened values.
TEST_F(Elementwise, SixteenBitEmbeddingMatchesTheWidenedReference) {
  for (DType t : {DType::BF16, DType::F16})
    for (auto [T, D, V] : {std::tuple{1, 1, 1}, {7, 93, 11}, {1025, 64, 301}, {3, 81, 2}}) {
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (int t2 = 0; t2 < T; ++t2) ids[size_t(t2)] = (t2 * 7919 + 3) % V;
      const auto wte16 = ref::narrow(random_vec(size_t(V) * D, 1), t);
      std::vector<float> wte(wte16.size()), want(size_t(T) * D);
      ref::widen(wte.data(), wte16.data(), wte.size(), t);
      ref::embedding_fwd(want.data(), ids.data(), wte.data(), T, D);
      auto dids = int_buffer(dev(), ids);
      host::Buffer dwte(dev(), wte16.size() * 2, "test 16-bit wte");
      dwte.write(wte16.data(), wte16.size() * 2);
      Canaried out(dev(), want.size());
      ops::embedding_fwd(dev(), out.buf, dids, dwte, T, D, t);
      EXPECT_EQ(out.get(), want) << dtype_name(t) << " T=" << T << " D=" << D;
      EXPECT_TRUE(out.canary_intact());
    }
}

// Repeated ids (V smaller than T) land in one row, in token order; unused rows keep what they held.
TEST_F(Elementwise, EmbeddingBackwardMatchesReference) {
  for (auto [T, D, V] : {std::tuple{1, 1, 1}, {7, 93, 11}, {1025, 64, 300}, {3, 80, 2}, {50, 5, 200}}) {
    std::vector<int32_t> ids(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t) ids[size_t(t)] = (t * 7919 + 3) % V;
    auto dx = random_vec(size_t(T) * D, 2), dwte = random_vec(size_t(V) * D, 3);
    std::vector<float> want = dwte;
    ref::embedding_bwd(want.data(), dx.data(), ids.data(), T, D);
    auto dids = int_buffer(dev(), ids);
    Canaried ddx(dev(), dx), dw(dev(), dwte);
    ops::embedding_bwd(dev(), dw.buf, ddx.buf, dids, T, D);
    EXPECT_TRUE(all_close(dw.get(), want, 1e-6, 1e-5)) << "T=" << T << " D=" << D << " V=" << V;
    EXPECT_TRUE(dw.canary_intact());
  }
}

TEST(EmbeddingReference, BackwardMatchesFiniteDifferences) {
  const int T = 6, D = 3, V = 4;
  const std::vector<int32_t> ids = {2, 0, 2, 3, 2, 0};  // id 1 unused, id 2 three times
  auto wte = to_double(random_vec(size_t(V) * D, 4)), w = to_double(random_vec(size_t(T) * D, 5));
  auto loss = [&](const std::vector<double>& ww) {
    std::vector<double> out(size_t(T) * D);
    ref::embedding_fwd(out.data(), ids.data(), ww.data(), T, D);
    return dot(out, w);
  };
  std::vector<double> g(size_t(V) * D, 0.0);
  ref::embedding_bwd(g.data(), w.data(), ids.data(), T, D);
  EXPECT_TRUE(all_close(g, numeric_grad(wte, loss), 1e-7, 1e-6));
}

TEST_F(Elementwise, RopeMatchesReferenceInStridedSlices) {
  for (auto [T, H, E, pos0] : {std::tuple{1, 1, 2, int64_t(0)}, {7, 3, 16, int64_t(5)}, {93, 2, 64, int64_t(1000)},
                               {5, 2, 80, int64_t(1) << 31}, {1025, 1, 16, int64_t(0)}}) {
    const int D = H * E, ld = 3 * D + 1, off = D + 1;  // the k slice of a fused q|k|v matrix
    auto fused = random_vec(size_t(T) * ld + off, 2);
    std::vector<float> x(size_t(T) * D);
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d) x[size_t(t) * D + d] = fused[off + size_t(t) * ld + d];
    std::vector<float> want = x, back = x;
    ref::rope_fwd(want.data(), pos0, T, H, E, 500000.0);
    ref::rope_bwd(back.data(), pos0, T, H, E, 500000.0);
    host::Buffer cs(dev(), size_t(T) * E * 4, "cs");
    cs.upload(ops::rope_table(pos0, T, E, 500000.0));
    Canaried src(dev(), fused), out(dev(), x.size()), bwd(dev(), x.size());
    ops::rope_fwd(dev(), ops::mat(out.buf, D), ops::mat(src.buf, ld, off), cs, T, H, E);
    ops::rope_bwd(dev(), ops::mat(bwd.buf, D), ops::mat(src.buf, ld, off), cs, T, H, E);
    EXPECT_TRUE(all_close(out.get(), want, 1e-6, 1e-5)) << "T=" << T << " E=" << E << " pos0=" << pos0;
    EXPECT_TRUE(all_close(bwd.get(), back, 1e-6, 1e-5));
    // In place, as the engine uses it.
    ops::rope_fwd(dev(), ops::mat(src.buf, ld, off), ops::mat(src.buf, ld, off), cs, T, H, E);
    auto f = src.get();
    std::vector<float> inplace(x.size());
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d) inplace[size_t(t) * D + d] = f[off + size_t(t) * ld + d];
    EXPECT_TRUE(all_close(inplace, want, 1e-6, 1e-5));
    for (auto* b : {&src, &out, &bwd}) EXPECT_TRUE(b->canary_intact());
  }
}

TEST(RopeReference, BackwardIsTheTransposeOfForward) {
  // RoPE is linear: <rope(x), y> == <x, rope_bwd(y)>, the definition of its gradient.
  const int T = 4, H = 2, E = 6;
  auto x = to_double(random_vec(T * H * E, 3)), y = to_double(random_vec(T * H * E, 4));
  auto fx = x, by = y;
  ref::rope_fwd(fx.data(), 77, T, H, E, 10000.0);
  ref::rope_bwd(by.data(), 77, T, H, E, 10000.0);
  EXPECT_NEAR(dot(fx, y), dot(x, by), 1e-12);
}

TEST_F(Elementwise, SwigluMatchesReference) {
  for (auto [T, I] : {std::pair{1, 1}, {7, 93}, {93, 7}, {1025, 64}, {3, 1664}}) {
    auto h = random_vec(size_t(T) * 2 * I, 5, -4, 4), dg = random_vec(size_t(T) * I, 6);
    std::vector<float> g(size_t(T) * I), dh(h.size());
    ref::swiglu_fwd(g.data(), h.data(), T, I);
    ref::swiglu_bwd(dh.data(), dg.data(), h.data(), T, I);
    Canaried dh_(dev(), h), ddg(dev(), dg), out(dev(), g.size()), dout(dev(), h.size());
    ops::swiglu_fwd(dev(), out.buf, dh_.buf, T, I);
    ops::swiglu_bwd(dev(), dout.buf, ddg.buf, dh_.buf, T, I);
    EXPECT_TRUE(all_close(out.get(), g, 1e-6, 1e-5)) << "T=" << T << " I=" << I;
    EXPECT_TRUE(all_close(dout.get(), dh, 1e-6, 1e-5));
    EXPECT_TRUE(out.canary_intact());
    EXPECT_TRUE(dout.canary_intact());
  }
}

TEST(SwigluReference, BackwardMatchesFiniteDifferences) {
  const int T = 3, I = 5;
  auto h = to_double(random_vec(T * 2 * I, 7, -3, 3)), w = to_double(random_vec(T * I, 8));
  auto f = [&](const std::vector<double>& hh) {
    std::vector<double> g(T * I);
    ref::swiglu_fwd(g.data(), hh.data(), T, I);
    return dot(g, w);
  };
  std::vector<double> dh(h.size());
  ref::swiglu_bwd(dh.data(), w.data(), h.data(), T, I);
  EXPECT_TRUE(all_close(dh, numeric_grad(h, f), 1e-7, 1e-6));
}

}  // namespace
}  // namespace ttt::test
