// Tangent kernels of the device meta gradient (in cl/rmsnorm.cl, cl/swiglu.cl,
// cl/xent.cl) and the vector kernels (cl/vector.cl): device vs twin on awkward
// sizes with canaries, the identity forms, accumulation, axpby's offsets and
// NaN-blind b = 0, the two-sweep xent_tangent against full-logits references;
// each twin against central differences of its forward twin.
#include "lib/ops/ops.hpp"
#include "ttt/error.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace ttt::test {
namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

constexpr double kRmsEps = 1e-5;
// (R rows, N) for RMSNorm, (T, I) for SwiGLU.
const std::vector<std::pair<int, int>> kShapes = {{1, 1}, {7, 93}, {93, 7}, {3, 130}, {4, 80}, {2, 1025}};

// rstd (R) of x (R, N) exactly as rmsnorm_fwd saves it (it does not depend on the gain).
template <typename F>
std::vector<F> rstd_of(const std::vector<F>& x, int R, int N) {
  std::vector<F> out(x.size()), rs(static_cast<size_t>(R)), g(size_t(N), F(1));
  ref::rmsnorm_fwd(out.data(), rs.data(), x.data(), g.data(), static_cast<const F*>(nullptr), R, N, F(kRmsEps));
  return rs;
}

// Bit-for-bit equality, NaN included.
::testing::AssertionResult same_bits(const Vec& got, const Vec& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure() << "[" << i << "] got " << got[i] << " want " << want[i];
  return ::testing::AssertionSuccess();
}

class Tangent : public DeviceTest {};

TEST_F(Tangent, SwigluMatchesReference) {
  for (auto [T, I] : kShapes) {
    const size_t n = size_t(T) * I;
    auto h = random_vec(2 * n, 1, -4, 4), hd = random_vec(2 * n, 2), dg = random_vec(n, 3), dgd = random_vec(n, 4);
    Vec gd(n), dhd(2 * n);
    ref::swiglu_jvp(gd.data(), h.data(), hd.data(), T, I);
    ref::swiglu_bwd_tangent(dhd.data(), dg.data(), dgd.data(), h.data(), hd.data(), T, I);
    Canaried dh(dev(), h), dhd_(dev(), hd), ddg(dev(), dg), ddgd(dev(), dgd), ogd(dev(), n, 99.f),
        odhd(dev(), 2 * n, 99.f);
    ops::swiglu_jvp(dev(), ogd.buf, dh.buf, dhd_.buf, T, I);
    ops::swiglu_bwd_tangent(dev(), odhd.buf, ddg.buf, ddgd.buf, dh.buf, dhd_.buf, T, I);
    EXPECT_TRUE(all_close(ogd.get(), gd, 1e-5, 1e-5)) << "T=" << T << " I=" << I;
    EXPECT_TRUE(all_close(odhd.get(), dhd, 1e-5, 1e-5)) << "T=" << T << " I=" << I;
    for (auto* b : {&dh, &dhd_, &ddg, &ddgd, &ogd, &odhd}) EXPECT_TRUE(b->canary_intact());
  }
}

// yd and xdot against the twin with the real rstd; normalize = false is the identity (yd = xd, xdot = 0).
TEST_F(Tangent, RmsnormJvpMatchesReference) {
  for (auto [R, N] : kShapes) {
    auto x = random_vec(size_t(R) * N, 5, -2, 2), xd = random_vec(x.size(), 6), g = random_vec(size_t(N), 7, .5, 1.5);
    auto rstd = rstd_of(x, R, N);
    Vec yd(x.size()), xdot(static_cast<size_t>(R));
    ref::rmsnorm_jvp(yd.data(), xdot.data(), x.data(), xd.data(), g.data(), rstd.data(), R, N);
    Canaried dx(dev(), x), dxd(dev(), xd), dg(dev(), g), drs(dev(), rstd), oyd(dev(), x.size(), 99.f),
        oq(dev(), size_t(R), 99.f);
    ops::rmsnorm_jvp(dev(), oyd.buf, oq.buf, dx.buf, dxd.buf, dg.buf, drs.buf, R, N);
    EXPECT_TRUE(all_close(oyd.get(), yd, 1e-5, 1e-4)) << "R=" << R << " N=" << N;
    EXPECT_TRUE(all_close(oq.get(), xdot, 1e-5, 1e-5)) << "R=" << R << " N=" << N;
    ops::rmsnorm_jvp(dev(), oyd.buf, oq.buf, dx.buf, dxd.buf, dg.buf, drs.buf, R, N, false);
    EXPECT_TRUE(same_bits(oyd.get(), xd)) << "identity, R=" << R << " N=" << N;
    EXPECT_TRUE(same_bits(oq.get(), Vec(size_t(R), 0.f)));
    for (auto* b : {&dx, &dxd, &dg, &drs, &oyd, &oq}) EXPECT_TRUE(b->canary_intact());
  }
}

