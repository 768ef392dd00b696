// Backward of one mini-batch from the mean NLL to the trainable (prime MLP)
// weights, the forward's steps in exact reverse order, then the clipped SGD
// update. Carried keys/values are constants; only the suffix blocks are
// visited, and the first of them stops once its prime MLP has its gradient.
// The residual gradient dx is updated in place: each sub-layer adds its input gradient.
#include "lib/engine/impl.hpp"

#include "host/gemm.hpp"

namespace ttt {

using host::Trans;
using ops::mat;

// dxio: on entry dL/d(xout), on exit dL/d(xin) unless !need_dx (the first
// prime block needs only its weight gradients g).
void Session::Impl::mlp_backward(const MlpIdx& wi, int pre, int post, MlpActs& a, Buffer& xin, Buffer& dxio,
                                 const MlpIdx* g, bool need_dx, int T) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const int D = c.hidden_size, I = c.intermediate_size;
  ops::rmsnorm_bwd(ctx, mat(e.dm, D), false, mat(dxio, D), mat(a.m, D), w(post), a.rs_post, T, 1, D, c.post_norm);
  if (g)  // dW2 (I, D) = g^T dm
    host::gemm(ctx, Trans::T, Trans::N, I, D, T, 1.f, a.g, 0, I, e.dm, 0, D, 0.f, grad[size_t(g->w2)], 0, D,
               "gemm_dw2");
  host::gemm(ctx, Trans::N, Trans::T, T, I, D, 1.f, e.dm, 0, D, w(wi.w2), 0, D, 0.f, e.dg, 0, I, "gemm_dg");
  ops::swiglu_bwd(ctx, e.dh13, e.dg, a.h13, T, I);
  if (g)  // dW13 (D, 2I) = hn^T dh13
    host::gemm(ctx, Trans::T, Trans::N, D, 2 * I, T, 1.f, a.hn, 0, D, e.dh13, 0, 2 * I, 0.f, grad[size_t(g->w13)], 0,
               2 * I, "gemm_dw13");
  if (!need_dx) return;
  host::gemm(ctx, Trans::N, Trans::T, T, D, 2 * I, 1.f, e.dh13, 0, 2 * I, w(wi.w13), 0, 2 * I, 0.f, e.dhn, 0, D,
             "gemm_dhn");
  ops::rmsnorm_bwd(ctx, mat(dxio, D), true, mat(e.dhn, D), mat(xin, D), w(pre), a.rs_pre, T, 1, D, c.pre_norm);
}

void Session::Impl::block_backward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& d, bool first,
                                   int T) {
  const Config& c = e.c;
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
  mlp_backward(b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, d, nullptr, true, T);              // d = dL/dx2
  mlp_backward(b.prime, b.prime_norm, b.prime_post_norm, a.prime, x1, d, &b.prime, !first, T);  // d = dL/dx1
  if (first) return;  // nothing below the first prime MLP depends on a prime weight
  // Attention sub-layer: x1 = x0 + RMSNorm(o Wo, seq_post_norm).
  ops::rmsnorm_bwd(ctx, mat(e.dm, D), false, mat(d, D), mat(a.a, D), w(b.seq_post_norm), a.rs2, T, 1, D,
                   c.post_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, D, 1.f, e.dm, 0, D, w(b.wo), 0, D, 0.f, e.dhn, 0, D,
             "gemm_do");  // dhn = d(o)
  const ops::AttnShape shape{T, H, E, e.C, e.W, fwd_pos};
  ops::attention_bwd(ctx, e.dqr, mat(e.dkr, D), mat(e.dqkv, 3 * D, 2 * D), e.dsum, e.dhn, a.o, a.qr, a.lse,
                     kc[size_t(l)], vc[size_t(l)], shape);
  ops::rope_bwd(ctx, mat(e.dqr, D), mat(e.dqr, D), e.cs, T, H, E);
  ops::rope_bwd(ctx, mat(e.dkr, D), mat(e.dkr, D), e.cs, T, H, E);
  ops::rmsnorm_bwd(ctx, mat(e.dqkv, 3 * D, 0), false, mat(e.dqr, D), mat(a.qkv, 3 * D, 0), w(b.q_norm), a.rq, T, H,
                   E, c.qk_norm);
  ops::rmsnorm_bwd(ctx, mat(e.dqkv, 3 * D, D), false, mat(e.dkr, D), mat(a.qkv, 3 * D, D), w(b.k_norm), a.rk, T, H,
                   E, c.qk_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, 3 * D, 1.f, e.dqkv, 0, 3 * D, w(b.wqkv), 0, 3 * D, 0.f, e.dhn, 0, D,
             "gemm_dhn");
  ops::rmsnorm_bwd(ctx, mat(d, D), true, mat(e.dhn, D), mat(x0, D), w(b.seq_norm), a.rs1, T, 1, D,
                   c.pre_norm);  // dL/dx0
}

void Session::Impl::backward(int T) {
  const Config& c = e.c;
  const int D = c.hidden_size, S = c.num_prime_blocks(), first = c.first_prime_block();
  Residual& x = e.stream;
  ops::rmsnorm_bwd(e.ctx, mat(e.dx, D), false, mat(e.dhf, D), mat(x.last(), D), w(e.ln_f), e.rsf, T, 1, D, true);
  for (int j = S - 1; j >= 0; --j) {
    const size_t k = size_t(j);
    block_backward(first + j, e.suffix[k], x.in(k), x.after_attn(k), x.after_prime(k), e.dx, j == 0, T);
  }
}

// Clipped SGD over every trainable device tensor, in the table's order, then
// the weights' global norm (to catch an update that overflowed).
void Session::Impl::update() {
  std::vector<ops::SgdParam> params;
  std::vector<std::pair<const Buffer*, int>> weights;
  for (size_t i = 0; i < e.table.device.size(); ++i) {
    const DeviceTensor& d = e.table.device[i];
    if (!d.trainable) continue;
    params.push_back({&live[i], &grad[i], int(d.size())});
    weights.emplace_back(&live[i], int(d.size()));
  }
  ops::sgd_step(e.ctx, params, partial, gstats, lr, e.c.inner_clip_gradient);
  ops::global_norm(e.ctx, weights, partial, wstats, 0.f);
}

}  // namespace ttt
