// Backward of one mini-batch from the mean NLL to the prime MLP weights, the
// forward's steps in exact reverse order, then the clipped SGD update.
// Carried keys/values are constants; only the suffix blocks are visited, and
// the first of them stops once its prime MLP has its gradient. The residual
// gradient dx is updated in place: each sub-layer adds its input gradient.
#include "lib/engine/impl.hpp"

#include "host/gemm.hpp"

namespace ttt {

using host::Trans;
using ops::mat;

// dxio: on entry dL/d(xout), on exit dL/d(xin) unless !need_dx (the first
// prime block needs only its weight gradients g).
void Engine::Impl::mlp_backward(const DevMlp& w, const Buffer& pre, const Buffer& post, MlpActs& a, Buffer& xin,
                                Buffer& dxio, DevMlp* g, bool need_dx, int T) {
  const int D = c.hidden_size, I = c.intermediate_size;
  ops::rmsnorm_bwd(ctx, mat(dm, D), false, mat(dxio, D), mat(a.m, D), post, a.rs_post, T, 1, D, c.post_norm);
  if (g)  // dW2 (I, D) = g^T dm
    host::gemm(ctx, Trans::T, Trans::N, I, D, T, 1.f, a.g, 0, I, dm, 0, D, 0.f, g->w2, 0, D, "gemm_dw2");
  host::gemm(ctx, Trans::N, Trans::T, T, I, D, 1.f, dm, 0, D, w.w2, 0, D, 0.f, dg, 0, I, "gemm_dg");
  ops::swiglu_bwd(ctx, dh13, dg, a.h13, T, I);
  if (g)  // dW13 (D, 2I) = hn^T dh13
    host::gemm(ctx, Trans::T, Trans::N, D, 2 * I, T, 1.f, a.hn, 0, D, dh13, 0, 2 * I, 0.f, g->w13, 0, 2 * I,
               "gemm_dw13");
  if (!need_dx) return;
  host::gemm(ctx, Trans::N, Trans::T, T, D, 2 * I, 1.f, dh13, 0, 2 * I, w.w13, 0, 2 * I, 0.f, dhn, 0, D, "gemm_dhn");
  ops::rmsnorm_bwd(ctx, mat(dxio, D), true, mat(dhn, D), mat(xin, D), pre, a.rs_pre, T, 1, D, c.pre_norm);
}

void Engine::Impl::block_backward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& d, bool first,
                                  int T) {
  DevBlock& b = blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
  DevMlp* g = &grads[size_t(l - c.first_prime_block())];
  mlp_backward(b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, d, nullptr, true, T);       // d = dL/dx2
  mlp_backward(b.prime, b.prime_norm, b.prime_post_norm, a.prime, x1, d, g, !first, T);  // d = dL/dx1
  if (first) return;  // nothing below the first prime MLP depends on a prime weight
  // Attention sub-layer: x1 = x0 + RMSNorm(o Wo, seq_post_norm).
  ops::rmsnorm_bwd(ctx, mat(dm, D), false, mat(d, D), mat(a.a, D), b.seq_post_norm, a.rs2, T, 1, D, c.post_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, D, 1.f, dm, 0, D, b.wo, 0, D, 0.f, dhn, 0, D, "gemm_do");  // dhn = d(o)
  const ops::AttnShape shape{T, H, E, C, c.sliding_window_size, pos};
  ops::attention_bwd(ctx, dqr, mat(dkr, D), mat(dqkv, 3 * D, 2 * D), dsum, dhn, a.o, a.qr, a.lse, b.kc, b.vc, shape);
  ops::rope_bwd(ctx, mat(dqr, D), mat(dqr, D), cs, T, H, E);
  ops::rope_bwd(ctx, mat(dkr, D), mat(dkr, D), cs, T, H, E);
  ops::rmsnorm_bwd(ctx, mat(dqkv, 3 * D, 0), false, mat(dqr, D), mat(a.qkv, 3 * D, 0), b.q_norm, a.rq, T, H, E,
                   c.qk_norm);
  ops::rmsnorm_bwd(ctx, mat(dqkv, 3 * D, D), false, mat(dkr, D), mat(a.qkv, 3 * D, D), b.k_norm, a.rk, T, H, E,
                   c.qk_norm);
  host::gemm(ctx, Trans::N, Trans::T, T, D, 3 * D, 1.f, dqkv, 0, 3 * D, b.wqkv, 0, 3 * D, 0.f, dhn, 0, D, "gemm_dhn");
  ops::rmsnorm_bwd(ctx, mat(d, D), true, mat(dhn, D), mat(x0, D), b.seq_norm, a.rs1, T, 1, D, c.pre_norm);  // dL/dx0
}

void Engine::Impl::backward(Buffer& xL, int T) {
  const int D = c.hidden_size, S = c.num_prime_blocks(), first = c.first_prime_block();
  ops::rmsnorm_bwd(ctx, mat(dx, D), false, mat(dhf, D), mat(xL, D), ln_f, rsf, T, 1, D, true);
  for (int j = S - 1; j >= 0; --j) {
    const size_t k = size_t(j);
    block_backward(first + j, suffix[k], stream[3 * k], stream[3 * k + 1], stream[3 * k + 2], dx, j == 0, T);
  }
}

void Engine::Impl::update() {
  std::vector<ops::SgdParam> params;
  std::vector<std::pair<const Buffer*, int>> weights;
  const int D = c.hidden_size, I = c.intermediate_size;
  size_t j = 0;
  for (DevBlock& b : blocks) {
    if (!b.has_prime) continue;
    params.push_back({&b.prime.w13, &grads[j].w13, D * 2 * I});
    params.push_back({&b.prime.w2, &grads[j].w2, I * D});
    weights.emplace_back(&b.prime.w13, D * 2 * I);
    weights.emplace_back(&b.prime.w2, I * D);
    ++j;
  }
  ops::sgd_step(ctx, params, partial, gstats, lr, c.inner_clip_gradient);
  ops::global_norm(ctx, weights, partial, wstats, 0.f);
}

}  // namespace ttt
