// The one description of a block and of the head (block.hpp), step by step
// as the model format document (docs/model-format.md) writes them; the
// backward of each sub-layer sits directly below its forward.
#include "lib/engine/block.hpp"

#include "host/gemm.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ttt::block {

using host::Trans;
using ops::mat;

const Buffer& Pass::weight(int idx) const {
  const WeightRef& r = w[size_t(idx)];
  if (r.stride || r.off) throw Error(fmt::format("device tensor {}: a grouped weight used as one matrix", idx));
  return *r.buf;
}

std::vector<WeightRef> weights_of(const Engine::Impl& e, const std::vector<Buffer>& live) {
  std::vector<WeightRef> w(e.weights.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const bool own = i < live.size() && live[i];  // a session's live copies are trainable: f32
    w[i].buf = own ? &live[i] : &e.weights[i];
    w[i].dtype = own ? DType::F32 : e.table.device[i].dtype;
  }
  return w;
}

namespace {

// out (T, cols) = in (T, inner) @ op(W): W is (inner, cols) for Trans::N and
// (cols, inner) for Trans::T. A grouped weight multiplies each group of rows
// by its own copy: one strided-batched GEMM when every group is whole, else a
// GEMM per group.
void product(const Pass& p, Trans tb, Buffer& out, const Buffer& in, const WeightRef& w, int inner, int cols,
             const char* label) {
  const size_t T = size_t(p.T), K = size_t(inner), N = size_t(cols);
  const size_t ldb = tb == Trans::N ? N : K;
  const bool row = T == 1 && tb == Trans::N && w.off == 0 && !w.stride;
  if (w.dtype != DType::F32 && !(row && p.e.matvec == MatVec::Kernels)) {
    // CLBlast multiplies f32 only: the weight, (K, N) or (N, K) as stored, widened just before its product.
    if (w.stride) throw Error(fmt::format("{}: a grouped weight stored in {}", label, dtype_name(w.dtype)));
    if (p.e.wide.bytes() < K * N * sizeof(float))
      throw Error(fmt::format("{}: no widening scratch for a {}x{} {} weight", label, K, N, dtype_name(w.dtype)));
    const int R = tb == Trans::N ? inner : cols, Cn = tb == Trans::N ? cols : inner;
    ops::convert_widen(p.ctx, p.e.wide, Cn, *w.buf, w.dtype, w.off, Cn, R, Cn);
    product(p, tb, out, in, WeightRef{&p.e.wide, 0, 0, DType::F32}, inner, cols, label);
    return;
  }
  if (!w.stride) {
    // One row (decode): a matrix-vector product, as the engine's options choose.
    const bool row = T == 1 && tb == Trans::N && w.off == 0;
    if (row && p.e.matvec == MatVec::Kernels)
      ops::matvec_cols(p.ctx, out, in, 0, *w.buf, inner, cols, cols, w.dtype);
    else if (row && p.e.matvec == MatVec::ClblastGemv)
      host::gemv(p.ctx, Trans::T, K, N, 1.f, *w.buf, w.off, N, in, 0, 0.f, out, 0, label);
    else
      host::gemm(p.ctx, Trans::N, tb, T, N, K, 1.f, in, 0, K, *w.buf, w.off, ldb, 0.f, out, 0, N, label);
    return;
  }
  const size_t G = size_t(p.group), groups = (T + G - 1) / G;
  if (groups * G == T) {
    host::gemm_strided_batched(p.ctx, Trans::N, tb, G, N, K, 1.f, in, 0, K, G * K, *w.buf, w.off, ldb, w.stride, 0.f,
                               out, 0, N, G * N, groups, label);
    return;
  }
  for (size_t k = 0, r0 = 0; r0 < T; ++k, r0 += G)
    host::gemm(p.ctx, Trans::N, tb, std::min(G, T - r0), N, K, 1.f, in, r0 * K, K, *w.buf, w.off + k * w.stride, ldb,
               0.f, out, r0 * N, N, label);
}

// The gain's gradient of an RMSNorm, when wanted.
void norm_wgrad(const Pass& p, int idx, ops::Mat dy, ops::Mat x, const Buffer& rstd, int H, int N, bool normalize) {
  if (p.wants_grad(idx))
    ops::rmsnorm_wgrad(p.ctx, *p.g[size_t(idx)].buf, false, dy, x, rstd, p.T, H, N, normalize);
}

}  // namespace

