// Reference SwiGLU gate forward and backward.
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

}  // namespace ttt::ref
