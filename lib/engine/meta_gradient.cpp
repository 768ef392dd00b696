// The second-order terms of TTT-E2E's meta gradient on the device
// (FullGradient::Impl::second_order_sweep), for models whose one prime block
// is the last block P (suffix_len 1).
//
// The test-time steps are W_{c+1} = W_c - U(g_c), g_c = d l_c / d W_c the
// inner gradient of mini-batch c (its mean NLL) and U(g) = lr k(g) g with the
// clip k = min(1, clip / |g|). Let a_c = dL/dW_c with every step held constant
// (meta-fo's per-copy gradient, FullGradient's prime backward with
// `second_order`), and lambda_c the total derivative of the meta loss L with
// respect to W_c. Swept backwards from lambda_N = 0:
//   mu_c     = (dU/dg)^T lambda_{c+1} = lr (k lambda - clip (g.lambda) / |g|^3 g)   (clipped; else lr lambda)
//   lambda_c = a_c + lambda_{c+1} - H_c mu_c,     H_c = d g_c / d W_c
// and every other parameter theta gains - (d g_c / d theta)^T mu_c. Both
// products come from one forward-over-reverse pass of mini-batch c: moving
// W_c along nu_c = -mu_c, the tangent of the whole gradient of l_c is exactly
// (H_c nu_c, (d g_c / d theta)^T nu_c) (the Hessian is symmetric), so both
// are added as they are.
//
// With P the last block and its prime MLP after its attention, W_c reaches
// nothing but mini-batch c's rows of P's two MLPs, the final norm and the
// head: the pass runs on those rows alone (the "tail"), in values (the inner
// backward, again, with l_c's own weights 1/count_c) and in tangents. Below the
// prime MLP the tangents of the activations are zero, so the backward there is
// linear in the incoming gradient: the tangent of dL/dx1 is added to d (the
// document's dL/dx1) and the ordinary backward carries it through P's attention,
// every earlier block and the embedding, and through the keys and values
// mini-batch c read from earlier ones, as the oracle's graph does.
//
// The clip's branch and |g| are the step's own (the inner session's norm), so
// the sweep differentiates the step that was taken. The last mini-batch
// (lambda still 0) and one without scored targets (no Hessian) add no
// second-order term and skip the pass.
#include "host/gemm.hpp"
#include "lib/engine/full_gradient_impl.hpp"

#include <fmt/format.h>

#include <cmath>

namespace ttt {

using host::Trans;
using ops::mat;

// Buffers of one mini-batch's tail, B rows; suffix d marks a tangent.
struct MetaTail {
  MlpActs prime, ffn;
  Buffer x1, x2, x3, hf, rsf, targets, nll;
  ops::XentScratch xent;
  // The inner loss's backward: dL_c / d of each value.
  Buffer dhf, dx3, dmf, dgf, dh13f, dhnf, dx2, dm, dg, dh13, g13, g2;
  // Tangents of the forward, the row dots x . xd that the norms' tangents reuse, and of the backward.
  Buffer h13d, gd, md, x2d, q_m, hnfd, h13fd, gfd, mfd, x3d, q_mf, q_x2, hfd, q_x3, zd, sigma;
  Buffer dhfd, dx3d, dmfd, dgfd, dh13fd, dhnfd, dx2d, dmd, dgd, dh13d, dhnd, dx1d;
  // The sweep: lambda and nu per prime tensor, the partial sums of a dot product.
  Buffer lam13, lam2, nu13, nu2, partial;
  size_t bytes = 0;