// Overwrite and accumulate; normalize = false passes dyd through.
TEST_F(Tangent, RmsnormBwdTangentMatchesReference) {
  for (auto [R, N] : kShapes) {
    const size_t n = size_t(R) * N;
    auto x = random_vec(n, 8, -2, 2), xd = random_vec(n, 9), g = random_vec(size_t(N), 10, .5, 1.5),
         dy = random_vec(n, 11), dyd = random_vec(n, 12), dxd0 = random_vec(n, 13);
    auto rstd = rstd_of(x, R, N);
    Vec over(n), acc = dxd0;
    for (auto [out, accumulate] : {std::pair{&over, false}, {&acc, true}})
      ref::rmsnorm_bwd_tangent(out->data(), dy.data(), dyd.data(), x.data(), xd.data(), g.data(), rstd.data(), R, N,
                               accumulate);
    Canaried dx(dev(), x), dxd(dev(), xd), dg(dev(), g), ddy(dev(), dy), ddyd(dev(), dyd), drs(dev(), rstd),
        oover(dev(), n, 99.f), oacc(dev(), dxd0), oid(dev(), n, 99.f);
    ops::rmsnorm_bwd_tangent(dev(), oover.buf, false, ddy.buf, ddyd.buf, dx.buf, dxd.buf, dg.buf, drs.buf, R, N);
    ops::rmsnorm_bwd_tangent(dev(), oacc.buf, true, ddy.buf, ddyd.buf, dx.buf, dxd.buf, dg.buf, drs.buf, R, N);
    ops::rmsnorm_bwd_tangent(dev(), oid.buf, false, ddy.buf, ddyd.buf, dx.buf, dxd.buf, dg.buf, drs.buf, R, N, false);
    EXPECT_TRUE(all_close(oover.get(), over, 1e-5, 1e-4)) << "R=" << R << " N=" << N;
    EXPECT_TRUE(all_close(oacc.get(), acc, 1e-5, 1e-4)) << "accumulate, R=" << R << " N=" << N;
    EXPECT_TRUE(same_bits(oid.get(), dyd)) << "identity, R=" << R << " N=" << N;
    for (auto* b : {&dx, &dxd, &dg, &ddy, &ddyd, &drs, &oover, &oacc, &oid}) EXPECT_TRUE(b->canary_intact());
  }
}

