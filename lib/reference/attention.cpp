// Reference sliding-window causal attention, forward and backward, by the
// textbook formulas (explicit probabilities per query).
#include "lib/reference/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ttt::ref {
namespace {

// Keys visible to the query at position p: indices [lo, hi) into k/v.
void window(int64_t p, int64_t kpos0, int Tk, int W, int& lo, int& hi) {
  lo = int(std::clamp<int64_t>(p - W + 1 - kpos0, 0, Tk));
  hi = int(std::clamp<int64_t>(p + 1 - kpos0, 0, Tk));
}

// Probabilities of query (t, h) over keys lo..hi-1; returns log-sum-exp.
template <typename F>
double probs(std::vector<double>& p, const F* q, const F* k, int t, int h, int lo, int hi, int H, int E) {
  const double scale = 1.0 / std::sqrt(double(E));
  const F* qt = q + (size_t(t) * H + h) * E;
  double mx = -std::numeric_limits<double>::infinity();
  p.assign(size_t(std::max(hi - lo, 0)), 0.0);
  for (int j = lo; j < hi; ++j) {
    const F* kj = k + (size_t(j) * H + h) * E;
    double s = 0;
    for (int e = 0; e < E; ++e) s += double(qt[e]) * double(kj[e]);
    p[size_t(j - lo)] = s * scale;
    mx = std::max(mx, s * scale);
  }
  double sum = 0;
  for (auto& x : p) sum += (x = std::exp(x - mx));
  for (auto& x : p) x /= sum;
  return mx + std::log(sum);
}

}  // namespace

template <typename F>
void attention_fwd(F* out, F* lse, const F* q, const F* k, const F* v, int T, int Tk, int64_t pos0, int64_t kpos0,
                   int H, int E, int W) {
  std::vector<double> p;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      int lo, hi;
      window(pos0 + t, kpos0, Tk, W, lo, hi);
      F* o = out + (size_t(t) * H + h) * E;
      if (lo >= hi) {  // no visible key (cannot happen in a model: a query sees itself)
        std::fill(o, o + E, F(0));
        lse[size_t(t) * H + h] = -std::numeric_limits<F>::infinity();
        continue;
      }
      lse[size_t(t) * H + h] = F(probs(p, q, k, t, h, lo, hi, H, E));
      for (int e = 0; e < E; ++e) {
        double acc = 0;
        for (int j = lo; j < hi; ++j) acc += p[size_t(j - lo)] * double(v[(size_t(j) * H + h) * E + e]);
        o[e] = F(acc);
      }
    }
}

template <typename F>
void attention_bwd(F* dq, F* dk, F* dv, const F* dout, const F* q, const F* k, const F* v, const F* lse, int T,
                   int Tk, int64_t pos0, int64_t kpos0, int H, int E, int W) {
  (void)lse;  // the reference recomputes the probabilities exactly
  const double scale = 1.0 / std::sqrt(double(E));
  std::vector<double> gq(size_t(T) * H * E, 0.0), gk(size_t(Tk) * H * E, 0.0), gv(size_t(Tk) * H * E, 0.0), p;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      int lo, hi;
      window(pos0 + t, kpos0, Tk, W, lo, hi);
      if (lo >= hi) continue;
      probs(p, q, k, t, h, lo, hi, H, E);
      const F* dot = dout + (size_t(t) * H + h) * E;
      // dP_j = dout . v_j ; dS_j = P_j (dP_j - sum_i P_i dP_i)
      std::vector<double> dp(p.size());
      double dsum = 0;
      for (int j = lo; j < hi; ++j) {
        double s = 0;
        for (int e = 0; e < E; ++e) s += double(dot[e]) * double(v[(size_t(j) * H + h) * E + e]);
        dp[size_t(j - lo)] = s;
        dsum += p[size_t(j - lo)] * s;
      }
      for (int j = lo; j < hi; ++j) {
        const double pj = p[size_t(j - lo)], ds = pj * (dp[size_t(j - lo)] - dsum) * scale;
        for (int e = 0; e < E; ++e) {
          const size_t kj = (size_t(j) * H + h) * E + e, qt = (size_t(t) * H + h) * E + e;
          gq[qt] += ds * double(k[kj]);
          gk[kj] += ds * double(q[qt]);
          gv[kj] += pj * double(dot[e]);
        }
      }
    }
  for (size_t i = 0; i < gq.size(); ++i) dq[i] = F(gq[i]);
  for (size_t i = 0; i < gk.size(); ++i) {
    dk[i] = F(gk[i]);
    dv[i] = F(gv[i]);
  }
}

template void attention_fwd<float>(float*, float*, const float*, const float*, const float*, int, int, int64_t,
                                   int64_t, int, int, int);
template void attention_fwd<double>(double*, double*, const double*, const double*, const double*, int, int, int64_t,
                                    int64_t, int, int, int);
template void attention_bwd<float>(float*, float*, float*, const float*, const float*, const float*, const float*,
                                   const float*, int, int, int64_t, int64_t, int, int, int);
template void attention_bwd<double>(double*, double*, double*, const double*, const double*, const double*,
                                    const double*, const double*, int, int, int64_t, int64_t, int, int, int);

}  // namespace ttt::ref