  MetaTail(host::Context& ctx, const Config& c, int tile) : xent(ctx, c.mini_batch_size, c.hidden_size, tile) {
    const size_t B = size_t(c.mini_batch_size), D = size_t(c.hidden_size), I = size_t(c.intermediate_size);
    bytes += (B * size_t(tile) + 3 * B + B * D) * sizeof(float);  // the xent scratch
    auto a = [&](size_t floats, const char* what) {
      bytes += floats * sizeof(float);
      return Buffer(ctx, std::max<size_t>(floats, 1) * sizeof(float), what);
    };
    alloc_mlp_acts(prime, B, c, a);
    alloc_mlp_acts(ffn, B, c, a);
    for (Buffer* b : {&x1, &x2, &x3, &hf, &dhf, &dx3, &dmf, &dhnf, &dx2, &dm, &md, &x2d, &hnfd, &mfd, &x3d, &hfd,
                      &dhfd, &dx3d, &dmfd, &dhnfd, &dx2d, &dmd, &dhnd, &dx1d})
      *b = a(B * D, "tail rows");
    for (Buffer* b : {&dgf, &dg, &gd, &gfd, &dgfd, &dgd}) *b = a(B * I, "tail gate rows");
    for (Buffer* b : {&dh13f, &dh13, &h13d, &h13fd, &dh13fd, &dh13d}) *b = a(B * 2 * I, "tail up-projection rows");
    for (Buffer* b : {&rsf, &nll, &q_m, &q_mf, &q_x2, &q_x3, &sigma}) *b = a(B, "tail per-row");
    targets = a(B, "tail targets");
    zd = a(B * size_t(tile), "tail logits tangent tile");
    g13 = a(D * 2 * I, "inner gradient");
    lam13 = a(D * 2 * I, "meta lambda");
    nu13 = a(D * 2 * I, "meta nu");
    g2 = a(I * D, "inner gradient");
    lam2 = a(I * D, "meta lambda");
    nu2 = a(I * D, "meta nu");
    partial = a(size_t(ops::dot_partials(2)), "dot partials");
  }
};

void FullGradient::Impl::second_order_sweep(int l, Buffer& d, int T) {
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  if (l != c.num_hidden_layers - 1 || c.num_prime_blocks() != 1)
    throw Error("FullGradient: the second-order sweep needs the prime block to be the last, and the only one");
  const int D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, B = c.mini_batch_size;
  const size_t n13 = size_t(D) * 2 * I, n2 = size_t(I) * D;
  const float lr = float(inner_lr), clip = c.inner_clip_gradient;
  const bool tied = c.tie_word_embeddings, pre = c.pre_norm, post = c.post_norm;
  if (!tail) {
    tail = std::make_shared<MetaTail>(ctx, c, std::min(e.opts.vocab_tile, c.vocab_size));
    bytes += tail->bytes;
  }
  MetaTail& t = *tail;
  MlpActs &P = t.prime, &F = t.ffn;
  const Buffer &W13 = copies[size_t(b.prime.w13)], &W2 = copies[size_t(b.prime.w2)];
  const Buffer &F13 = w(b.mlp.w13), &F2 = w(b.mlp.w2), &head = w(e.head);
  Buffer& x1 = x[3 * size_t(l) + 1];
  // C (M, N) (+)= op(A) @ op(B), contiguous operands, A and B at element offsets.
  auto mm = [&](Trans ta, Trans tb, int M, int N, int K, const Buffer& A, size_t ao, const Buffer& Bm, size_t bo,
                float beta, Buffer& C, const char* label) {
    const size_t lda = ta == Trans::N ? size_t(K) : size_t(M), ldb = tb == Trans::N ? size_t(N) : size_t(K);
    host::gemm(ctx, ta, tb, size_t(M), size_t(N), size_t(K), 1.f, A, ao, lda, Bm, bo, ldb, beta, C, 0, size_t(N),
               label);
  };
  t.lam13.zero();
  t.lam2.zero();
  const int chunks = (T + B - 1) / B;
  for (int k = chunks - 1; k >= 0; --k) {
    const int r0 = k * B, n = std::min(B, T - r0);
    const size_t o13 = size_t(k) * n13, o2 = size_t(k) * n2;
    int count = 0;
    for (int i = 0; i < n; ++i) count += h_targets[size_t(r0 + i)] != c.bos_token_id;
    // The last mini-batch's step feeds nothing (lambda is still 0) and a step without scored targets has
    // no Hessian: neither adds a second-order term.
    if (updated[size_t(k)] && k != chunks - 1 && count > 0) {
      const float inv_count = 1.f / float(count);  // l_c's own weights
      // The tail forward of mini-batch k through W_k (the document's forward computed the same rows), then
      // the inner backward: dhf -> dx3 -> (ffn) dx2 -> (prime) g_k = (g13, g2). The block description's
      // steps over the tail's n rows, the prime weights copy k, the inner gradient the only one wanted.
      t.x1.copy_from(x1, size_t(n) * D * 4, size_t(r0) * D * 4);
      t.targets.copy_from(e.targets, size_t(n) * 4, size_t(r0) * 4);
      block::Pass tp{ctx, e};
      tp.T = n;
      tp.w = block::weights_of(e, {});
      tp.w[size_t(b.prime.w13)] = {&W13, o13, 0};
      tp.w[size_t(b.prime.w2)] = {&W2, o2, 0};
      tp.g.resize(e.weights.size());
      tp.g[size_t(b.prime.w13)].buf = &t.g13;
      tp.g[size_t(b.prime.w2)].buf = &t.g2;
      block::mlp_fwd(tp, b.prime, b.prime_norm, b.prime_post_norm, P, t.x1, t.x2);
      block::mlp_fwd(tp, b.mlp, b.ffn_norm, b.ffn_post_norm, F, t.x2, t.x3);
      block::final_norm_fwd(tp, t.hf, t.rsf, t.x3);
      ops::xent(ctx, t.xent, t.nll, &t.dhf, t.hf, head, tied, t.targets, n, D, V, c.bos_token_id, inv_count);
      block::final_norm_bwd(tp, t.dx3, t.dhf, t.x3, t.rsf);
      t.dx2.copy_from(t.dx3, size_t(n) * D * 4);  // the tangent pass needs dx3 and dx2 apart
      block::mlp_bwd(tp, b.mlp, b.ffn_norm, b.ffn_post_norm, F, t.x2, t.dx2, true, {t.dmf, t.dgf, t.dh13f, t.dhnf});
      block::mlp_bwd(tp, b.prime, b.prime_norm, b.prime_post_norm, P, t.x1, t.dx2, false, {t.dm, t.dg, t.dh13, t.dhnf});

      // nu = -mu = -lr k lambda (+ lr clip (g . lambda) / |g|^3 g when clipped), with the norm and the
      // clip decision of the step that was taken.
      const double norm = step_norms[size_t(k)];
      const bool clipped = clip > 0 && float(norm) >= clip;
      const float kscale = clipped ? float(clip / norm) : 1.f;
      ops::axpby(ctx, t.nu13, 0, -lr * kscale, t.lam13, 0, 0.f, n13);
      ops::axpby(ctx, t.nu2, 0, -lr * kscale, t.lam2, 0, 0.f, n2);
      if (clipped) {
        const double gl = ops::dot(ctx, {{&t.g13, &t.lam13}, {&t.g2, &t.lam2}}, {n13, n2}, t.partial);
        const float coef = float(double(lr) * clip * gl / (norm * norm * norm));
        ops::axpby(ctx, t.nu13, 0, coef, t.g13, 0, 1.f, n13);
        ops::axpby(ctx, t.nu2, 0, coef, t.g2, 0, 1.f, n2);
      }

      // Tangent forward along nu (x1 does not move).
      mm(Trans::N, Trans::N, n, 2 * I, D, P.hn, 0, t.nu13, 0, 0.f, t.h13d, "gemm_w13_tangent");
      ops::swiglu_jvp(ctx, t.gd, P.h13, t.h13d, n, I);
      mm(Trans::N, Trans::N, n, D, I, t.gd, 0, W2, o2, 0.f, t.md, "gemm_w2_tangent");
      mm(Trans::N, Trans::N, n, D, I, P.g, 0, t.nu2, 0, 1.f, t.md, "gemm_w2_tangent");
      ops::rmsnorm_jvp(ctx, t.x2d, t.q_m, P.m, t.md, w(b.prime_post_norm), P.rs_post, n, D, post);
      ops::rmsnorm_jvp(ctx, t.hnfd, t.q_x2, t.x2, t.x2d, w(b.ffn_norm), F.rs_pre, n, D, pre);
      mm(Trans::N, Trans::N, n, 2 * I, D, t.hnfd, 0, F13, 0, 0.f, t.h13fd, "gemm_w13_tangent");
      ops::swiglu_jvp(ctx, t.gfd, F.h13, t.h13fd, n, I);
      mm(Trans::N, Trans::N, n, D, I, t.gfd, 0, F2, 0, 0.f, t.mfd, "gemm_w2_tangent");
      ops::rmsnorm_jvp(ctx, t.x3d, t.q_mf, F.m, t.mfd, w(b.ffn_post_norm), F.rs_post, n, D, post);
      ops::axpby(ctx, t.x3d, 0, 1.f, t.x2d, 0, 1.f, size_t(n) * D);  // the residual
      ops::rmsnorm_jvp(ctx, t.hfd, t.q_x3, t.x3, t.x3d, w(e.ln_f), t.rsf, n, D);
      // The head: dhfd, and the head's (tied: the embedding's) gradient gains its tangent.
      ops::xent_tangent(ctx, t.xent, t.zd, t.sigma, t.dhfd, g(e.head), t.hf, t.hfd, head, tied, t.targets, n, D, V,
                        c.bos_token_id, inv_count);

      // Tangent backward; each weight's gradient tangent is added to its gradient (theta) or lambda (W_k).
      ops::rmsnorm_wgrad_tangent(ctx, g(e.ln_f), t.dhf, t.dhfd, t.x3, t.x3d, t.rsf, t.q_x3, n, D);
      ops::rmsnorm_bwd_tangent(ctx, t.dx3d, false, t.dhf, t.dhfd, t.x3, t.x3d, w(e.ln_f), t.rsf, n, D);
      ops::rmsnorm_wgrad_tangent(ctx, g(b.ffn_post_norm), t.dx3, t.dx3d, F.m, t.mfd, F.rs_post, t.q_mf, n, D, post);
      ops::rmsnorm_bwd_tangent(ctx, t.dmfd, false, t.dx3, t.dx3d, F.m, t.mfd, w(b.ffn_post_norm), F.rs_post, n, D,
                               post);
      mm(Trans::T, Trans::N, I, D, n, F.g, 0, t.dmfd, 0, 1.f, g(b.mlp.w2), "gemm_dw2_tangent");
      mm(Trans::T, Trans::N, I, D, n, t.gfd, 0, t.dmf, 0, 1.f, g(b.mlp.w2), "gemm_dw2_tangent");
      mm(Trans::N, Trans::T, n, I, D, t.dmfd, 0, F2, 0, 0.f, t.dgfd, "gemm_dg_tangent");
      ops::swiglu_bwd_tangent(ctx, t.dh13fd, t.dgf, t.dgfd, F.h13, t.h13fd, n, I);
      mm(Trans::T, Trans::N, D, 2 * I, n, F.hn, 0, t.dh13fd, 0, 1.f, g(b.mlp.w13), "gemm_dw13_tangent");
      mm(Trans::T, Trans::N, D, 2 * I, n, t.hnfd, 0, t.dh13f, 0, 1.f, g(b.mlp.w13), "gemm_dw13_tangent");
      mm(Trans::N, Trans::T, n, D, 2 * I, t.dh13fd, 0, F13, 0, 0.f, t.dhnfd, "gemm_dhn_tangent");
      ops::rmsnorm_wgrad_tangent(ctx, g(b.ffn_norm), t.dhnf, t.dhnfd, t.x2, t.x2d, F.rs_pre, t.q_x2, n, D, pre);
      t.dx2d.copy_from(t.dx3d, size_t(n) * D * 4);
      ops::rmsnorm_bwd_tangent(ctx, t.dx2d, true, t.dhnf, t.dhnfd, t.x2, t.x2d, w(b.ffn_norm), F.rs_pre, n, D, pre);
      ops::rmsnorm_wgrad_tangent(ctx, g(b.prime_post_norm), t.dx2, t.dx2d, P.m, t.md, P.rs_post, t.q_m, n, D, post);
      ops::rmsnorm_bwd_tangent(ctx, t.dmd, false, t.dx2, t.dx2d, P.m, t.md, w(b.prime_post_norm), P.rs_post, n, D,
                               post);
      mm(Trans::T, Trans::N, I, D, n, t.gd, 0, t.dm, 0, 1.f, t.lam2, "gemm_dw2_tangent");
      mm(Trans::T, Trans::N, I, D, n, P.g, 0, t.dmd, 0, 1.f, t.lam2, "gemm_dw2_tangent");
      mm(Trans::N, Trans::T, n, I, D, t.dmd, 0, W2, o2, 0.f, t.dgd, "gemm_dg_tangent");
      mm(Trans::N, Trans::T, n, I, D, t.dm, 0, t.nu2, 0, 1.f, t.dgd, "gemm_dg_tangent");
      ops::swiglu_bwd_tangent(ctx, t.dh13d, t.dg, t.dgd, P.h13, t.h13d, n, I);
      mm(Trans::T, Trans::N, D, 2 * I, n, P.hn, 0, t.dh13d, 0, 1.f, t.lam13, "gemm_dw13_tangent");
      mm(Trans::N, Trans::T, n, D, 2 * I, t.dh13d, 0, W13, o13, 0.f, t.dhnd, "gemm_dhn_tangent");
      mm(Trans::N, Trans::T, n, D, 2 * I, t.dh13, 0, t.nu13, 0, 1.f, t.dhnd, "gemm_dhn_tangent");
      ops::rmsnorm_wgrad(ctx, g(b.prime_norm), true, mat(t.dhnd, D), mat(t.x1, D), P.rs_pre, n, 1, D, pre);
      t.dx1d.copy_from(t.dx2d, size_t(n) * D * 4);
      ops::rmsnorm_bwd(ctx, mat(t.dx1d, D), true, mat(t.dhnd, D), mat(t.x1, D), w(b.prime_norm), P.rs_pre, n, 1, D,
                       pre);
      ops::axpby(ctx, d, size_t(r0) * D, 1.f, t.dx1d, 0, 1.f, size_t(n) * D);  // into the document's dL/dx1
    }
    ops::axpby(ctx, t.lam13, 0, 1.f, per_copy[size_t(b.prime.w13)], o13, 1.f, n13);  // + a_k
    ops::axpby(ctx, t.lam2, 0, 1.f, per_copy[size_t(b.prime.w2)], o2, 1.f, n2);
  }
  g(b.prime.w13).copy_from(t.lam13, n13 * 4);
  g(b.prime.w2).copy_from(t.lam2, n2 * 4);
}

}  // namespace ttt