// Always accumulates (from a nonzero dgd); normalize = false leaves dgd as it was.
TEST_F(Tangent, RmsnormWgradTangentMatchesReference) {
  for (auto [R, N] : kShapes) {
    const size_t n = size_t(R) * N;
    auto x = random_vec(n, 14, -2, 2), xd = random_vec(n, 15), dy = random_vec(n, 16), dyd = random_vec(n, 17),
         dgd0 = random_vec(size_t(N), 18);
    auto rstd = rstd_of(x, R, N);
    Vec yd(n), xdot(static_cast<size_t>(R)), ones(size_t(N), 1.f), want = dgd0;
    ref::rmsnorm_jvp(yd.data(), xdot.data(), x.data(), xd.data(), ones.data(), rstd.data(), R, N);
    ref::rmsnorm_wgrad_tangent(want.data(), dy.data(), dyd.data(), x.data(), xd.data(), rstd.data(), xdot.data(), R, N);
    Canaried dx(dev(), x), dxd(dev(), xd), ddy(dev(), dy), ddyd(dev(), dyd), drs(dev(), rstd), dq(dev(), xdot),
        oacc(dev(), dgd0), oid(dev(), dgd0);
    ops::rmsnorm_wgrad_tangent(dev(), oacc.buf, ddy.buf, ddyd.buf, dx.buf, dxd.buf, drs.buf, dq.buf, R, N);
    ops::rmsnorm_wgrad_tangent(dev(), oid.buf, ddy.buf, ddyd.buf, dx.buf, dxd.buf, drs.buf, dq.buf, R, N, false);
    EXPECT_TRUE(all_close(oacc.get(), want, 1e-5, 1e-4)) << "R=" << R << " N=" << N;
    EXPECT_TRUE(same_bits(oid.get(), dgd0)) << "identity, R=" << R << " N=" << N;
    for (auto* b : {&dx, &dxd, &ddy, &ddyd, &drs, &dq, &oacc, &oid}) EXPECT_TRUE(b->canary_intact());
  }
}

// Two pairs summed; sizes below, at and far above the 64 work-groups' reach; exact for small integers.
TEST_F(Tangent, DotMatchesReference) {
  for (auto [n1, n2] : {std::pair<size_t, size_t>{1, 1}, {7, 93}, {1025, 3}, {300001, 65537}}) {
    auto x1 = random_vec(n1, 21), y1 = random_vec(n1, 22), x2 = random_vec(n2, 23), y2 = random_vec(n2, 24);
    const double want = ref::dot(x1.data(), y1.data(), n1) + ref::dot(x2.data(), y2.data(), n2);
    Canaried a1(dev(), x1), b1(dev(), y1), a2(dev(), x2), b2(dev(), y2), part(dev(), size_t(ops::dot_partials(2)));
    const double got = ops::dot(dev(), {{&a1.buf, &b1.buf}, {&a2.buf, &b2.buf}}, {n1, n2}, part.buf);
    EXPECT_NEAR(got, want, 1e-5 * (1 + std::sqrt(double(n1 + n2)))) << "n1=" << n1 << " n2=" << n2;
    for (auto* b : {&a1, &b1, &a2, &b2, &part}) EXPECT_TRUE(b->canary_intact());
  }
  Vec ints(1000);
  for (size_t i = 0; i < ints.size(); ++i) ints[i] = float(int(i % 7) - 3);
  Canaried x(dev(), ints), part(dev(), size_t(ops::dot_partials(1)));
  const double want = ref::dot(ints.data(), ints.data(), ints.size());
  EXPECT_EQ(ops::dot(dev(), {{&x.buf, &x.buf}}, {ints.size()}, part.buf), want);
  EXPECT_THROW(ops::dot(dev(), {{&x.buf, &x.buf}}, {}, part.buf), Error);
}

// Offsets on both sides; elements outside [y_off, y_off + n) untouched; b = 0 never reads y (NaN there).
TEST_F(Tangent, AxpbyMatchesReference) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), a = 0.75f, b = -1.5f;
  for (size_t n : {1, 7, 93, 1025}) {
    const size_t xo = 3, yo = 5;
    auto x = random_vec(n + xo + 2, 19), y = random_vec(n + yo + 4, 20);
    Vec ynan(y.size(), nan), want0 = ynan, want1 = y;
    ref::axpby(want0.data() + yo, a, x.data() + xo, 0.f, n);
    ref::axpby(want1.data() + yo, a, x.data() + xo, b, n);
    Canaried dx(dev(), x), o0(dev(), ynan), o1(dev(), y);
    ops::axpby(dev(), o0.buf, yo, a, dx.buf, xo, 0.f, n);
    ops::axpby(dev(), o1.buf, yo, a, dx.buf, xo, b, n);
    EXPECT_TRUE(same_bits(o0.get(), want0)) << "b = 0, n=" << n;
    EXPECT_TRUE(all_close(o1.get(), want1, 1e-6, 1e-6)) << "n=" << n;
    for (auto* c : {&dx, &o0, &o1}) EXPECT_TRUE(c->canary_intact());
  }
}

