// Plain C++ twin of every device kernel (cl/*.cl, lib/ops/*). Contiguous
// row-major arrays, shapes in the comments; instantiated for float and double
// (double for finite-difference checks). Sums accumulate in double. A family's
// tangents (forward-over-reverse, for the meta gradient) follow its backward:
// the derivative of a kernel's output when its inputs move along the given
// tangents (suffix d).
#pragma once

#include "ttt/safetensors.hpp"  // DType and the scalar conversions

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ttt::ref {

// out (n) = in (n) stored as t (F16 or BF16), widened exactly (cl/convert.cl).
void widen(float* out, const uint16_t* in, size_t n, DType t);
// in rounded to t (nearest even), as the parameter table stores a 16-bit weight.
std::vector<uint16_t> narrow(const std::vector<float>& in, DType t);
// out (R, C), row stride ldo = in (R, C), row stride ldi, each rounded to the
// nearest f16 (ties to even): the twin of convert_narrow_f16 (cl/convert.cl).
void narrow_rows_f16(uint16_t* out, size_t ldo, const float* in, size_t ldi, size_t R, size_t C);

// out (T, D) = wte[ids[t]] with wte (V, D).
template <typename F>
void embedding_fwd(F* out, const int32_t* ids, const F* wte, int T, int D);
// dwte (V, D) += dx (T, D) scattered by ids.
template <typename F>
void embedding_bwd(F* dwte, const F* dx, const int32_t* ids, int T, int D);

// R rows of length N: out = res + x * rstd * g, rstd = 1/sqrt(mean(x^2) + eps).
// res may be null (no residual); rstd (R) is saved for the backward.
template <typename F>
void rmsnorm_fwd(F* out, F* rstd, const F* x, const F* g, const F* res, int R, int N, F eps);
// dx (R, N) = (accumulate ? dx : 0) + d(x * rstd * g)/dx applied to dy.
template <typename F>
void rmsnorm_bwd(F* dx, const F* dy, const F* x, const F* g, const F* rstd, int R, int N, bool accumulate);
// dg (N) = (accumulate ? dg : 0) + sum over the R rows of dy * x * rstd: the gain's gradient.
template <typename F>
void rmsnorm_wgrad(F* dg, const F* dy, const F* x, const F* rstd, int R, int N, bool accumulate);
// Tangents, contiguous rows. yd (R, N): of x * rstd * g along xd (rstd from
// rmsnorm_fwd); xdot (R) = x . xd per row.
template <typename F>
void rmsnorm_jvp(F* yd, F* xdot, const F* x, const F* xd, const F* g, const F* rstd, int R, int N);
// dxd (R, N) (+)= of rmsnorm_bwd(dx, dy, x, g, rstd) along (dyd, xd), g fixed.
template <typename F>
void rmsnorm_bwd_tangent(F* dxd, const F* dy, const F* dyd, const F* x, const F* xd, const F* g, const F* rstd, int R,
                         int N, bool accumulate);
// dgd (N) += of rmsnorm_wgrad(dg, dy, x, rstd) along (dyd, xd); xdot from rmsnorm_jvp.
template <typename F>
void rmsnorm_wgrad_tangent(F* dgd, const F* dy, const F* dyd, const F* x, const F* xd, const F* rstd, const F* xdot,
                           int R, int N);

// Interleaved RoPE on x (T, H, E) in place: pair (2j, 2j+1) of the token at
// position pos0 + t rotates by (pos0 + t) * theta^(-2j/E). rope_bwd rotates back
// (the transpose of the rotation), which is the gradient.
template <typename F>
void rope_fwd(F* x, int64_t pos0, int T, int H, int E, double theta);
template <typename F>
void rope_bwd(F* dx, int64_t pos0, int T, int H, int E, double theta);

// Sliding-window causal attention. q, out (T, H*E) at positions pos0..pos0+T-1;
// k, v (Tk, H*E) at positions kpos0..kpos0+Tk-1. Query at position p sees keys
// p-W+1..p. Scores scaled by 1/sqrt(E). lse (T, H) is the log-sum-exp of the scores.
template <typename F>
void attention_fwd(F* out, F* lse, const F* q, const F* k, const F* v, int T, int Tk, int64_t pos0, int64_t kpos0,
                   int H, int E, int W);
// Gradients for every query (dq) and every key/value (dk, dv), all overwritten.
template <typename F>
void attention_bwd(F* dq, F* dk, F* dv, const F* dout, const F* q, const F* k, const F* v, const F* lse, int T,
                   int Tk, int64_t pos0, int64_t kpos0, int H, int E, int W);

// SwiGLU gate: h (T, 2I) = [a | b] (a = x W1, b = x W3), g (T, I) = silu(a) * b.
template <typename F>
void swiglu_fwd(F* g, const F* h, int T, int I);
template <typename F>
void swiglu_bwd(F* dh, const F* dg, const F* h, int T, int I);
// Tangents, contiguous rows. gd (T, I): of swiglu_fwd along hd (T, 2I).
template <typename F>
void swiglu_jvp(F* gd, const F* h, const F* hd, int T, int I);
// dhd (T, 2I): of swiglu_bwd(dh, dg, h) along (dgd, hd).
template <typename F>
void swiglu_bwd_tangent(F* dhd, const F* dg, const F* dgd, const F* h, const F* hd, int T, int I);

// Cross-entropy over logits (T, V): nll[t] = logsumexp(logits[t]) - logits[t][targets[t]].
template <typename F>
void xent_fwd(F* nll, const F* logits, const int32_t* targets, int T, int V);
// dlogits (T, V) = weight[t] * (softmax(logits[t]) - onehot(targets[t])).
template <typename F>
void xent_bwd(F* dlogits, const F* logits, const int32_t* targets, const F* weight, int T, int V);
// dzd (T, V): of xent_bwd(dlogits, logits, targets, weight) along the logits' tangent zd.
template <typename F>
void xent_bwd_tangent(F* dzd, const F* logits, const F* zd, const F* weight, int T, int V);

// Global L2 norm of several gradient arrays, and the clipped SGD step
// w -= lr * scale * g with scale = clip / norm when clip > 0 and norm >= clip.
template <typename F>
F global_norm(const F* const* grads, const size_t* sizes, int count);
template <typename F>
F clip_scale(F norm, F clip);
template <typename F>
void sgd_update(F* w, const F* g, size_t n, F lr, F scale);

// y[i] = a x[i] + b y[i], i < n (b == 0: y is only written, a NaN there ignored).
template <typename F>
void axpby(F* y, F a, const F* x, F b, size_t n);
// x . y over n elements, summed in double.
template <typename F>
double dot(const F* x, const F* y, size_t n);

// y (M, N) = (accumulate ? y : 0) + op(A) @ op(B); the CPU twin of host::gemm.
// op(A) is (M, K), op(B) is (K, N); ta/tb select the transposes of row-major A, B.
template <typename F>
void matmul(F* y, const F* A, const F* B, int M, int N, int K, bool ta, bool tb, bool accumulate);

}  // namespace ttt::ref