void linear(const Pass& p, Buffer& out, const Buffer& in, int idx, int K, int N, const char* label) {
  product(p, Trans::N, out, in, p.w[size_t(idx)], K, N, label);
}

void linear_dx(const Pass& p, Buffer& din, const Buffer& dout, int idx, int K, int N, const char* label) {
  product(p, Trans::T, din, dout, p.w[size_t(idx)], N, K, label);
}

void linear_dw(const Pass& p, int idx, const Buffer& in, const Buffer& dout, int K, int N, const char* label) {
  if (!p.wants_grad(idx)) return;
  const GradRef& g = p.g[size_t(idx)];
  const size_t T = size_t(p.T), Kz = size_t(K), Nz = size_t(N);
  if (!g.stride) {  // summed over every row (a grouped weight's copies all move with W_0)
    host::gemm(p.ctx, Trans::T, Trans::N, Kz, Nz, T, 1.f, in, 0, Kz, dout, 0, Nz, 0.f, *g.buf, 0, Nz, label);
    return;
  }
  const size_t G = size_t(p.group), groups = (T + G - 1) / G;
  if (groups * G == T) {
    host::gemm_strided_batched(p.ctx, Trans::T, Trans::N, Kz, Nz, G, 1.f, in, 0, Kz, G * Kz, dout, 0, Nz, G * Nz, 0.f,
                               *g.buf, 0, Nz, g.stride, groups, label);
    return;
  }
  for (size_t k = 0, r0 = 0; r0 < T; ++k, r0 += G)
    host::gemm(p.ctx, Trans::T, Trans::N, Kz, Nz, std::min(G, T - r0), 1.f, in, r0 * Kz, Kz, dout, r0 * Nz, Nz, 0.f,
               *g.buf, k * g.stride, Nz, label);
}

// ---- MLP sub-layer ----

void mlp_fwd(const Pass& p, const MlpIdx& wi, int pre, int post, MlpActs& a, Buffer& xin, Buffer& xout) {
  const Config& c = p.e.c;
  const int D = c.hidden_size, I = c.intermediate_size, T = p.T;
  const float eps = c.rms_norm_eps;
  ops::rmsnorm_fwd(p.ctx, mat(a.hn, D), a.rs_pre, mat(xin, D), p.weight(pre), nullptr, T, 1, D, eps, c.pre_norm);
  linear(p, a.h13, a.hn, wi.w13, D, 2 * I, "gemm_w13");
  ops::swiglu_fwd(p.ctx, a.g, a.h13, T, I);
  linear(p, a.m, a.g, wi.w2, I, D, "gemm_w2");
  const ops::Mat res = mat(xin, D);
  ops::rmsnorm_fwd(p.ctx, mat(xout, D), a.rs_post, mat(a.m, D), p.weight(post), &res, T, 1, D, eps, c.post_norm);
}

void mlp_bwd(const Pass& p, const MlpIdx& wi, int pre, int post, MlpActs& a, Buffer& xin, Buffer& dxio,
             bool need_dx, const MlpScratch& s) {
  const Config& c = p.e.c;
  const int D = c.hidden_size, I = c.intermediate_size, T = p.T;
  norm_wgrad(p, post, mat(dxio, D), mat(a.m, D), a.rs_post, 1, D, c.post_norm);
  ops::rmsnorm_bwd(p.ctx, mat(s.dm, D), false, mat(dxio, D), mat(a.m, D), p.weight(post), a.rs_post, T, 1, D,
                   c.post_norm);
  // A set that does not keep g and hn has them computed again here (the forward's kernels on the
  // kept h13, xin and gain: the same numbers), only where a weight gradient reads them.
  if (a.recompute && p.wants_grad(wi.w2)) ops::swiglu_fwd(p.ctx, a.g, a.h13, T, I);
  linear_dw(p, wi.w2, a.g, s.dm, I, D, "gemm_dw2");  // dW2 (I, D) = g^T dm
  linear_dx(p, s.dg, s.dm, wi.w2, I, D, "gemm_dg");
  ops::swiglu_bwd(p.ctx, s.dh13, s.dg, a.h13, T, I);
  if (a.recompute && p.wants_grad(wi.w13))
    ops::rmsnorm_fwd(p.ctx, mat(a.hn, D), a.rs_pre, mat(xin, D), p.weight(pre), nullptr, T, 1, D, c.rms_norm_eps,
                     c.pre_norm);
  linear_dw(p, wi.w13, a.hn, s.dh13, D, 2 * I, "gemm_dw13");  // dW13 (D, 2I) = hn^T dh13
  if (!need_dx) return;
  linear_dx(p, s.dhn, s.dh13, wi.w13, D, 2 * I, "gemm_dhn");
  ops::rmsnorm_bwd(p.ctx, mat(dxio, D), true, mat(s.dhn, D), mat(xin, D), p.weight(pre), a.rs_pre, T, 1, D,
                   c.pre_norm);
  norm_wgrad(p, pre, mat(s.dhn, D), mat(xin, D), a.rs_pre, 1, D, c.pre_norm);
}