struct XentCase {
  int T, D, V, tile;
  bool tied;
  std::string name() const {
    return "T" + std::to_string(T) + "_D" + std::to_string(D) + "_V" + std::to_string(V) + "_tile" +
           std::to_string(tile) + (tied ? "_tied" : "_untied");
  }
};

class XentTangent : public DeviceTest, public ::testing::WithParamInterface<XentCase> {};

// Reference in double on full logits over the (V, D) view Wv of W: logits = h Wv^T,
// zd = hd Wv^T, G = xent_bwd, Gd = xent_bwd_tangent, dhd = Gd Wv, dWd += Gd^T h + G^T hd.
TEST_P(XentTangent, MatchesReference) {
  const auto c = GetParam();
  const int T = c.T, D = c.D, V = c.V, bos = 3 % V;
  const size_t nh = size_t(T) * D, nw = size_t(V) * D, nl = size_t(T) * V;
  auto h = random_vec(nh, 21, -2, 2), hd = random_vec(nh, 22), W = random_vec(nw, 23), dWd0 = random_vec(nw, 24);
  std::vector<int32_t> targets(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) targets[size_t(t)] = (t * 31 + 5) % V;
  for (int t : {1, 4})
    if (t < T) targets[size_t(t)] = bos;  // weight 0
  int count = 0;
  for (auto t : targets) count += t != bos;
  const float inv = count ? 1.f / float(count) : 0.f;
  // at(v, d): W's element for vocabulary row v, dimension d (tied (V, D); lm_head (D, V)).
  auto at = [&](int v, int d) { return c.tied ? size_t(v) * D + d : size_t(d) * V + v; };
  DVec Wv(nw), hh = to_double(h), hhd = to_double(hd), wt(static_cast<size_t>(T));
  for (int v = 0; v < V; ++v)
    for (int d = 0; d < D; ++d) Wv[size_t(v) * D + d] = W[at(v, d)];
  for (int t = 0; t < T; ++t) wt[size_t(t)] = targets[size_t(t)] == bos ? 0.0 : double(inv);
  DVec logits(nl), zd(nl), G(nl), Gd(nl), dhd(nh), dWv(nw), want_dW(nw);
  ref::matmul(logits.data(), hh.data(), Wv.data(), T, V, D, false, true, false);
  ref::matmul(zd.data(), hhd.data(), Wv.data(), T, V, D, false, true, false);
  ref::xent_bwd(G.data(), logits.data(), targets.data(), wt.data(), T, V);
  ref::xent_bwd_tangent(Gd.data(), logits.data(), zd.data(), wt.data(), T, V);
  ref::matmul(dhd.data(), Gd.data(), Wv.data(), T, D, V, false, false, false);
  ref::matmul(dWv.data(), Gd.data(), hh.data(), V, D, T, true, false, false);
  ref::matmul(dWv.data(), G.data(), hhd.data(), V, D, T, true, false, true);
  for (int v = 0; v < V; ++v)
    for (int d = 0; d < D; ++d) want_dW[at(v, d)] = dWd0[at(v, d)] + dWv[size_t(v) * D + d];

  ops::XentScratch w(dev(), T, D, c.tile);
  auto dtg = int_buffer(dev(), targets);
  Canaried dh(dev(), h), dhd_(dev(), hd), dW(dev(), W), nll(dev(), size_t(T)), grad(dev(), nh),
      ozd(dev(), size_t(T) * c.tile), osig(dev(), size_t(T)), odhd(dev(), nh, 99.f), odWd(dev(), dWd0);
  // Either form of the first sweep leaves the m and s that xent_tangent reads.
  ops::xent(dev(), w, nll.buf, c.tied ? &grad.buf : nullptr, dh.buf, dW.buf, c.tied, dtg, T, D, V, bos, inv);
  ops::xent_tangent(dev(), w, ozd.buf, osig.buf, odhd.buf, odWd.buf, dh.buf, dhd_.buf, dW.buf, c.tied, dtg, T, D, V,
                    bos, inv);
  // Float logits and zd carry ~1e-6 absolute error at D = 80 (|logit| up to ~15, p near one-hot),
  // which reaches small dWd entries through G and Gd: hence atol 1e-5 there.
  EXPECT_TRUE(all_close(odhd.get(), dhd, 1e-6, 1e-4)) << "dhd";
  EXPECT_TRUE(all_close(odWd.get(), want_dW, 1e-5, 1e-5)) << "dWd (accumulated)";
  for (auto* b : {&dh, &dhd_, &dW, &nll, &grad, &ozd, &osig, &odhd, &odWd}) EXPECT_TRUE(b->canary_intact());
}

