// Reference SwiGLU gate forward and backward, and their tangents (the meta
// gradient's forward-over-reverse).
#include "lib/reference/ops.hpp"

#include <cmath>

namespace ttt::ref {

template <typename F>
void swiglu_fwd(F* g, const F* h, int T, int I) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      const double a = h[size_t(t) * 2 * I + i], b = h[size_t(t) * 2 * I + I + i];
      g[size_t(t) * I + i] = F(a / (1.0 + std::exp(-a)) * b);
    }
}

template <typename F>
void swiglu_bwd(F* dh, const F* dg, const F* h, int T, int I) {
  // g = a s(a) b:  dg/da = b s (1 + a (1 - s)),  dg/db = a s
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      const double a = h[size_t(t) * 2 * I + i], b = h[size_t(t) * 2 * I + I + i];
      const double s = 1.0 / (1.0 + std::exp(-a)), d = dg[size_t(t) * I + i];
      dh[size_t(t) * 2 * I + i] = F(d * b * s * (1.0 + a * (1.0 - s)));
      dh[size_t(t) * 2 * I + I + i] = F(d * a * s);
    }
}

template void swiglu_fwd<float>(float*, const float*, int, int);
template void swiglu_fwd<double>(double*, const double*, int, int);
template void swiglu_bwd<float>(float*, const float*, const float*, int, int);
template void swiglu_bwd<double>(double*, const double*, const double*, int, int);

// Tangents (forward-over-reverse) for the meta gradient, written from the
// derivatives of the formulas above.

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

template void swiglu_jvp<float>(float*, const float*, const float*, int, int);
template void swiglu_jvp<double>(double*, const double*, const double*, int, int);
template void swiglu_bwd_tangent<float>(float*, const float*, const float*, const float*, const float*, int, int);
template void swiglu_bwd_tangent<double>(double*, const double*, const double*, const double*, const double*, int,
                                         int);

}  // namespace ttt::ref
