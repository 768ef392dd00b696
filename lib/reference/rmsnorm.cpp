// Reference RMSNorm forward (with optional residual) and backward.
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

}  // namespace ttt::ref