// V not a multiple of the tile, tiles of 1, a tile wider than V, tied and untied.
INSTANTIATE_TEST_SUITE_P(Shapes, XentTangent,
                         ::testing::Values(XentCase{1, 5, 3, 64, true}, XentCase{7, 16, 93, 10, true},
                                           XentCase{5, 33, 100, 32, false}, XentCase{3, 8, 7, 1, true},
                                           XentCase{6, 24, 130, 64, false}, XentCase{4, 80, 50, 16, true}),
                         [](const auto& i) { return i.param.name(); });

// Finite differences: derivatives along the tangents of outputs f(e) computed at inputs x + e xd.
DVec moved(const DVec& x, const DVec& xd, double e) {
  DVec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] + e * xd[i];
  return y;
}

template <typename Fn>
DVec along(Fn f, double eps = 1e-6) {
  DVec p = f(eps), m = f(-eps);
  for (size_t i = 0; i < p.size(); ++i) p[i] = (p[i] - m[i]) / (2 * eps);
  return p;
}

DVec rand_d(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) { return to_double(random_vec(n, seed, lo, hi)); }

DVec plus(DVec a, const DVec& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

TEST(TangentReference, SwigluJvpMatchesFiniteDifferences) {
  const int T = 3, I = 5;
  auto h = rand_d(T * 2 * I, 31, -3, 3), hd = rand_d(h.size(), 32);
  DVec gd(T * I);
  ref::swiglu_jvp(gd.data(), h.data(), hd.data(), T, I);
  auto fd = along([&](double e) {
    DVec g(T * I), hh = moved(h, hd, e);
    ref::swiglu_fwd(g.data(), hh.data(), T, I);
    return g;
  });
  EXPECT_TRUE(all_close(gd, fd, 1e-8, 1e-6));
}

TEST(TangentReference, SwigluBwdTangentMatchesFiniteDifferences) {
  const int T = 3, I = 5;
  auto h = rand_d(T * 2 * I, 33, -3, 3), hd = rand_d(h.size(), 34), dg = rand_d(T * I, 35), dgd = rand_d(T * I, 36);
  DVec dhd(h.size());
  ref::swiglu_bwd_tangent(dhd.data(), dg.data(), dgd.data(), h.data(), hd.data(), T, I);
  auto fd = along([&](double e) {
    DVec dh(h.size()), hh = moved(h, hd, e), gg = moved(dg, dgd, e);
    ref::swiglu_bwd(dh.data(), gg.data(), hh.data(), T, I);
    return dh;
  });
  EXPECT_TRUE(all_close(dhd, fd, 1e-8, 1e-6));
}

TEST(TangentReference, RmsnormJvpMatchesFiniteDifferences) {
  const int R = 3, N = 7;
  auto x = rand_d(R * N, 37, -2, 2), xd = rand_d(x.size(), 38), g = rand_d(N, 39, .5, 1.5);
  DVec yd(x.size()), xdot(R), rs = rstd_of(x, R, N);
  ref::rmsnorm_jvp(yd.data(), xdot.data(), x.data(), xd.data(), g.data(), rs.data(), R, N);
  auto fd = along([&](double e) {
    DVec y(x.size()), r(R), xx = moved(x, xd, e);
    ref::rmsnorm_fwd(y.data(), r.data(), xx.data(), g.data(), static_cast<const double*>(nullptr), R, N, kRmsEps);
    return y;
  });
  EXPECT_TRUE(all_close(yd, fd, 1e-8, 1e-6));
  for (int t = 0; t < R; ++t) {
    double q = 0;
    for (int i = 0; i < N; ++i) q += x[t * N + i] * xd[t * N + i];
    EXPECT_NEAR(xdot[t], q, 1e-12) << "xdot = x . xd, row " << t;
  }
}

// x moves along xd (rstd recomputed) and dy along dyd; accumulate adds to what dxd held.
TEST(TangentReference, RmsnormBwdTangentMatchesFiniteDifferences) {
  const int R = 3, N = 7;
  auto x = rand_d(R * N, 40, -2, 2), xd = rand_d(x.size(), 41), g = rand_d(N, 42, .5, 1.5), dy = rand_d(x.size(), 43),
       dyd = rand_d(x.size(), 44), dxd0 = rand_d(x.size(), 45);
  DVec over(x.size()), acc = dxd0, rs = rstd_of(x, R, N);
  ref::rmsnorm_bwd_tangent(over.data(), dy.data(), dyd.data(), x.data(), xd.data(), g.data(), rs.data(), R, N, false);
  ref::rmsnorm_bwd_tangent(acc.data(), dy.data(), dyd.data(), x.data(), xd.data(), g.data(), rs.data(), R, N, true);
  auto fd = along([&](double e) {
    DVec dx(x.size()), xx = moved(x, xd, e), yy = moved(dy, dyd, e), r = rstd_of(xx, R, N);
    ref::rmsnorm_bwd(dx.data(), yy.data(), xx.data(), g.data(), r.data(), R, N, false);
    return dx;
  });
  EXPECT_TRUE(all_close(over, fd, 1e-8, 1e-6));
  EXPECT_TRUE(all_close(acc, plus(dxd0, fd), 1e-8, 1e-6)) << "accumulate";
}

TEST(TangentReference, RmsnormWgradTangentMatchesFiniteDifferences) {
  const int R = 4, N = 5;
  auto x = rand_d(R * N, 46, -2, 2), xd = rand_d(x.size(), 47), dy = rand_d(x.size(), 48), dyd = rand_d(x.size(), 49),
       dgd0 = rand_d(N, 50);
  DVec yd(x.size()), xdot(R), ones(N, 1.0), got = dgd0, rs = rstd_of(x, R, N);
  ref::rmsnorm_jvp(yd.data(), xdot.data(), x.data(), xd.data(), ones.data(), rs.data(), R, N);
  ref::rmsnorm_wgrad_tangent(got.data(), dy.data(), dyd.data(), x.data(), xd.data(), rs.data(), xdot.data(), R, N);
  auto fd = along([&](double e) {
    DVec dg(N), xx = moved(x, xd, e), yy = moved(dy, dyd, e), r = rstd_of(xx, R, N);
    ref::rmsnorm_wgrad(dg.data(), yy.data(), xx.data(), r.data(), R, N, false);
    return dg;
  });
  EXPECT_TRUE(all_close(got, plus(dgd0, fd), 1e-8, 1e-6));
}

TEST(TangentReference, XentBwdTangentMatchesFiniteDifferences) {
  const int T = 4, V = 6;
  auto l = rand_d(T * V, 51, -3, 3), zd = rand_d(l.size(), 52);
  const std::vector<int32_t> targets = {1, 5, 0, 3};
  const DVec w = {0.5, 0.25, 0.0, 1.0};
  DVec dzd(l.size());
  ref::xent_bwd_tangent(dzd.data(), l.data(), zd.data(), w.data(), T, V);
  auto fd = along([&](double e) {
    DVec dl(l.size()), ll = moved(l, zd, e);
    ref::xent_bwd(dl.data(), ll.data(), targets.data(), w.data(), T, V);
    return dl;
  });
  EXPECT_TRUE(all_close(dzd, fd, 1e-9, 1e-6));
}

}  // namespace
}  // namespace ttt::test