// ---- attention sub-layer ----

namespace {

ops::AttnShape one_document(const Pass& p) {
  const Config& c = p.e.c;
  return {p.T, c.num_attention_heads, c.head_dim(), p.e.C, p.e.W, p.docs.at(0).pos, p.e.kv()};
}

ops::AttnBatch documents(const Pass& p) {
  const Config& c = p.e.c;
  return {int(p.docs.size()), p.group, c.num_attention_heads, c.head_dim(), p.e.C, p.e.W, p.e.kv()};
}

}  // namespace

void attn_fwd(const Pass& p, int l, BlockActs& a, Buffer& x0, Buffer& x1) {
  const Config& c = p.e.c;
  const BlockIdx& b = p.e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim(), C = p.e.C, T = p.T;
  const float eps = c.rms_norm_eps;
  ops::rmsnorm_fwd(p.ctx, mat(a.hn1, D), a.rs1, mat(x0, D), p.weight(b.seq_norm), nullptr, T, 1, D, eps, c.pre_norm);
  linear(p, a.qkv, a.hn1, b.wqkv, D, 3 * D, "gemm_qkv");
  // qk-norm per head (the identity when off), then RoPE (each row at its own position), for q and k.
  ops::rmsnorm_fwd(p.ctx, mat(a.qr, D), a.rq, mat(a.qkv, 3 * D, 0), p.weight(b.q_norm), nullptr, T, H, E, eps,
                   c.qk_norm);
  ops::rmsnorm_fwd(p.ctx, mat(a.kr, D), a.rk, mat(a.qkv, 3 * D, D), p.weight(b.k_norm), nullptr, T, H, E, eps,
                   c.qk_norm);
  ops::rope_fwd(p.ctx, mat(a.qr, D), mat(a.qr, D), *p.cs, T, H, E);
  ops::rope_fwd(p.ctx, mat(a.kr, D), mat(a.kr, D), *p.cs, T, H, E);
  // Each document's keys and values enter its ring at rows (pos + t) % C, in at most two runs:
  // copied into f32 rings, rounded to nearest even into f16 ones.
  Buffer &kring = (*p.kc)[size_t(l)], &vring = (*p.vc)[size_t(l)];
  const size_t row_bytes = size_t(D) * sizeof(float);
  for (const Document& d : p.docs)
    for (int t = 0; t < d.n;) {
      const int row = int((d.pos + t) % C), run = std::min(d.n - t, C - row);
      const size_t src = size_t(d.row0 + t), dst = d.ring0 + size_t(row);
      if (p.e.kv() == DType::F16) {
        ops::convert_narrow_f16(p.ctx, kring, dst * D, D, a.kr, src * D, D, run, D);
        ops::convert_narrow_f16(p.ctx, vring, dst * D, D, a.qkv, src * 3 * D + 2 * D, 3 * D, run, D);
      } else {
        kring.copy_from(a.kr, size_t(run) * row_bytes, src * row_bytes, dst * row_bytes);
        host::copy_rows(p.ctx, a.qkv, (src * 3 * D + 2 * D) * sizeof(float), 3 * row_bytes, vring, dst * row_bytes,
                        row_bytes, row_bytes, size_t(run));
      }
      t += run;
    }
  if (p.seg)
    ops::attention_fwd_batched(p.ctx, a.o, a.lse, a.qr, kring, vring, *p.seg, documents(p));
  else
    ops::attention_fwd(p.ctx, a.o, a.lse, a.qr, kring, vring, one_document(p));
  linear(p, a.a, a.o, b.wo, D, D, "gemm_wo");
  const ops::Mat res = mat(x0, D);
  ops::rmsnorm_fwd(p.ctx, mat(x1, D), a.rs2, mat(a.a, D), p.weight(b.seq_post_norm), &res, T, 1, D, eps,
                   c.post_norm);
}

