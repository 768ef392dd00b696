// Reference RMSNorm forward (with optional residual), backward and gain gradient,
// and the tangents of the three (the meta gradient's forward-over-reverse).
#include "lib/reference/ops.hpp"

#include <cmath>

namespace ttt::ref {

template <typename F>
void rmsnorm_fwd(F* out, F* rstd, const F* x, const F* g, const F* res, int R, int N, F eps) {
  for (int r = 0; r < R; ++r) {
    const F* xr = x + size_t(r) * N;
    double ss = 0;
    for (int i = 0; i < N; ++i) ss += double(xr[i]) * double(xr[i]);
    const F rs = F(1.0 / std::sqrt(ss / N + double(eps)));
    rstd[r] = rs;
    for (int i = 0; i < N; ++i) {
      const F y = xr[i] * rs * g[i];
      out[size_t(r) * N + i] = res ? res[size_t(r) * N + i] + y : y;
    }
  }
}

template <typename F>
void rmsnorm_bwd(F* dx, const F* dy, const F* x, const F* g, const F* rstd, int R, int N, bool accumulate) {
  // y_i = x_i r g_i, r = (mean x^2 + eps)^-1/2  =>  dx_i = r g_i dy_i - r^3 x_i / N * sum_j dy_j g_j x_j
  for (int r = 0; r < R; ++r) {
    const F* xr = x + size_t(r) * N;
    const F* dyr = dy + size_t(r) * N;
    F* dxr = dx + size_t(r) * N;
    double dot = 0;
    for (int i = 0; i < N; ++i) dot += double(dyr[i]) * double(g[i]) * double(xr[i]);
    const double rs = rstd[r];
    const double c = rs * rs * rs * dot / N;
    for (int i = 0; i < N; ++i) {
      const F d = F(rs * double(g[i]) * double(dyr[i]) - c * double(xr[i]));
      dxr[i] = accumulate ? dxr[i] + d : d;
    }
  }
}

template void rmsnorm_fwd<float>(float*, float*, const float*, const float*, const float*, int, int, float);
template void rmsnorm_fwd<double>(double*, double*, const double*, const double*, const double*, int, int, double);
template <typename F>
void rmsnorm_wgrad(F* dg, const F* dy, const F* x, const F* rstd, int R, int N, bool accumulate) {
  for (int i = 0; i < N; ++i) {
    double acc = 0;
    for (int r = 0; r < R; ++r) acc += double(dy[size_t(r) * N + i]) * double(x[size_t(r) * N + i]) * double(rstd[r]);
    dg[i] = accumulate ? F(double(dg[i]) + acc) : F(acc);
  }
}

template void rmsnorm_wgrad<float>(float*, const float*, const float*, const float*, int, int, bool);
template void rmsnorm_wgrad<double>(double*, const double*, const double*, const double*, int, int, bool);
template void rmsnorm_bwd<float>(float*, const float*, const float*, const float*, const float*, int, int, bool);
template void rmsnorm_bwd<double>(double*, const double*, const double*, const double*, const double*, int, int,
                                  bool);

// Tangents (forward-over-reverse) for the meta gradient, written from the
// derivatives of the formulas above.

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

template void rmsnorm_jvp<float>(float*, float*, const float*, const float*, const float*, const float*, int, int);
template void rmsnorm_jvp<double>(double*, double*, const double*, const double*, const double*, const double*, int,
                                  int);
template void rmsnorm_bwd_tangent<float>(float*, const float*, const float*, const float*, const float*, const float*,
                                         const float*, int, int, bool);
template void rmsnorm_bwd_tangent<double>(double*, const double*, const double*, const double*, const double*,
                                          const double*, const double*, int, int, bool);
template void rmsnorm_wgrad_tangent<float>(float*, const float*, const float*, const float*, const float*,
                                           const float*, const float*, int, int);
template void rmsnorm_wgrad_tangent<double>(double*, const double*, const double*, const double*, const double*,
                                            const double*, const double*, int, int);

}  // namespace ttt::ref
