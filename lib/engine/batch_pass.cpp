// Forward and backward of one batched mini-batch (N slots * B rows), the steps
// of forward.cpp and backward.cpp over all rows at once: shared weights as one
// GEMM over N * B rows, each slot's prime MLP as one matrix of a
// strided-batched GEMM, attention per slot against its own ring (the batched
// kernels). Rows are independent everywhere else, so padding rows of a slot
// with fewer than B tokens only ever touch themselves.
#include "lib/engine/batch.hpp"

#include "host/gemm.hpp"

namespace ttt {

using host::Trans;
using ops::mat;

ops::AttnBatch BatchSession::Impl::attn_shape() const {
  return {N, B, e.c.num_attention_heads, e.c.head_dim(), e.C, e.c.sliding_window_size};
}

void BatchSession::Impl::batched(Trans ta, Trans tb, size_t M, size_t Nn, size_t K, const Buffer& A, size_t lda,
                                 size_t as, const Buffer& Bm, size_t ldb, size_t bs, Buffer& C, size_t ldc, size_t cs,
                                 const char* label) {
  host::gemm_strided_batched(e.ctx, ta, tb, M, Nn, K, 1.f, A, 0, lda, as, Bm, 0, ldb, bs, 0.f, C, 0, ldc, cs,
                             size_t(N), label);
}

// prime: the slot's own weights (a strided-batched GEMM) when sessions train;
// without training every slot holds the loaded weights, so one GEMM serves all.
void BatchSession::Impl::mlp_forward(const MlpIdx& wi, bool prime, int pre, int post, MlpActs& a, Buffer& xin,
                                     Buffer& xout) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const int D = c.hidden_size, I = c.intermediate_size;
  const size_t b = size_t(B);
  ops::rmsnorm_fwd(ctx, mat(a.hn, D), a.rs_pre, mat(xin, D), wt(pre), nullptr, T, 1, D, c.rms_norm_eps, c.pre_norm);
  if (prime && trains())
    batched(Trans::N, Trans::N, b, 2 * I, D, a.hn, D, b * D, live[size_t(wi.w13)], 2 * I, stride[size_t(wi.w13)],
            a.h13, 2 * I, b * 2 * I, "gemm_w13_batched");
  else
    host::gemm(ctx, Trans::N, Trans::N, T, 2 * I, D, 1.f, a.hn, 0, D, wt(wi.w13), 0, 2 * I, 0.f, a.h13, 0, 2 * I,
               "gemm_w13");
  ops::swiglu_fwd(ctx, a.g, a.h13, T, I);
  if (prime && trains())
    batched(Trans::N, Trans::N, b, D, I, a.g, I, b * I, live[size_t(wi.w2)], D, stride[size_t(wi.w2)], a.m, D, b * D,
            "gemm_w2_batched");
  else
    host::gemm(ctx, Trans::N, Trans::N, T, D, I, 1.f, a.g, 0, I, wt(wi.w2), 0, D, 0.f, a.m, 0, D, "gemm_w2");
  const ops::Mat res = mat(xin, D);
  ops::rmsnorm_fwd(ctx, mat(xout, D), a.rs_post, mat(a.m, D), wt(post), &res, T, 1, D, c.rms_norm_eps, c.post_norm);
}

