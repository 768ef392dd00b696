// RMSNorm: device vs reference on awkward sizes, strided rows (per-head
// slices of a fused matrix), residual and accumulate variants, canaries; the
// reference backward against finite differences.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/cases.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

using Case = cases::RmsNorm;

class RmsNorm : public DeviceTest, public ::testing::WithParamInterface<Case> {};

// x is a (T, ld) matrix whose rows hold H slices of N at column offset `off`.
TEST_P(RmsNorm, ForwardAndBackwardMatchReference) {
  const auto [T, H, N] = GetParam();
  const int off = 5, ld = H * N + 11, R = T * H;
  const size_t total = size_t(T) * ld + off;
  auto x = random_vec(total, 1, -2, 2), g = random_vec(size_t(N), 2, 0.5, 1.5), res = random_vec(total, 3),
       dy = random_vec(total, 4), dx0 = random_vec(total, 5);
  // Reference on the packed rows.
  auto pack = [&](const std::vector<float>& m) {
    std::vector<float> p(size_t(R) * N);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H * N; ++i) p[size_t(t) * H * N + i] = m[off + size_t(t) * ld + i];
    return p;
  };
  std::vector<float> ref_out(size_t(R) * N), ref_rstd(static_cast<size_t>(R)), ref_dx = pack(dx0);
  auto px = pack(x), pres = pack(res), pdy = pack(dy);
  ref::rmsnorm_fwd(ref_out.data(), ref_rstd.data(), px.data(), g.data(), pres.data(), R, N, 1e-6f);
  ref::rmsnorm_bwd(ref_dx.data(), pdy.data(), px.data(), g.data(), ref_rstd.data(), R, N, true);

  Canaried dx_buf(dev(), x), dres(dev(), res), dout(dev(), total), drstd(dev(), size_t(R)), dg(dev(), g),
      ddy(dev(), dy), ddx(dev(), dx0);
  ops::Mat mres = ops::mat(dres.buf, ld, off);
  ops::rmsnorm_fwd(dev(), ops::mat(dout.buf, ld, off), drstd.buf, ops::mat(dx_buf.buf, ld, off), dg.buf, &mres, T, H,
                   N, 1e-6f);
  ops::rmsnorm_bwd(dev(), ops::mat(ddx.buf, ld, off), true, ops::mat(ddy.buf, ld, off), ops::mat(dx_buf.buf, ld, off),
                   dg.buf, drstd.buf, T, H, N);
  EXPECT_TRUE(all_close(pack(dout.get()), ref_out, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(drstd.get(), ref_rstd, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(pack(ddx.get()), ref_dx, 1e-5, 1e-4));
  // Columns outside the slices are untouched.
  auto out = dout.get();
  for (int t = 0; t < T; ++t)
    for (int c = H * N; c < ld; ++c) ASSERT_EQ(out[off + size_t(t) * ld + c], 0.f) << "t=" << t << " c=" << c;
  for (auto* b : {&dx_buf, &dres, &dout, &drstd, &dg, &ddy, &ddx}) EXPECT_TRUE(b->canary_intact());
}

TEST_P(RmsNorm, IdentityWhenDisabledAndOverwriteWithoutAccumulate) {
  const auto [T, H, N] = GetParam();
  const int R = T * H, D = H * N;
  auto x = random_vec(size_t(R) * N, 6), g = random_vec(size_t(N), 7), dy = random_vec(size_t(R) * N, 8);
  Canaried dx_(dev(), x), dout(dev(), x.size()), drstd(dev(), size_t(R)), dg(dev(), g), ddy(dev(), dy),
      ddx(dev(), x.size(), 99.f);
  ops::rmsnorm_fwd(dev(), ops::mat(dout.buf, D), drstd.buf, ops::mat(dx_.buf, D), dg.buf, nullptr, T, H, N, 1e-6f,
                   false);
  ops::rmsnorm_bwd(dev(), ops::mat(ddx.buf, D), false, ops::mat(ddy.buf, D), ops::mat(dx_.buf, D), dg.buf, drstd.buf,
                   T, H, N, false);
  EXPECT_EQ(dout.get(), x);
  EXPECT_EQ(ddx.get(), dy);
  EXPECT_TRUE(dout.canary_intact());
  EXPECT_TRUE(ddx.canary_intact());
}

// The gain's gradient on strided slices, accumulate and overwrite, and 0 for the identity.
TEST_P(RmsNorm, GainGradientMatchesReference) {
  const auto [T, H, N] = GetParam();
  const int off = 3, ld = H * N + 7, R = T * H;
  const size_t total = size_t(T) * ld + off;
  auto x = random_vec(total, 21, -2, 2), dy = random_vec(total, 22), rstd = random_vec(size_t(R), 23, 0.5, 2),
       dg0 = random_vec(size_t(N), 24);
  std::vector<float> px(size_t(R) * N), pdy(px.size());
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H * N; ++i) {
      px[size_t(t) * H * N + i] = x[off + size_t(t) * ld + i];
      pdy[size_t(t) * H * N + i] = dy[off + size_t(t) * ld + i];
    }
  std::vector<float> want_acc = dg0, want(static_cast<size_t>(N));
  ref::rmsnorm_wgrad(want_acc.data(), pdy.data(), px.data(), rstd.data(), R, N, true);
  ref::rmsnorm_wgrad(want.data(), pdy.data(), px.data(), rstd.data(), R, N, false);
  Canaried dx_(dev(), x), ddy(dev(), dy), drs(dev(), rstd), dacc(dev(), dg0), dover(dev(), size_t(N), 99.f),
      did(dev(), size_t(N), 99.f);
  ops::rmsnorm_wgrad(dev(), dacc.buf, true, ops::mat(ddy.buf, ld, off), ops::mat(dx_.buf, ld, off), drs.buf, T, H, N);
  ops::rmsnorm_wgrad(dev(), dover.buf, false, ops::mat(ddy.buf, ld, off), ops::mat(dx_.buf, ld, off), drs.buf, T, H,
                     N);
  ops::rmsnorm_wgrad(dev(), did.buf, false, ops::mat(ddy.buf, ld, off), ops::mat(dx_.buf, ld, off), drs.buf, T, H, N,
                     false);
  EXPECT_TRUE(all_close(dacc.get(), want_acc, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(dover.get(), want, 1e-5, 1e-4));
  EXPECT_EQ(did.get(), std::vector<float>(size_t(N), 0.f));
  for (auto* b : {&dx_, &ddy, &drs, &dacc, &dover, &did}) EXPECT_TRUE(b->canary_intact());
}

INSTANTIATE_TEST_SUITE_P(Sizes, RmsNorm, ::testing::ValuesIn(cases::rmsnorm()),
                         [](const auto& i) { return i.param.name(); });

TEST(RmsNormReference, BackwardMatchesFiniteDifferences) {
  const int R = 3, N = 7;
  auto x = to_double(random_vec(R * N, 10, -2, 2)), g = to_double(random_vec(N, 11, 0.5, 1.5)),
       w = to_double(random_vec(R * N, 12));
  auto loss = [&](const std::vector<double>& xx) {
    std::vector<double> out(R * N), rs(R);
    ref::rmsnorm_fwd(out.data(), rs.data(), xx.data(), g.data(), static_cast<const double*>(nullptr), R, N, 1e-6);
    return dot(out, w);
  };
  std::vector<double> out(R * N), rs(R), dx(R * N);
  ref::rmsnorm_fwd(out.data(), rs.data(), x.data(), g.data(), static_cast<const double*>(nullptr), R, N, 1e-6);
  ref::rmsnorm_bwd(dx.data(), w.data(), x.data(), g.data(), rs.data(), R, N, false);
  EXPECT_TRUE(all_close(dx, numeric_grad(x, loss), 1e-7, 1e-6));
}

TEST(RmsNormReference, GainGradientMatchesFiniteDifferences) {
  const int R = 4, N = 5;
  auto x = to_double(random_vec(R * N, 13, -2, 2)), g = to_double(random_vec(N, 14, 0.5, 1.5)),
       w = to_double(random_vec(R * N, 15)), res = to_double(random_vec(R * N, 16));
  auto loss = [&](const std::vector<double>& gg) {
    std::vector<double> out(R * N), rs(R);
    ref::rmsnorm_fwd(out.data(), rs.data(), x.data(), gg.data(), res.data(), R, N, 1e-6);
    return dot(out, w);
  };
  std::vector<double> out(R * N), rs(R), dg(N);
  ref::rmsnorm_fwd(out.data(), rs.data(), x.data(), g.data(), res.data(), R, N, 1e-6);
  ref::rmsnorm_wgrad(dg.data(), w.data(), x.data(), rs.data(), R, N, false);
  EXPECT_TRUE(all_close(dg, numeric_grad(g, loss), 1e-7, 1e-6));
}

}  // namespace
}  // namespace ttt::test