void attn_bwd(const Pass& p, int l, BlockActs& a, Buffer& x0, Buffer& d, const Scratch& s) {
  const Config& c = p.e.c;
  const BlockIdx& b = p.e.blocks[size_t(l)];
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim(), T = p.T;
  Buffer &dm = s.mlp.dm, &dhn = s.mlp.dhn;
  norm_wgrad(p, b.seq_post_norm, mat(d, D), mat(a.a, D), a.rs2, 1, D, c.post_norm);
  ops::rmsnorm_bwd(p.ctx, mat(dm, D), false, mat(d, D), mat(a.a, D), p.weight(b.seq_post_norm), a.rs2, T, 1, D,
                   c.post_norm);
  linear_dw(p, b.wo, a.o, dm, D, D, "gemm_dwo");
  linear_dx(p, dhn, dm, b.wo, D, D, "gemm_do");  // dhn = dL/do
  // dk, dv of the chunk's own keys only: carried keys and values are constants.
  Buffer &kring = (*p.kc)[size_t(l)], &vring = (*p.vc)[size_t(l)];
  if (p.seg)
    ops::attention_bwd_batched(p.ctx, s.dqr, mat(s.dkr, D), mat(s.dqkv, 3 * D, 2 * D), s.dsum, dhn, a.o, a.qr, a.lse,
                               kring, vring, *p.seg, documents(p));
  else
    ops::attention_bwd(p.ctx, s.dqr, mat(s.dkr, D), mat(s.dqkv, 3 * D, 2 * D), s.dsum, dhn, a.o, a.qr, a.lse, kring,
                       vring, one_document(p));
  ops::rope_bwd(p.ctx, mat(s.dqr, D), mat(s.dqr, D), *p.cs, T, H, E);
  ops::rope_bwd(p.ctx, mat(s.dkr, D), mat(s.dkr, D), *p.cs, T, H, E);
  norm_wgrad(p, b.q_norm, mat(s.dqr, D), mat(a.qkv, 3 * D, 0), a.rq, H, E, c.qk_norm);
  norm_wgrad(p, b.k_norm, mat(s.dkr, D), mat(a.qkv, 3 * D, D), a.rk, H, E, c.qk_norm);
  ops::rmsnorm_bwd(p.ctx, mat(s.dqkv, 3 * D, 0), false, mat(s.dqr, D), mat(a.qkv, 3 * D, 0), p.weight(b.q_norm), a.rq,
                   T, H, E, c.qk_norm);
  ops::rmsnorm_bwd(p.ctx, mat(s.dqkv, 3 * D, D), false, mat(s.dkr, D), mat(a.qkv, 3 * D, D), p.weight(b.k_norm), a.rk,
                   T, H, E, c.qk_norm);
  if (a.recompute && p.wants_grad(b.wqkv))  // hn1 not kept: computed again, as in mlp_bwd
    ops::rmsnorm_fwd(p.ctx, mat(a.hn1, D), a.rs1, mat(x0, D), p.weight(b.seq_norm), nullptr, T, 1, D, c.rms_norm_eps,
                     c.pre_norm);
  linear_dw(p, b.wqkv, a.hn1, s.dqkv, D, 3 * D, "gemm_dwqkv");
  linear_dx(p, dhn, s.dqkv, b.wqkv, D, 3 * D, "gemm_dhn");
  norm_wgrad(p, b.seq_norm, mat(dhn, D), mat(x0, D), a.rs1, 1, D, c.pre_norm);
  ops::rmsnorm_bwd(p.ctx, mat(d, D), true, mat(dhn, D), mat(x0, D), p.weight(b.seq_norm), a.rs1, T, 1, D,
                   c.pre_norm);  // d = dL/dx0
}

// ---- a block, every block, the head ----

std::function<BlockIO(int)> stream_io(Residual& x, BlockActs& shared, std::vector<BlockActs>& suffix, int first,
                                      bool keep) {
  // With kept sets the shared set is the first of them (alloc_shared_acts says why that is safe).
  BlockActs& common = suffix.empty() ? shared : suffix.front();
  return [&x, &common, &suffix, first, keep](int l) -> BlockIO {
    if (keep && l >= first) {
      const size_t j = size_t(l - first);
      return {&suffix[j], {&x.in(j), &x.after_attn(j), &x.after_prime(j), &x.out(j)}};
    }
    return {&common, {&x.shared(), &x.shared(), &x.shared(), &x.shared()}};
  };
}