void BatchSession::Impl::block_forward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& x3) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim(), C = e.C;
  const float eps = c.rms_norm_eps;
  ops::rmsnorm_fwd(ctx, mat(a.hn1, D), a.rs1, mat(x0, D), wt(b.seq_norm), nullptr, T, 1, D, eps, c.pre_norm);
  host::gemm(ctx, Trans::N, Trans::N, T, 3 * D, D, 1.f, a.hn1, 0, D, wt(b.wqkv), 0, 3 * D, 0.f, a.qkv, 0, 3 * D,
             "gemm_qkv");
  ops::rmsnorm_fwd(ctx, mat(a.qr, D), a.rq, mat(a.qkv, 3 * D, 0), wt(b.q_norm), nullptr, T, H, E, eps, c.qk_norm);
  ops::rmsnorm_fwd(ctx, mat(a.kr, D), a.rk, mat(a.qkv, 3 * D, D), wt(b.k_norm), nullptr, T, H, E, eps, c.qk_norm);
  // The cos/sin table has a row per chunk row: each slot's rows carry its own positions.
  ops::rope_fwd(ctx, mat(a.qr, D), mat(a.qr, D), cs, T, H, E);
  ops::rope_fwd(ctx, mat(a.kr, D), mat(a.kr, D), cs, T, H, E);
  // Each slot's keys and values enter its own ring at rows (pos + t) % C.
  Buffer &kring = kc[size_t(l)], &vring = vc[size_t(l)];
  const size_t row_bytes = size_t(D) * sizeof(float);
  for (int s = 0; s < N; ++s) {
    const int n = slot[size_t(s)].n;
    const size_t r0 = size_t(s) * size_t(B), ring0 = size_t(s) * size_t(C);
    for (int t = 0; t < n;) {
      const int row = int((slot[size_t(s)].pos + t) % C), run = std::min(n - t, C - row);
      kring.copy_from(a.kr, size_t(run) * row_bytes, (r0 + size_t(t)) * row_bytes, (ring0 + size_t(row)) * row_bytes);
      host::copy_rows(ctx, a.qkv, ((r0 + size_t(t)) * 3 * D + 2 * D) * sizeof(float), 3 * row_bytes, vring,
                      (ring0 + size_t(row)) * row_bytes, row_bytes, row_bytes, size_t(run));
      t += run;
    }
  }
  ops::attention_fwd_batched(ctx, a.o, a.lse, a.qr, kring, vring, seg, attn_shape());
  host::gemm(ctx, Trans::N, Trans::N, T, D, D, 1.f, a.o, 0, D, wt(b.wo), 0, D, 0.f, a.a, 0, D, "gemm_wo");
  const ops::Mat res = mat(x0, D);
  ops::rmsnorm_fwd(ctx, mat(x1, D), a.rs2, mat(a.a, D), wt(b.seq_post_norm), &res, T, 1, D, eps, c.post_norm);
  if (b.has_prime)
    mlp_forward(b.prime, true, b.prime_norm, b.prime_post_norm, a.prime, x1, x2);
  else if (&x2 != &x1)
    x2.copy_from(x1, size_t(T) * row_bytes);
  mlp_forward(b.mlp, false, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, x3);
}

Buffer& BatchSession::Impl::forward_blocks(bool keep) {
  const int L = e.c.num_hidden_layers, first = e.c.first_prime_block();
  Residual& x = stream;
  ops::embedding_fwd(e.ctx, x.shared(), ids, wt(e.wte), T, e.c.hidden_size);
  for (int l = 0; l < L; ++l) {
    if (keep && l >= first) {
      const size_t j = size_t(l - first);
      block_forward(l, suffix[j], x.in(j), x.after_attn(j), x.after_prime(j), x.out(j));
    } else {
      block_forward(l, shared, x.shared(), x.shared(), x.shared(), x.shared());
    }
  }
  return keep ? x.last() : x.shared();
}

