// Forward pass of one mini-batch through every block, following the model
// format document (docs/model-format.md) step by step:
//   a = attn(RMSNorm(x, seq_norm));            x += RMSNorm(a, seq_post_norm)
//   m = SwiGLU_prime(RMSNorm(x, prime_norm));  x += RMSNorm(m, prime_post_norm)   (suffix blocks)
//   m = SwiGLU_mlp(RMSNorm(x, ffn_norm));      x += RMSNorm(m, ffn_post_norm)
#include "lib/engine/impl.hpp"

#include "host/gemm.hpp"

#include <algorithm>

namespace ttt {

using ops::mat;

void Session::Impl::mlp_forward(const MlpIdx& wi, int pre, int post, MlpActs& a, Buffer& xin, Buffer& xout, int T) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const int D = c.hidden_size, I = c.intermediate_size;
  const float eps = c.rms_norm_eps;
  // y = x W, or with chunked prime weights x_c W_c per mini-batch c.
  auto linear = [&](Buffer& y, const Buffer& x, int idx, int K, int N, const char* label) {
    const Buffer* copies = nullptr;
    if (chunked)
      if (const auto it = chunked->copies.find(idx); it != chunked->copies.end()) copies = it->second;
    if (!copies) {
      e.linear(y, x, w(idx), T, K, N, label);
      return;
    }
    for (int r0 = 0, k = 0; r0 < T; r0 += chunked->B, ++k)
      host::gemm(ctx, host::Trans::N, host::Trans::N, size_t(std::min(chunked->B, T - r0)), size_t(N), size_t(K), 1.f,
                 x, size_t(r0) * K, size_t(K), *copies, size_t(k) * K * N, size_t(N), 0.f, y, size_t(r0) * N,
                 size_t(N), label);
  };
  ops::rmsnorm_fwd(ctx, mat(a.hn, D), a.rs_pre, mat(xin, D), w(pre), nullptr, T, 1, D, eps, c.pre_norm);
  linear(a.h13, a.hn, wi.w13, D, 2 * I, "gemm_w13");
  ops::swiglu_fwd(ctx, a.g, a.h13, T, I);
  linear(a.m, a.g, wi.w2, I, D, "gemm_w2");
  const ops::Mat res = mat(xin, D);
  ops::rmsnorm_fwd(ctx, mat(xout, D), a.rs_post, mat(a.m, D), w(post), &res, T, 1, D, eps, c.post_norm);
}

// x0 -> x1 (after attention) -> x2 (after the prime MLP) -> x3. Blocks whose
// activations are not kept pass one buffer for all four: the residual adds
// are element-wise, so they run in place.
void Session::Impl::block_forward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& x3, int T) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim(), C = e.C;
  const float eps = c.rms_norm_eps;
  ops::rmsnorm_fwd(ctx, mat(a.hn1, D), a.rs1, mat(x0, D), w(b.seq_norm), nullptr, T, 1, D, eps, c.pre_norm);
  e.linear(a.qkv, a.hn1, w(b.wqkv), T, D, 3 * D, "gemm_qkv");
  // qk-norm per head (the identity when off), then RoPE, for q and k.
  ops::rmsnorm_fwd(ctx, mat(a.qr, D), a.rq, mat(a.qkv, 3 * D, 0), w(b.q_norm), nullptr, T, H, E, eps, c.qk_norm);
  ops::rmsnorm_fwd(ctx, mat(a.kr, D), a.rk, mat(a.qkv, 3 * D, D), w(b.k_norm), nullptr, T, H, E, eps, c.qk_norm);
  ops::rope_fwd(ctx, mat(a.qr, D), mat(a.qr, D), e.cs, T, H, E);
  ops::rope_fwd(ctx, mat(a.kr, D), mat(a.kr, D), e.cs, T, H, E);
  // The chunk's keys and values enter the ring at rows (pos + t) % C, in at most two runs.
  Buffer &kring = kc[size_t(l)], &vring = vc[size_t(l)];
  const size_t row_bytes = size_t(D) * sizeof(float);
  for (int t = 0; t < T;) {
    const int row = int((fwd_pos + t) % C), run = std::min(T - t, C - row);
    kring.copy_from(a.kr, size_t(run) * row_bytes, size_t(t) * row_bytes, size_t(row) * row_bytes);
    host::copy_rows(ctx, a.qkv, (size_t(t) * 3 * D + 2 * D) * sizeof(float), 3 * row_bytes, vring,
                    size_t(row) * row_bytes, row_bytes, row_bytes, size_t(run));
    t += run;
  }
  const ops::AttnShape shape{T, H, E, C, e.W, fwd_pos};
  ops::attention_fwd(ctx, a.o, a.lse, a.qr, kring, vring, shape);
  e.linear(a.a, a.o, w(b.wo), T, D, D, "gemm_wo");
  const ops::Mat res = mat(x0, D);
  ops::rmsnorm_fwd(ctx, mat(x1, D), a.rs2, mat(a.a, D), w(b.seq_post_norm), &res, T, 1, D, eps, c.post_norm);
  if (b.has_prime)
    mlp_forward(b.prime, b.prime_norm, b.prime_post_norm, a.prime, x1, x2, T);
  else if (&x2 != &x1)
    x2.copy_from(x1, size_t(T) * row_bytes);
  mlp_forward(b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, x3, T);
}

Buffer& Session::Impl::forward_blocks(int T, bool keep) {
  const int L = e.c.num_hidden_layers, first = e.c.first_prime_block();
  Residual& x = e.stream;
  ops::embedding_fwd(e.ctx, x.shared(), e.ids, w(e.wte), T, e.c.hidden_size);
  for (int l = 0; l < L; ++l) {
    if (keep && l >= first) {
      const size_t j = size_t(l - first);
      block_forward(l, e.suffix[j], x.in(j), x.after_attn(j), x.after_prime(j), x.out(j), T);
    } else {
      block_forward(l, e.shared, x.shared(), x.shared(), x.shared(), x.shared(), T);
    }
  }
  return keep ? x.last() : x.shared();
}

}  // namespace ttt
