// Launchers of cl/tangent.cl and the two-sweep tangent of the fused
// cross-entropy's logits gradient.
#include "lib/ops/ops.hpp"

#include "host/gemm.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::Trans;
using host::round_up;

void swiglu_jvp(Context& ctx, Buffer& gd, const Buffer& h, const Buffer& hd, int T, int I) {
  Kernel k(ctx, "tangent", "swiglu_jvp");
  k.args(gd, h, hd, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void swiglu_bwd_tangent(Context& ctx, Buffer& dhd, const Buffer& dg, const Buffer& dgd, const Buffer& h,
                        const Buffer& hd, int T, int I) {
  Kernel k(ctx, "tangent", "swiglu_bwd_tangent");
  k.args(dhd, dg, dgd, h, hd, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void rmsnorm_jvp(Context& ctx, Buffer& yd, Buffer& xdot, const Buffer& x, const Buffer& xd, const Buffer& g,
                 const Buffer& rstd, int R, int N, bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "tangent", "rmsnorm_jvp");
  const size_t wg = reduce_wg(ctx, N);
  k.args(yd, xdot, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_bwd_tangent(Context& ctx, Buffer& dxd, bool accumulate, const Buffer& dy, const Buffer& dyd,
                         const Buffer& x, const Buffer& xd, const Buffer& g, const Buffer& rstd, int R, int N,
                         bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "tangent", "rmsnorm_bwd_tangent");
  const size_t wg = reduce_wg(ctx, N);
  k.args(dxd, int32_t(accumulate), dy, dyd, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_wgrad_tangent(Context& ctx, Buffer& dgd, const Buffer& dy, const Buffer& dyd, const Buffer& x,
                           const Buffer& xd, const Buffer& rstd, const Buffer& xdot, int R, int N, bool normalize) {
  Kernel k(ctx, "tangent", "rmsnorm_wgrad_tangent");
  k.args(dgd, dy, dyd, x, xd, rstd, xdot, R, N, int32_t(normalize));
  k.launch({round_up(size_t(N), 64)}, {64});
}

namespace {

// out (T, nv) = x (T, D) @ W[v0:v0+nv]^T, W tied wte (V, D) or lm_head (D, V); out's row stride is ld.
void tile_product(Context& ctx, Buffer& out, int ld, const Buffer& x, const Buffer& W, bool tied, int T, int D, int V,
                  int v0, int nv, const char* label) {
  if (tied)
    host::gemm(ctx, Trans::N, Trans::T, T, nv, D, 1.f, x, 0, D, W, size_t(v0) * D, D, 0.f, out, 0, ld, label);
  else
    host::gemm(ctx, Trans::N, Trans::N, T, nv, D, 1.f, x, 0, D, W, v0, V, 0.f, out, 0, ld, label);
}

}  // namespace

void xent_tangent(Context& ctx, XentScratch& w, Buffer& zd, Buffer& sigma, Buffer& dhd, Buffer& dWd, const Buffer& h,
                  const Buffer& hd, const Buffer& W, bool tied, const Buffer& targets, int T, int D, int V, int bos,
                  float inv_count) {
  if (T == 0) return;
  sigma.zero(size_t(T) * sizeof(float));
  const size_t wg = reduce_wg(ctx, w.tile);
  Kernel sig(ctx, "tangent", "xent_sigma_tile");
  for (int v0 = 0; v0 < V; v0 += w.tile) {  // sigma_t = sum_v p zd
    const int nv = std::min(w.tile, V - v0);
    tile_product(ctx, w.logits, w.tile, h, W, tied, T, D, V, v0, nv, "gemm_logits");
    tile_product(ctx, zd, w.tile, hd, W, tied, T, D, V, v0, nv, "gemm_logits_tangent");
    sig.args(sigma, w.logits, zd, w.tile, nv, w.m, w.s, Local{wg * sizeof(float)});
    sig.launch({size_t(T) * wg}, {wg});
  }
  Kernel tan(ctx, "tangent", "xent_tangent_tile");
  for (int v0 = 0; v0 < V; v0 += w.tile) {
    const int nv = std::min(w.tile, V - v0);
    tile_product(ctx, w.logits, w.tile, h, W, tied, T, D, V, v0, nv, "gemm_logits");
    tile_product(ctx, zd, w.tile, hd, W, tied, T, D, V, v0, nv, "gemm_logits_tangent");
    tan.args(w.logits, zd, w.tile, nv, v0, w.m, w.s, sigma, targets, bos, inv_count);
    tan.launch({round_up(size_t(nv), 64), size_t(T)}, {64, 1});
    const float beta = v0 == 0 ? 0.f : 1.f;
    if (tied) {
      // dhd += Gd @ wte[v0:v0+nv];  dWd[v0:v0+nv] += Gd^T h + G^T hd
      host::gemm(ctx, Trans::N, Trans::N, T, D, nv, 1.f, zd, 0, w.tile, W, size_t(v0) * D, D, beta, dhd, 0, D,
                 "gemm_xent_bwd_tangent");
      host::gemm(ctx, Trans::T, Trans::N, nv, D, T, 1.f, zd, 0, w.tile, h, 0, D, 1.f, dWd, size_t(v0) * D, D,
                 "gemm_dhead_tangent");
      host::gemm(ctx, Trans::T, Trans::N, nv, D, T, 1.f, w.logits, 0, w.tile, hd, 0, D, 1.f, dWd, size_t(v0) * D, D,
                 "gemm_dhead_tangent");
    } else {
      host::gemm(ctx, Trans::N, Trans::T, T, D, nv, 1.f, zd, 0, w.tile, W, v0, V, beta, dhd, 0, D,
                 "gemm_xent_bwd_tangent");
      host::gemm(ctx, Trans::T, Trans::N, D, nv, T, 1.f, h, 0, D, zd, 0, w.tile, 1.f, dWd, v0, V,
                 "gemm_dhead_tangent");
      host::gemm(ctx, Trans::T, Trans::N, D, nv, T, 1.f, hd, 0, D, w.logits, 0, w.tile, 1.f, dWd, v0, V,
                 "gemm_dhead_tangent");
    }
  }
}

namespace {
constexpr int kDotGroups = 64;
}

int dot_partials(int pairs) { return pairs * kDotGroups; }

double dot(Context& ctx, const std::vector<std::pair<const Buffer*, const Buffer*>>& xy, const std::vector<size_t>& n,
           Buffer& partial) {
  if (xy.size() != n.size()) throw Error(fmt::format("ops::dot: {} pairs but {} sizes", xy.size(), n.size()));
  Kernel k(ctx, "tangent", "dot_partial");
  const size_t wg = reduce_wg(ctx, 1 << 20);
  for (size_t p = 0; p < xy.size(); ++p) {
    k.args(partial, int32_t(p * kDotGroups), *xy[p].first, *xy[p].second, int64_t(n[p]), Local{wg * sizeof(float)});
    k.launch({kDotGroups * wg}, {wg});
  }
  std::vector<float> parts(xy.size() * kDotGroups);
  partial.read(parts.data(), parts.size() * sizeof(float), 0, true);
  double sum = 0;
  for (float v : parts) sum += double(v);
  return sum;
}

void axpby(Context& ctx, Buffer& y, size_t y_off, float a, const Buffer& x, size_t x_off, float b, size_t n) {
  if (n == 0) return;
  Kernel k(ctx, "tangent", "axpby");
  k.args(y, int64_t(y_off), a, x, int64_t(x_off), b, int64_t(n));
  k.launch({round_up(n, 256)}, {256});
}

}  // namespace ttt::ops