void BatchSession::Impl::mlp_backward(const MlpIdx& wi, bool prime, int pre, int post, MlpActs& a, Buffer& xin,
                                      Buffer& dxio, bool need_dx) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const int D = c.hidden_size, I = c.intermediate_size;
  const size_t b = size_t(B);
  ops::rmsnorm_bwd(ctx, mat(dm, D), false, mat(dxio, D), mat(a.m, D), wt(post), a.rs_post, T, 1, D, c.post_norm);
  if (prime) {
    const size_t w2 = size_t(wi.w2), w13 = size_t(wi.w13);
    // dW2_s (I, D) = g_s^T dm_s
    batched(Trans::T, Trans::N, I, D, b, a.g, I, b * I, dm, D, b * D, grad[w2], D, stride[w2], "gemm_dw2_batched");
    batched(Trans::N, Trans::T, b, I, D, dm, D, b * D, live[w2], D, stride[w2], dg, I, b * I, "gemm_dg_batched");
    ops::swiglu_bwd(ctx, dh13, dg, a.h13, T, I);
    // dW13_s (D, 2I) = hn_s^T dh13_s
    batched(Trans::T, Trans::N, D, 2 * I, b, a.hn, D, b * D, dh13, 2 * I, b * 2 * I, grad[w13], 2 * I, stride[w13],
            "gemm_dw13_batched");
    if (!need_dx) return;
    batched(Trans::N, Trans::T, b, D, 2 * I, dh13, 2 * I, b * 2 * I, live[w13], 2 * I, stride[w13], dhn, D, b * D,
            "gemm_dhn_batched");
  } else {
    host::gemm(ctx, Trans::N, Trans::T, T, I, D, 1.f, dm, 0, D, wt(wi.w2), 0, D, 0.f, dg, 0, I, "gemm_dg");
    ops::swiglu_bwd(ctx, dh13, dg, a.h13, T, I);
    host::gemm(ctx, Trans::N, Trans::T, T, D, 2 * I, 1.f, dh13, 0, 2 * I, wt(wi.w13), 0, 2 * I, 0.f, dhn, 0, D,
               "gemm_dhn");
  }
  ops::rmsnorm_bwd(ctx, mat(dxio, D), true, mat(dhn, D), mat(xin, D), wt(pre), a.rs_pre, T, 1, D, c.pre_norm);
}

void BatchSession::Impl::block_backward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& d,
                                        bool first) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
  mlp_backward(b.mlp, false, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, d, true);
  mlp_backward(b.prime, true, b.prime_norm, b.prime_post_norm, a.prime, x1, d, !first);
  if (first) return;
  ops::rmsnorm_bwd(ctx, mat(dm, D), false, mat(d, D), mat(a.a, D), wt(b.seq_post_norm), a.rs2, T, 1, D, c.post_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, D, 1.f, dm, 0, D, wt(b.wo), 0, D, 0.f, dhn, 0, D, "gemm_do");
  ops::attention_bwd_batched(ctx, dqr, mat(dkr, D), mat(dqkv, 3 * D, 2 * D), dsum, dhn, a.o, a.qr, a.lse,
                             kc[size_t(l)], vc[size_t(l)], seg, attn_shape());
  ops::rope_bwd(ctx, mat(dqr, D), mat(dqr, D), cs, T, H, E);
  ops::rope_bwd(ctx, mat(dkr, D), mat(dkr, D), cs, T, H, E);
  ops::rmsnorm_bwd(ctx, mat(dqkv, 3 * D, 0), false, mat(dqr, D), mat(a.qkv, 3 * D, 0), wt(b.q_norm), a.rq, T, H, E,
                   c.qk_norm);
  ops::rmsnorm_bwd(ctx, mat(dqkv, 3 * D, D), false, mat(dkr, D), mat(a.qkv, 3 * D, D), wt(b.k_norm), a.rk, T, H, E,
                   c.qk_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, 3 * D, 1.f, dqkv, 0, 3 * D, wt(b.wqkv), 0, 3 * D, 0.f, dhn, 0, D,
             "gemm_dhn");
  ops::rmsnorm_bwd(ctx, mat(d, D), true, mat(dhn, D), mat(x0, D), wt(b.seq_norm), a.rs1, T, 1, D, c.pre_norm);
}

void BatchSession::Impl::backward() {
  const Config& c = e.c;
  const int D = c.hidden_size, S = c.num_prime_blocks(), first = c.first_prime_block();
  Residual& x = stream;
  ops::rmsnorm_bwd(e.ctx, mat(dx, D), false, mat(dhf, D), mat(x.last(), D), wt(e.ln_f), rsf, T, 1, D, true);
  for (int j = S - 1; j >= 0; --j) {
    const size_t k = size_t(j);
    block_backward(first + j, suffix[k], x.in(k), x.after_attn(k), x.after_prime(k), dx, j == 0);
  }
}

}  // namespace ttt
