// Twins of cl/tangent.cl: the tangents of SwiGLU, RMSNorm and the logits
// gradient, written from the derivatives of the forward twins' formulas.
#include "lib/reference/ops.hpp"

#include <algorithm>
#include <cmath>

namespace ttt::ref {

template <typename F>
void swiglu_jvp(F* gd, const F* h, const F* hd, int T, int I) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      const size_t r = size_t(t) * 2 * I;
      const double a = h[r + i], b = h[r + I + i], s = 1.0 / (1.0 + std::exp(-a));
      gd[size_t(t) * I + i] = F(s * (1 + a * (1 - s)) * hd[r + i] * b + a * s * hd[r + I + i]);
    }
}

template <typename F>
void swiglu_bwd_tangent(F* dhd, const F* dg, const F* dgd, const F* h, const F* hd, int T, int I) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      const size_t r = size_t(t) * 2 * I, k = size_t(t) * I + i;
      const double a = h[r + i], b = h[r + I + i], ad = hd[r + i], bd = hd[r + I + i];
      const double s = 1.0 / (1.0 + std::exp(-a)), d = dg[k], dd = dgd[k];
      const double silu = a * s, silu1 = s * (1 + a * (1 - s)), silu2 = s * (1 - s) * (2 + a * (1 - 2 * s));
      dhd[r + i] = F(dd * b * silu1 + d * bd * silu1 + d * b * silu2 * ad);
      dhd[r + I + i] = F(dd * silu + d * silu1 * ad);
    }
}

template <typename F>
void rmsnorm_jvp(F* yd, F* xdot, const F* x, const F* xd, const F* g, const F* rstd, int R, int N) {
  for (int t = 0; t < R; ++t) {
    const size_t o = size_t(t) * N;
    double q = 0;
    for (int i = 0; i < N; ++i) q += double(x[o + i]) * xd[o + i];
    xdot[t] = F(q);
    const double r = rstd[t], c = r * r * r * q / N;
    for (int i = 0; i < N; ++i) yd[o + i] = F(g[i] * (r * xd[o + i] - c * x[o + i]));
  }
}

template <typename F>
void rmsnorm_bwd_tangent(F* dxd, const F* dy, const F* dyd, const F* x, const F* xd, const F* g, const F* rstd, int R,
                         int N, bool accumulate) {
  for (int t = 0; t < R; ++t) {
    const size_t o = size_t(t) * N;
    double q = 0, s = 0, sd = 0;
    for (int i = 0; i < N; ++i) {
      const double u = double(g[i]) * dy[o + i], ud = double(g[i]) * dyd[o + i];
      q += double(x[o + i]) * xd[o + i];
      s += x[o + i] * u;
      sd += xd[o + i] * u + x[o + i] * ud;
    }
    // d/de of r u - r^3 s / N x with dr/de = -r^3 q / N.
    const double r = rstd[t], r3 = r * r * r / N;
    for (int i = 0; i < N; ++i) {
      const double v = r * g[i] * dyd[o + i] - r3 * q * g[i] * dy[o + i] -
                       (r3 * sd - 3 * r3 * r * r * q * s / N) * x[o + i] - r3 * s * xd[o + i];
      dxd[o + i] = F(accumulate ? dxd[o + i] + v : v);
    }
  }
}

template <typename F>
void rmsnorm_wgrad_tangent(F* dgd, const F* dy, const F* dyd, const F* x, const F* xd, const F* rstd, const F* xdot,
                           int R, int N) {
  for (int n = 0; n < N; ++n) {
    double acc = 0;
    for (int t = 0; t < R; ++t) {
      const size_t k = size_t(t) * N + n;
      const double r = rstd[t];
      acc += r * (double(dyd[k]) * x[k] + double(dy[k]) * xd[k] - double(dy[k]) * x[k] * r * r * xdot[t] / N);
    }
    dgd[n] = F(dgd[n] + acc);
  }
}

template <typename F>
void xent_bwd_tangent(F* dzd, const F* logits, const F* zd, const F* weight, int T, int V) {
  for (int t = 0; t < T; ++t) {
    const F* z = logits + size_t(t) * V;
    const double m = *std::max_element(z, z + V);
    double s = 0, sigma = 0;
    for (int v = 0; v < V; ++v) s += std::exp(z[v] - m);
    for (int v = 0; v < V; ++v) sigma += std::exp(z[v] - m) / s * zd[size_t(t) * V + v];
    for (int v = 0; v < V; ++v) {
      const double p = std::exp(z[v] - m) / s;
      dzd[size_t(t) * V + v] = F(weight[t] * p * (zd[size_t(t) * V + v] - sigma));
    }
  }
}

#define TTT_TANGENT(F)                                                                                   \
  template void swiglu_jvp<F>(F*, const F*, const F*, int, int);                                         \
  template void swiglu_bwd_tangent<F>(F*, const F*, const F*, const F*, const F*, int, int);             \
  template void rmsnorm_jvp<F>(F*, F*, const F*, const F*, const F*, const F*, int, int);                \
  template void rmsnorm_bwd_tangent<F>(F*, const F*, const F*, const F*, const F*, const F*, const F*, int, int, \
                                       bool);                                                            \
  template void rmsnorm_wgrad_tangent<F>(F*, const F*, const F*, const F*, const F*, const F*, const F*, int, int); \
  template void xent_bwd_tangent<F>(F*, const F*, const F*, const F*, int, int);
TTT_TANGENT(float)
TTT_TANGENT(double)

}  // namespace ttt::ref