void block_fwd(const Pass& p, int l, const BlockIO& io) {
  const BlockIdx& b = p.e.blocks[size_t(l)];
  BlockActs& a = *io.acts;
  Buffer &x0 = *io.x[0], &x1 = *io.x[1], &x2 = *io.x[2], &x3 = *io.x[3];
  attn_fwd(p, l, a, x0, x1);
  if (b.has_prime)  // a set with no prime MLP activations (a shared one, not kept) lends the MLP's
    mlp_fwd(p, b.prime, b.prime_norm, b.prime_post_norm, a.prime.hn ? a.prime : a.ffn, x1, x2);
  else if (&x2 != &x1)
    x2.copy_from(x1, size_t(p.T) * size_t(p.e.c.hidden_size) * sizeof(float));
  mlp_fwd(p, b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, x2, x3);
}

void final_norm_fwd(const Pass& p, Buffer& hf, Buffer& rsf, Buffer& x) {
  const int D = p.e.c.hidden_size;
  ops::rmsnorm_fwd(p.ctx, mat(hf, D), rsf, mat(x, D), p.weight(p.e.ln_f), nullptr, p.T, 1, D, p.e.c.rms_norm_eps);
}

void final_norm_bwd(const Pass& p, Buffer& d, Buffer& dhf, Buffer& x, Buffer& rsf) {
  const int D = p.e.c.hidden_size;
  norm_wgrad(p, p.e.ln_f, mat(dhf, D), mat(x, D), rsf, 1, D, true);
  ops::rmsnorm_bwd(p.ctx, mat(d, D), false, mat(dhf, D), mat(x, D), p.weight(p.e.ln_f), rsf, p.T, 1, D);
}

void mark(const Pass& p, const char* phase, int k, int n) {
  if (!p.ctx.marking()) return;
  const std::string rows = p.docs.size() == 1
                               ? fmt::format("tokens {}-{}", p.docs[0].pos, p.docs[0].pos + p.docs[0].n - 1)
                               : fmt::format("{} documents", p.docs.size());
  p.ctx.mark(n ? fmt::format("{}: {}, block {}/{} done", rows, phase, k, n) : fmt::format("{}: {} done", rows, phase));
}

void forward(const Pass& p, const Buffer& ids, const std::function<BlockIO(int)>& io, Buffer& hf, Buffer& rsf) {
  const int L = p.e.c.num_hidden_layers;
  ops::embedding_fwd(p.ctx, *io(0).x[0], ids, p.weight(p.e.wte), p.T, p.e.c.hidden_size, p.w[size_t(p.e.wte)].dtype);
  for (int l = 0; l < L; ++l) {
    block_fwd(p, l, io(l));
    mark(p, "forward", l + 1, L);
  }
  final_norm_fwd(p, hf, rsf, *io(L - 1).x[3]);
}

void backward(const Pass& p, const std::function<BlockIO(int)>& io, const Buffer& ids, Buffer& dhf, Buffer& rsf,
              Buffer& d, Reach reach, const Scratch& s, const std::function<void(int, Buffer&)>& after_prime) {
  const Config& c = p.e.c;
  const int L = c.num_hidden_layers;
  // The test-time step reaches down to the first prime MLP: nothing below it depends on a prime weight.
  const int lowest = reach == Reach::prime_weights ? c.first_prime_block() : 0;
  final_norm_bwd(p, d, dhf, *io(L - 1).x[3], rsf);
  for (int l = L - 1; l >= lowest; --l) {
    const BlockIdx& b = p.e.blocks[size_t(l)];
    const BlockIO x = io(l);
    BlockActs& a = *x.acts;
    const bool stop = reach == Reach::prime_weights && l == lowest;
    mlp_bwd(p, b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, *x.x[2], d, true, s.mlp);  // d = dL/dx2
    if (b.has_prime) {
      mlp_bwd(p, b.prime, b.prime_norm, b.prime_post_norm, a.prime, *x.x[1], d, !stop, s.mlp);  // d = dL/dx1
      if (after_prime) after_prime(l, d);
    }
    if (stop) return mark(p, "backward", L - l, L - lowest);
    attn_bwd(p, l, a, *x.x[0], d, s);  // d = dL/dx0
    mark(p, "backward", L - l, L - lowest);
  }
  if (reach == Reach::embedding && p.wants_grad(p.e.wte)) {
    // Tied, the head's sweep has already written the embedding's first part.
    if (!c.tie_word_embeddings) p.g[size_t(p.e.wte)].buf->zero();
    ops::embedding_bwd(p.ctx, *p.g[size_t(p.e.wte)].buf, d, ids, p.T, c.hidden_size);
  }
}

}  // namespace ttt::block
