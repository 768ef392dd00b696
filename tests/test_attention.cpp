// Sliding-window attention over the key/value ring: device forward and
// backward vs the reference for T < W, T = W, T > W, ring wrap-around, large
// positions and head_dim 16/64/80/256, single queries (the split decode
// kernels); dk/dv written into strided slices of a
// fused matrix; the reference backward against finite differences.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

struct Case {
  int T, W, H, E;
  int64_t pos0;
  int extra_ring;  // ring rows beyond the minimum W + T - 1
};
const Case kCases[] = {
    {1, 1, 1, 16, 0, 0},     {7, 16, 2, 16, 0, 0},      {16, 16, 2, 64, 21, 0}, {93, 32, 1, 64, 50, 3},
    {33, 40, 2, 80, 100, 0}, {130, 64, 2, 64, 1000, 7}, {9, 12, 1, 256, 5, 0},  {17, 5, 3, 16, 3, 0},
    {20, 24, 2, 16, 1000003, 1}, {64, 1024, 1, 64, 64, 0}, {11, 9, 2, 6, 3, 0}, {5, 4, 3, 2, 7, 2},
    // T = 1 (decode): keys split across work-groups, wrapped rings, partly filled windows.
    {1, 2048, 1, 64, 5000, 0}, {1, 1000, 2, 80, 999, 3}, {1, 600, 1, 16, 100, 0}, {1, 1500, 1, 256, 4096, 1},
    {1, 7, 3, 6, 1000003, 2},
};

class Attention : public DeviceTest, public ::testing::WithParamInterface<Case> {};

