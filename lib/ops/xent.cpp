// The vocabulary sweep of the fused cross-entropy: per tile one logits GEMM,
// one xent_fwd_tile and (for the backward) one U-accumulating GEMM; then the
// final NLL and gradient kernels. See cl/xent.cl for the math. Also the
// weights' sweep (xent_bwd_weights) and the logits gradient's tangent
// (xent_tangent).
#include "lib/ops/ops.hpp"

#include "host/gemm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::Trans;
using host::round_up;

namespace {

// out (T, nv), row stride ld, = x (T, D) @ W[v0:v0+nv]^T, W the output embedding (tied wte (V, D) or lm_head (D, V)).
void tile_product(Context& ctx, Buffer& out, int ld, const Buffer& x, const Buffer& W, bool tied, int T, int D, int V,
                  int v0, int nv, const char* label) {
  if (tied)
    host::gemm(ctx, Trans::N, Trans::T, T, nv, D, 1.f, x, 0, D, W, size_t(v0) * D, D, 0.f, out, 0, ld, label);
  else
    host::gemm(ctx, Trans::N, Trans::N, T, nv, D, 1.f, x, 0, D, W, v0, V, 0.f, out, 0, ld, label);
}

// w.logits (T, nv) = h (T, D) @ W[v0:v0+nv]^T.
void logits_tile(Context& ctx, XentScratch& w, const Buffer& h, const Buffer& W, bool tied, int T, int D, int V, int v0,
                 int nv) {
  tile_product(ctx, w.logits, w.tile, h, W, tied, T, D, V, v0, nv, "gemm_logits");
}

// A tile of a 16-bit output embedding widened into w.wide, laid out as the
// tile of an f32 W would be read by the GEMMs: tied (nv, D) rows of wte, ld D;
// untied (D, nv) columns of lm_head, ld nv. Returns {the widened tile's buffer,
// element offset, row stride} for the GEMMs (W itself when it is f32).
struct Tile {
  const Buffer* buf;
  size_t off;
  size_t ld;
};
Tile tile_of(Context& ctx, XentScratch& w, const Buffer& W, DType wt, bool tied, int D, int V, int v0, int nv) {
  if (wt == DType::F32) return tied ? Tile{&W, size_t(v0) * D, size_t(D)} : Tile{&W, size_t(v0), size_t(V)};
  if (!w.wide) w.wide = Buffer(ctx, size_t(w.tile) * w.D * sizeof(float), "xent widened head tile");
  if (tied) {
    convert_widen(ctx, w.wide, D, W, wt, size_t(v0) * D, D, nv, D);
    return {&w.wide, 0, size_t(D)};
  }
  convert_widen(ctx, w.wide, nv, W, wt, size_t(v0), V, D, nv);
  return {&w.wide, 0, size_t(nv)};
}

}  // namespace

XentScratch::XentScratch(Context& ctx, int T_, int D_, int tile_)
    : logits(ctx, size_t(T_) * tile_ * sizeof(float), "xent logits tile"),
      m(ctx, size_t(T_) * sizeof(float), "xent max"),
      s(ctx, size_t(T_) * sizeof(float), "xent sum"),
      tgt(ctx, size_t(T_) * sizeof(float), "xent target logit"),
      U(ctx, size_t(T_) * D_ * sizeof(float), "xent U"),
      T(T_),
      tile(tile_),
      D(D_) {}

void xent(Context& ctx, XentScratch& w, Buffer& nll, Buffer* dh, const Buffer& h, const Buffer& W, bool tied,
          const Buffer& targets, int T, int D, int V, int bos, float inv_count, DType wt, const Buffer* tiles) {
  if (T == 0) return;
  if (tiles && (wt != DType::F32 || tiles->bytes() < size_t(V) * D * sizeof(float)))
    throw Error(fmt::format("xent: logits tiles of {} bytes for a {} output embedding of {}x{}", tiles->bytes(),
                            dtype_name(wt), V, D));
  // m = -inf, s = 0, U = 0.
  const float neg_inf = -std::numeric_limits<float>::infinity();
  w.m.fill(neg_inf, size_t(T));
  w.s.zero(size_t(T) * sizeof(float));
  if (dh) w.U.zero(size_t(T) * D * sizeof(float));
  Kernel tile_k(ctx, "xent", "xent_fwd_tile");
  const size_t wg = reduce_wg(ctx, tile_k, w.tile);
  for (int v0 = 0; v0 < V; v0 += w.tile) {
    const int nv = std::min(w.tile, V - v0);
    const Tile Wt = tile_of(ctx, w, W, wt, tied, D, V, v0, nv);
    // w.logits (T, nv) = h (T, D) @ W[v0:v0+nv]^T
    if (tiles)  // the tile's (D, nv) transpose, laid out at upload
      host::gemm(ctx, Trans::N, Trans::N, T, nv, D, 1.f, h, 0, D, *tiles, size_t(v0) * D, size_t(nv), 0.f, w.logits,
                 0, w.tile, "gemm_logits");
    else if (tied)
      host::gemm(ctx, Trans::N, Trans::T, T, nv, D, 1.f, h, 0, D, *Wt.buf, Wt.off, Wt.ld, 0.f, w.logits, 0, w.tile,
                 "gemm_logits");
    else
      host::gemm(ctx, Trans::N, Trans::N, T, nv, D, 1.f, h, 0, D, *Wt.buf, Wt.off, Wt.ld, 0.f, w.logits, 0, w.tile,
                 "gemm_logits");
    tile_k.args(w.logits, w.tile, nv, v0, w.m, w.s, w.tgt, targets, int32_t(dh != nullptr), w.U, D,
                Local{wg * sizeof(float)});
    tile_k.launch({size_t(T) * wg}, {wg});
    if (dh) {
      // U (T, D) += p (T, nv) @ W[v0:v0+nv]
      if (tied)
        host::gemm(ctx, Trans::N, Trans::N, T, D, nv, 1.f, w.logits, 0, w.tile, *Wt.buf, Wt.off, Wt.ld, 1.f, w.U, 0,
                   D, "gemm_xent_bwd");
      else
        host::gemm(ctx, Trans::N, Trans::T, T, D, nv, 1.f, w.logits, 0, w.tile, *Wt.buf, Wt.off, Wt.ld, 1.f, w.U, 0,
                   D, "gemm_xent_bwd");
    }
  }
  Kernel fin(ctx, "xent", "xent_fwd_final");
  fin.args(nll, w.m, w.s, w.tgt, T);
  fin.launch({round_up(size_t(T), fin.fit(64))}, {fin.fit(64)});
  if (dh) {
    Kernel bwd(ctx, "xent", "xent_bwd_final", weight_option(wt));  // reads W's target rows as stored
    const int64_t vstride = tied ? D : 1, dstride = tied ? 1 : V;
    bwd.args(*dh, w.U, w.s, targets, W, vstride, dstride, T, D, bos, inv_count);
    bwd.launch({round_up(size_t(D), bwd.fit(64)), size_t(T)}, {bwd.fit(64), 1});
  }
}

