// Reference cross-entropy over full logits rows (the device never holds a full
// row set; see cl/xent.cl for the tiled version of the same math), and the
// logits gradient's tangent.
#include "lib/reference/ops.hpp"

#include <algorithm>
#include <cmath>

namespace ttt::ref {
namespace {

// log(sum_v exp(l[v])) of one row, computed stably.
template <typename F>
double logsumexp(const F* l, int V) {
  double mx = l[0];
  for (int v = 1; v < V; ++v) mx = std::max(mx, double(l[v]));
  double s = 0;
  for (int v = 0; v < V; ++v) s += std::exp(double(l[v]) - mx);
  return mx + std::log(s);
}

}  // namespace

template <typename F>
void xent_fwd(F* nll, const F* logits, const int32_t* targets, int T, int V) {
  for (int t = 0; t < T; ++t) {
    const F* l = logits + size_t(t) * V;
    nll[t] = F(logsumexp(l, V) - double(l[targets[t]]));
  }
}

template <typename F>
void xent_bwd(F* dlogits, const F* logits, const int32_t* targets, const F* weight, int T, int V) {
  for (int t = 0; t < T; ++t) {
    const F* l = logits + size_t(t) * V;
    const double lse = logsumexp(l, V);
    for (int v = 0; v < V; ++v) {
      const double p = std::exp(double(l[v]) - lse);
      dlogits[size_t(t) * V + v] = F(double(weight[t]) * (p - (v == targets[t] ? 1.0 : 0.0)));
    }
  }
}

template void xent_fwd<float>(float*, const float*, const int32_t*, int, int);
template void xent_fwd<double>(double*, const double*, const int32_t*, int, int);
template void xent_bwd<float>(float*, const float*, const int32_t*, const float*, int, int);
template void xent_bwd<double>(double*, const double*, const int32_t*, const double*, int, int);

// Tangents (forward-over-reverse) for the meta gradient, written from the
// derivatives of the formulas above.

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

template void xent_bwd_tangent<float>(float*, const float*, const float*, const float*, int, int);
template void xent_bwd_tangent<double>(double*, const double*, const double*, const double*, int, int);

}  // namespace ttt::ref
