// Device launchers: one per kernel of cl/*.cl, named like their CPU twins in
// lib/reference/ops.hpp. They enqueue and return without waiting. Matrices are
// row-major float32; a Mat is (buffer, element offset, leading dimension). A
// weight a kernel reads directly may be stored in 16 bits (its DType, from the
// parameter table); the kernel widens it as it reads and accumulates in float.
#pragma once

#include "host/buffer.hpp"
#include "host/kernel.hpp"
#include "ttt/safetensors.hpp"  // DType

#include <cstdint>
#include <functional>
#include <vector>

namespace ttt::ops {

using host::Buffer;
using host::Context;
using ttt::DType;

// Build options of a family that reads weights stored as `t` ("", "-DWEIGHT_F16", "-DWEIGHT_BF16").
const char* weight_option(DType t);
// Build options of the attention families for keys and values stored as `t` ("" for f32, "-DKV_F16");
// throws for a type the rings cannot hold (bf16).
const char* kv_option(DType t);
// Bytes of one element stored as t.
inline size_t stored_size(DType t) { return t == DType::F32 ? 4 : 2; }

struct Mat {
  Buffer* buf = nullptr;
  int off = 0;
  int ld = 0;
};
inline Mat mat(Buffer& b, int ld, int off = 0) { return {&b, off, ld}; }

// out (T, D) = wte[ids[t]], wte stored as wt.
void embedding_fwd(Context& ctx, Buffer& out, const Buffer& ids, const Buffer& wte, int T, int D,
                   DType wt = DType::F32);
// dwte (V, D) += dx (T, D) scattered by ids; rows of unused ids are left as they are.
void embedding_bwd(Context& ctx, Buffer& dwte, const Buffer& dx, const Buffer& ids, int T, int D);

// Rows (t, h), t < T, h < H, of length N: out = [res +] x * rstd * g; rstd (T*H).
// res == nullptr: no residual. normalize == false: the identity (rstd = 1).
void rmsnorm_fwd(Context& ctx, Mat out, Buffer& rstd, Mat x, const Buffer& g, const Mat* res, int T, int H, int N,
                 float eps, bool normalize = true);
void rmsnorm_bwd(Context& ctx, Mat dx, bool accumulate, Mat dy, Mat x, const Buffer& g, const Buffer& rstd, int T,
                 int H, int N, bool normalize = true);
// The gain's gradient dg (N) (+)= sum over rows of dy * x * rstd (x: the forward's input); 0 when !normalize.
void rmsnorm_wgrad(Context& ctx, Buffer& dg, bool accumulate, Mat dy, Mat x, const Buffer& rstd, int T, int H, int N,
                   bool normalize = true);
// Tangents for the device meta gradient (contiguous rows, see ref:: for each formula);
// normalize == false: the identity's tangents (yd = xd, dxd = dyd, no gain gradient).
void rmsnorm_jvp(Context& ctx, Buffer& yd, Buffer& xdot, const Buffer& x, const Buffer& xd, const Buffer& g,
                 const Buffer& rstd, int R, int N, bool normalize = true);
void rmsnorm_bwd_tangent(Context& ctx, Buffer& dxd, bool accumulate, const Buffer& dy, const Buffer& dyd,
                         const Buffer& x, const Buffer& xd, const Buffer& g, const Buffer& rstd, int R, int N,
                         bool normalize = true);
// Always accumulates into dgd.
void rmsnorm_wgrad_tangent(Context& ctx, Buffer& dgd, const Buffer& dy, const Buffer& dyd, const Buffer& x,
                           const Buffer& xd, const Buffer& rstd, const Buffer& xdot, int R, int N,
                           bool normalize = true);

// cos/sin table (T, E/2, 2) for positions pos0..pos0+T-1, computed in double.
std::vector<float> rope_table(int64_t pos0, int T, int E, double theta);
void rope_fwd(Context& ctx, Mat out, Mat x, const Buffer& cs, int T, int H, int E);
void rope_bwd(Context& ctx, Mat dx, Mat dy, const Buffer& cs, int T, int H, int E);

// Windowed attention of T queries at positions pos0.. against the ring kc/vc of C rows.
// kv: the storage type of kc/vc (f32 or f16); the kernels widen as they read.
struct AttnShape {
  int T, H, E, C, W;
  int64_t pos0;
  DType kv = DType::F32;
};
// T > 1: `automatic` is `sweeps` in the CPU forms (fixed-length, contiguous inner loops that
// LLVM vectorises inside PoCL's work-item loops), `flash` elsewhere (cl/attention_flash.cl:
// a tile of queries per work-group, several queries x head elements per work-item in
// registers, online softmax); `tiles` is one query per work-item with float4 dot products.
// Same numbers up to float rounding.
enum class ForwardKernel { automatic, tiles, sweeps, flash };
void attention_fwd(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc, const Buffer& vc,
                   const AttnShape& s, ForwardKernel kind = ForwardKernel::automatic);
// T = 1 (decode), which attention_fwd forwards here with `automatic`: per_item on a CPU (each
// work-item a run of keys for all heads), per_group elsewhere (a work-group per run and head).
enum class DecodeKernel { automatic, per_item, per_group };
void attention_decode(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc, const Buffer& vc,
                      const AttnShape& s, DecodeKernel kind);
// dq (T, D); dk, dv for the chunk's own keys (rows 0..T-1 of the Mats); dsum (T, H) is scratch.
// The backward's forms, chosen as the forward's (`automatic`: sweeps in the CPU forms, flash elsewhere).
enum class BackwardKernel { automatic, tiles, sweeps, flash };
void attention_bwd(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout, const Buffer& out,
                   const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc, const AttnShape& s,
                   BackwardKernel kind = BackwardKernel::automatic);

// Batched: S documents' segments of one mini-batch, segment s in rows s*R ..
// s*R + n_s - 1 of q/out/lse/dout (and of dk/dv), its queries at positions
// pos_s.., its ring in rows s*C .. s*C + C - 1 of kc/vc. seg holds {pos_s, n_s}
// per segment (2S int64). With S = 1 it computes what the plain kernels do.
struct AttnBatch {
  int S, R, H, E, C, W;
  DType kv = DType::F32;  // as AttnShape::kv
};
void attention_fwd_batched(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc,
                           const Buffer& vc, const Buffer& seg, const AttnBatch& b,
                           ForwardKernel kind = ForwardKernel::automatic);
void attention_bwd_batched(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout,
                           const Buffer& out, const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc,
                           const Buffer& seg, const AttnBatch& b, BackwardKernel kind = BackwardKernel::automatic);

// g (T, I) = silu(h[:, :I]) * h[:, I:]; and its backward into dh (T, 2I).
void swiglu_fwd(Context& ctx, Buffer& g, const Buffer& h, int T, int I);
void swiglu_bwd(Context& ctx, Buffer& dh, const Buffer& dg, const Buffer& h, int T, int I);
// Tangents for the device meta gradient (contiguous rows, see ref:: for each formula).
void swiglu_jvp(Context& ctx, Buffer& gd, const Buffer& h, const Buffer& hd, int T, int I);
void swiglu_bwd_tangent(Context& ctx, Buffer& dhd, const Buffer& dg, const Buffer& dgd, const Buffer& h,
                        const Buffer& hd, int T, int I);

// Matrix-vector products of decoding (cl/matvec.cl): y (N) = x (K) @ A (K, N)
// and y (M) = A (M, K) @ x (K); A row-major with leading dimension lda. x and
// y are element offsets into their buffers; A is stored as at.
void matvec_cols(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N, int lda,
                 DType at = DType::F32);
// The two shapes matvec_cols chooses between by device type (CPU: serial; else: split); tests run both.
void matvec_cols_serial(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                        int lda, DType at = DType::F32);
void matvec_cols_split(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                       int lda, DType at = DType::F32);
void matvec_rows(Context& ctx, Buffer& y, const Buffer& A, const Buffer& x, size_t x_off, int M, int K, int lda,
                 DType at = DType::F32);

// Widening (cl/convert.cl): out (R, C), row stride ldo = in (R, C) stored as it,
// from element in_off with row stride ldi. For GEMMs that run in f32 only.
void convert_widen(Context& ctx, Buffer& out, int ldo, const Buffer& in, DType it, size_t in_off, int ldi, int R,
                   int C);
// Narrowing (cl/convert.cl) of float rows to f16, rounded to nearest even: out (R, C) from element
// out_off with row stride ldo = in (R, C) from element in_off with row stride ldi. Keys and values
// entering f16 rings.
void convert_narrow_f16(Context& ctx, Buffer& out, size_t out_off, int ldo, const Buffer& in, size_t in_off, int ldi,
                        int R, int C);

// Logits + log-softmax NLL in vocabulary tiles of at most `tile` columns, so
// that no more than (T, tile) logits exist at once. W is the output embedding:
// tied wte (V, D) or lm_head (D, V). With dh, also dh = d(mean NLL over
// non-BOS targets)/d(h) (inv_count = 1 / that count).
struct XentScratch {
  Buffer logits, m, s, tgt, U;  // (T, tile), (T) x3, (T, D)
  Buffer wide;                  // (tile, D): a tile of a 16-bit W widened, allocated at its first use
  int T = 0, tile = 0, D = 0;
  XentScratch() = default;
  XentScratch(Context& ctx, int T, int D, int tile);
};
// W stored as wt: each tile of a 16-bit W is widened into w.wide for its GEMMs.
// tiles (optional, f32 W only): the same W laid out for the logits GEMMs, tile
// by tile of w.tile rows its (D, nv) transpose with row stride nv at element
// v0 * D (Engine's head_tiles); the logits then read it as op(B) = B, the
// orientation CLBlast's kernel wants, and come out the same.
void xent(Context& ctx, XentScratch& w, Buffer& nll, Buffer* dh, const Buffer& h, const Buffer& W, bool tied,
          const Buffer& targets, int T, int D, int V, int bos, float inv_count, DType wt = DType::F32,
          const Buffer* tiles = nullptr);
// One tile of that layout on the host: out (D, nv) = rows [v0, v0 + nv) of a
// tied W (V, D) transposed, or columns [v0, v0 + nv) of lm_head (D, V).
void logits_tile_layout(float* out, const float* W, bool tied, int V, int D, int v0, int nv);
// After xent (its m and s): a second vocabulary sweep that forms each tile's
// logits gradient and from it dh (T, D) and the output embedding's gradient dW
// (tied: (V, D); lm_head: (D, V)), both overwritten. For training every weight;
// the test-time step needs only dh, which xent gives in one sweep.
void xent_bwd_weights(Context& ctx, XentScratch& w, Buffer& dh, Buffer& dW, const Buffer& h, const Buffer& W, bool tied,
                      const Buffer& targets, int T, int D, int V, int bos, float inv_count);
// After xent(w, ..., h, ...) (its m and s): when h moves along hd, the tangent of
// the logits gradient G = w_t (softmax - onehot), Gd = w_t p (zd - sum p zd) with
// zd = hd W^T, gives dhd (T, D) = Gd @ W (overwritten) and adds the tangent of
// the output embedding's gradient, Gd^T h + G^T hd (tied (V, D); lm_head (D, V)
// as its transpose), to dWd. Two vocabulary sweeps; zd (T, tile) and sigma (T) are scratch.
void xent_tangent(Context& ctx, XentScratch& w, Buffer& zd, Buffer& sigma, Buffer& dhd, Buffer& dWd, const Buffer& h,
                  const Buffer& hd, const Buffer& W, bool tied, const Buffer& targets, int T, int D, int V, int bos,
                  float inv_count);

// Vector kernels (cl/vector.cl) for the meta gradient's bookkeeping.
// Sum over the pairs of x . y (n floats each), in double from per-work-group float partials;
// partial needs dot_partials(pairs) floats. Waits for the result (a blocking read).
int dot_partials(int pairs);
double dot(Context& ctx, const std::vector<std::pair<const Buffer*, const Buffer*>>& xy, const std::vector<size_t>& n,
           Buffer& partial);
// y[y_off..] = a x[x_off..] + b y[y_off..] over n floats (b == 0: y is only written).
void axpby(Context& ctx, Buffer& y, size_t y_off, float a, const Buffer& x, size_t x_off, float b, size_t n);

// Global-norm clip + SGD over several parameter/gradient pairs, all on the
// device. stats (3 floats) = {norm, scale, finite}; partial needs
// sgd_partials(count) floats. global_norm alone measures any set of buffers
// (clip = 0 gives scale 1); sgd_update applies w -= lr * scale * g and skips
// the update when the norm was not finite.
struct SgdParam {
  Buffer* w;
  const Buffer* g;
  int n;
};
int sgd_partials(int count);
void global_norm(Context& ctx, const std::vector<std::pair<const Buffer*, int>>& bufs, Buffer& partial, Buffer& stats,
                 float clip);
void sgd_update(Context& ctx, const std::vector<SgdParam>& params, const Buffer& stats, float lr);
void sgd_step(Context& ctx, const std::vector<SgdParam>& params, Buffer& partial, Buffer& stats, float lr, float clip);

// What an engine's kernels are built for: the attention shape, the rings'
// type and the storage types of its weights.
struct KernelPlan {
  int head_dim = 0, heads = 0;
  DType kv = DType::F32;
  std::vector<DType> weights;  // each type once
};
// Builds (or loads from the program cache) every program the engine's
// sessions use, as one batch of numbered steps (the compile progress: "3/12
// attention"), and runs one tiny GEMM so that CLBlast compiles its kernels
// too: the first mini-batch then measures compute, not compilation.
void prepare_kernels(Context& ctx, const KernelPlan& plan);
// attention's part of it: a step per program (the CPU forms' probe, the flash
// forms, their f16-ring variants, decode's split and merge).
std::vector<std::function<void()>> attention_programs(Context& ctx, int E, int H, DType kv);

// Work-group size of kernel k's reductions over rows of n: a power of two
// <= 256 (4 in the CPU forms) and <= what k takes on its device (Kernel::fit).
size_t reduce_wg(const Context& ctx, const host::Kernel& k, int n);

}  // namespace ttt::ops