TEST_P(Attention, ForwardAndBackwardMatchReference) {
  const auto c = GetParam();
  const int D = c.H * c.E, C = c.W + c.T - 1 + c.extra_ring;
  const int64_t kpos0 = std::max<int64_t>(0, c.pos0 - (c.W - 1));
  const int Tk = int(c.pos0 + c.T - kpos0);
  auto q = random_vec(size_t(c.T) * D, 1), k = random_vec(size_t(Tk) * D, 2), v = random_vec(size_t(Tk) * D, 3),
       dout = random_vec(size_t(c.T) * D, 4);
  // Reference.
  std::vector<float> out(size_t(c.T) * D), lse(size_t(c.T) * c.H), dq(q.size()), dk(k.size()), dv(v.size());
  ref::attention_fwd(out.data(), lse.data(), q.data(), k.data(), v.data(), c.T, Tk, c.pos0, kpos0, c.H, c.E, c.W);
  ref::attention_bwd(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), lse.data(), c.T, Tk,
                     c.pos0, kpos0, c.H, c.E, c.W);
  // Device: keys in the ring at row p % C; rows no query may see hold garbage.
  auto kring = random_vec(size_t(C) * D, 5, 50, 60), vring = random_vec(size_t(C) * D, 6, 50, 60);
  for (int j = 0; j < Tk; ++j)
    for (int d = 0; d < D; ++d) {
      kring[size_t((kpos0 + j) % C) * D + d] = k[size_t(j) * D + d];
      vring[size_t((kpos0 + j) % C) * D + d] = v[size_t(j) * D + d];
    }
  Canaried dq_(dev(), q), dk_ring(dev(), kring), dv_ring(dev(), vring), ddout(dev(), dout), dout_(dev(), out.size()),
      dlse(dev(), lse.size()), ddq(dev(), q.size()), dsum(dev(), lse.size()), dkv(dev(), size_t(c.T) * 3 * D, 7.f);
  const ops::AttnShape s{c.T, c.H, c.E, C, c.W, c.pos0};
  ops::attention_fwd(dev(), dout_.buf, dlse.buf, dq_.buf, dk_ring.buf, dv_ring.buf, s);
  ops::attention_bwd(dev(), ddq.buf, ops::mat(dkv.buf, 3 * D, D), ops::mat(dkv.buf, 3 * D, 2 * D), dsum.buf, ddout.buf,
                     dout_.buf, dq_.buf, dlse.buf, dk_ring.buf, dv_ring.buf, s);
  EXPECT_TRUE(all_close(dout_.get(), out, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(dlse.get(), lse, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(ddq.get(), dq, 1e-5, 1e-4));
  auto kv = dkv.get();
  std::vector<float> got_dk, got_dv, want_dk(dk.end() - long(c.T) * D, dk.end()), want_dv(dv.end() - long(c.T) * D, dv.end());
  for (int t = 0; t < c.T; ++t)
    for (int d = 0; d < D; ++d) {
      EXPECT_EQ(kv[size_t(t) * 3 * D + d], 7.f) << "dq slice of the fused matrix was written";
      got_dk.push_back(kv[size_t(t) * 3 * D + D + d]);
      got_dv.push_back(kv[size_t(t) * 3 * D + 2 * D + d]);
    }
  EXPECT_TRUE(all_close(got_dk, want_dk, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(got_dv, want_dv, 1e-5, 1e-4));
  for (auto* b : {&dq_, &dk_ring, &dv_ring, &ddout, &dout_, &dlse, &ddq, &dsum, &dkv}) EXPECT_TRUE(b->canary_intact());
}

TEST_P(Attention, DeterministicAcrossRuns) {
  const auto c = GetParam();
  const int D = c.H * c.E, C = c.W + c.T - 1 + c.extra_ring;
  Canaried q(dev(), random_vec(size_t(c.T) * D, 8)), kr(dev(), random_vec(size_t(C) * D, 9)),
      vr(dev(), random_vec(size_t(C) * D, 10)), o1(dev(), size_t(c.T) * D), o2(dev(), size_t(c.T) * D),
      l(dev(), size_t(c.T) * c.H);
  const ops::AttnShape s{c.T, c.H, c.E, C, c.W, c.pos0};
  ops::attention_fwd(dev(), o1.buf, l.buf, q.buf, kr.buf, vr.buf, s);
  ops::attention_fwd(dev(), o2.buf, l.buf, q.buf, kr.buf, vr.buf, s);
  EXPECT_EQ(o1.get(), o2.get());
}

INSTANTIATE_TEST_SUITE_P(Shapes, Attention, ::testing::ValuesIn(kCases), [](const auto& i) {
  const auto& c = i.param;
  return "T" + std::to_string(c.T) + "_W" + std::to_string(c.W) + "_H" + std::to_string(c.H) + "_E" +
         std::to_string(c.E) + "_pos" + std::to_string(c.pos0);
});

TEST(AttentionReference, BackwardMatchesFiniteDifferences) {
  const int T = 5, W = 3, H = 2, E = 4, D = H * E;
  const int64_t pos0 = 2, kpos0 = 0;
  const int Tk = 7;
  auto q = to_double(random_vec(T * D, 20)), k = to_double(random_vec(Tk * D, 21)), v = to_double(random_vec(Tk * D, 22)),
       w = to_double(random_vec(T * D, 23));
  auto f = [&](const std::vector<double>& qq, const std::vector<double>& kk, const std::vector<double>& vv) {
    std::vector<double> out(T * D), lse(T * H);
    ref::attention_fwd(out.data(), lse.data(), qq.data(), kk.data(), vv.data(), T, Tk, pos0, kpos0, H, E, W);
    return dot(out, w);
  };
  std::vector<double> out(T * D), lse(T * H), dq(T * D), dk(Tk * D), dv(Tk * D);
  ref::attention_fwd(out.data(), lse.data(), q.data(), k.data(), v.data(), T, Tk, pos0, kpos0, H, E, W);
  ref::attention_bwd(dq.data(), dk.data(), dv.data(), w.data(), q.data(), k.data(), v.data(), lse.data(), T, Tk, pos0,
                     kpos0, H, E, W);
  EXPECT_TRUE(all_close(dq, numeric_grad(q, [&](const auto& x) { return f(x, k, v); }), 1e-7, 1e-6));
  EXPECT_TRUE(all_close(dk, numeric_grad(k, [&](const auto& x) { return f(q, x, v); }), 1e-7, 1e-6));
  EXPECT_TRUE(all_close(dv, numeric_grad(v, [&](const auto& x) { return f(q, k, x); }), 1e-7, 1e-6));
}

}  // namespace
}  // namespace ttt::test