void logits_tile_layout(float* out, const float* W, bool tied, int V, int D, int v0, int nv) {
  for (size_t d = 0; d < size_t(D); ++d)
    for (size_t j = 0; j < size_t(nv); ++j)
      out[d * nv + j] = tied ? W[(size_t(v0) + j) * D + d] : W[d * V + size_t(v0) + j];
}

void xent_bwd_weights(Context& ctx, XentScratch& w, Buffer& dh, Buffer& dW, const Buffer& h, const Buffer& W, bool tied,
                      const Buffer& targets, int T, int D, int V, int bos, float inv_count) {
  if (T == 0) return;
  Kernel grad(ctx, "xent", "xent_grad_tile");
  for (int v0 = 0; v0 < V; v0 += w.tile) {
    const int nv = std::min(w.tile, V - v0);
    const float beta = v0 == 0 ? 0.f : 1.f;  // dh accumulates over the tiles
    logits_tile(ctx, w, h, W, tied, T, D, V, v0, nv);
    grad.args(w.logits, w.tile, nv, v0, w.m, w.s, targets, bos, inv_count);
    grad.launch({round_up(size_t(nv), grad.fit(64)), size_t(T)}, {grad.fit(64), 1});
    if (tied) {
      // dh += G (T, nv) @ wte[v0:v0+nv];  dwte[v0:v0+nv] (nv, D) = G^T @ h
      host::gemm(ctx, Trans::N, Trans::N, T, D, nv, 1.f, w.logits, 0, w.tile, W, size_t(v0) * D, D, beta, dh, 0, D,
                 "gemm_xent_bwd");
      host::gemm(ctx, Trans::T, Trans::N, nv, D, T, 1.f, w.logits, 0, w.tile, h, 0, D, 0.f, dW, size_t(v0) * D, D,
                 "gemm_dhead");
    } else {
      // dh += G @ lm_head[:, v0:v0+nv]^T;  dlm_head[:, v0:v0+nv] (D, nv) = h^T @ G
      host::gemm(ctx, Trans::N, Trans::T, T, D, nv, 1.f, w.logits, 0, w.tile, W, v0, V, beta, dh, 0, D,
                 "gemm_xent_bwd");
      host::gemm(ctx, Trans::T, Trans::N, D, nv, T, 1.f, h, 0, D, w.logits, 0, w.tile, 0.f, dW, v0, V, "gemm_dhead");
    }
  }
}

void xent_tangent(Context& ctx, XentScratch& w, Buffer& zd, Buffer& sigma, Buffer& dhd, Buffer& dWd, const Buffer& h,
                  const Buffer& hd, const Buffer& W, bool tied, const Buffer& targets, int T, int D, int V, int bos,
                  float inv_count) {
  if (T == 0) return;
  sigma.zero(size_t(T) * sizeof(float));
  Kernel sig(ctx, "xent", "xent_sigma_tile");
  const size_t wg = reduce_wg(ctx, sig, w.tile);
  for (int v0 = 0; v0 < V; v0 += w.tile) {  // sigma_t = sum_v p zd
    const int nv = std::min(w.tile, V - v0);
    logits_tile(ctx, w, h, W, tied, T, D, V, v0, nv);
    tile_product(ctx, zd, w.tile, hd, W, tied, T, D, V, v0, nv, "gemm_logits_tangent");
    sig.args(sigma, w.logits, zd, w.tile, nv, w.m, w.s, Local{wg * sizeof(float)});
    sig.launch({size_t(T) * wg}, {wg});
  }
  Kernel tan(ctx, "xent", "xent_tangent_tile");
  for (int v0 = 0; v0 < V; v0 += w.tile) {
    const int nv = std::min(w.tile, V - v0);
    logits_tile(ctx, w, h, W, tied, T, D, V, v0, nv);
    tile_product(ctx, zd, w.tile, hd, W, tied, T, D, V, v0, nv, "gemm_logits_tangent");
    tan.args(w.logits, zd, w.tile, nv, v0, w.m, w.s, sigma, targets, bos, inv_count);
    tan.launch({round_up(size_t(nv), tan.fit(64)), size_t(T)}, {tan.fit(64), 1});
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

}  // namespace ttt::ops
