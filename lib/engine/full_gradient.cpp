// FullGradient (full_gradient.hpp): the forward of Session::Impl::block_forward
// with every block's activations kept, then the backward of every layer. The
// activation backward follows backward.cpp (the MLP and attention sequences);
// what is added here are the weight gradients: the gains
// (rmsnorm_wgrad), the attention matrices, the non-prime MLPs, the head
// (xent_bwd_weights) and the embedding (embedding_bwd).
#include "lib/engine/full_gradient.hpp"

#include "host/gemm.hpp"
#include "lib/engine/full_gradient_impl.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace ttt {

using host::Trans;
using ops::mat;

namespace {

Config whole_document(Config c, int max_tokens) {
  c.mini_batch_size = max_tokens;  // one mini-batch: nothing carried, every key in the chunk
  return c;
}

EngineOptions no_ttt(int vocab_tile) {
  EngineOptions o;
  o.ttt = false;
  o.vocab_tile = vocab_tile;
  return o;
}

}  // namespace

FullGradient::Impl::Impl(Runtime& rt, const Config& cfg, int n, int vocab_tile)
    : c(cfg),
      max_tokens(n),
      shape(Model::random(whole_document(cfg, n), 0)),
      engine(rt, shape, no_ttt(vocab_tile)),
      session(engine, SessionOptions{}),
      e(impl_of(engine)),
      s(impl_of(session)) {
  const size_t R = size_t(n), D = size_t(c.hidden_size);
  auto alloc = [this](size_t floats, const char* what) {
    bytes += floats * sizeof(float);
    return Buffer(e.ctx, std::max<size_t>(floats, 1) * sizeof(float), what);
  };
  acts.resize(size_t(c.num_hidden_layers));
  for (int l = 0; l < c.num_hidden_layers; ++l) alloc_block_acts(acts[size_t(l)], R, c, c.has_prime(l), alloc);
  for (int i = 0; i < 3 * c.num_hidden_layers + 1; ++i) x.push_back(alloc(R * D, "residual stream"));
  if (!e.dm) alloc_backward_scratch(e, R, c, alloc);  // an engine without test-time training has none
  for (const DeviceTensor& d : e.table.device) grads.push_back(alloc(size_t(d.size()), "weight gradient"));
}

// The test-time steps of meta and meta-fo on `inner`, keeping a copy of the
// prime weights each mini-batch is scored with (copy c = W_c, before step c).
void FullGradient::Impl::inner_steps(const Model& m, std::span<const int32_t> tokens, double inner_lr,
                                     ref::ObjectiveResult& r) {
  if (!std::isfinite(inner_lr) || inner_lr < 0)
    throw Error(fmt::format("FullGradient: inner learning rate {} must be a finite number >= 0", inner_lr));
  const int T = int(tokens.size()) - 1, B = c.mini_batch_size;
  const int chunks = (max_tokens + B - 1) / B;
  if (!inner) {
    EngineOptions o;
    o.vocab_tile = e.opts.vocab_tile;
    inner = std::make_unique<Engine>(engine.runtime(), m, o);
    chunked.B = B;
    copies.resize(e.table.device.size());
    for (size_t i = 0; i < e.table.device.size(); ++i) {
      if (!e.table.device[i].trainable) continue;
      bytes += size_t(chunks) * size_t(e.table.device[i].size()) * sizeof(float);
      copies[i] = Buffer(e.ctx, size_t(chunks) * size_t(e.table.device[i].size()) * sizeof(float), "prime copies");
      chunked.copies[int(i)] = &copies[i];
    }
    per_copy.resize(copies.size());
  } else {
    Engine::Impl& ie = impl_of(*inner);
    for (size_t i = 0; i < ie.table.device.size(); ++i) ie.weights[i].upload(ie.table.pack(int(i), m));
  }
  SessionOptions so;
  so.ttt = true;
  so.inner_lr = float(inner_lr);
  Session ts(*inner, so);
  Session::Impl& ti = impl_of(ts);
  std::vector<float> nll(static_cast<size_t>(B));
  updated.clear();
  step_norms.clear();
  for (int r0 = 0, k = 0; r0 < T; r0 += B, ++k) {
    for (auto& [idx, buf] : chunked.copies) {
      const size_t bytes_one = size_t(e.table.device[size_t(idx)].size()) * sizeof(float);
      copies[size_t(idx)].copy_from(ti.live[size_t(idx)], bytes_one, 0, size_t(k) * bytes_one);
    }
    const int n = std::min(B, T - r0);
    ts.step(tokens.subspan(size_t(r0), size_t(n)), tokens.subspan(size_t(r0) + 1, size_t(n)),
            std::span<float>(nll).first(size_t(n)));
    updated.push_back(ts.last_step().updated);
    step_norms.push_back(ts.last_step().grad_norm);
    if (ts.last_step().updated) r.inner_norms.push_back(double(ts.last_step().grad_norm));
  }
}

void FullGradient::Impl::forward(int T) {
  ops::embedding_fwd(e.ctx, x[0], e.ids, s.w(e.wte), T, c.hidden_size);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    Buffer* b = &x[3 * size_t(l)];
    s.block_forward(l, acts[size_t(l)], b[0], b[1], b[2], b[3], T);
  }
  ops::rmsnorm_fwd(e.ctx, mat(e.hf, c.hidden_size), e.rsf, mat(x.back(), c.hidden_size), s.w(e.ln_f), nullptr, T, 1,
                   c.hidden_size, c.rms_norm_eps);
}

// d: dL/d(xout) on entry, dL/d(xin) on exit. backward.cpp's mlp_backward plus
// the gains' gradients, with the rows in runs that each multiply one weight
// copy: the whole document through the live weights, or, for meta-fo's prime
// MLPs, mini-batch c through copy c, the weight gradients summed over the copies
// (each copy is W_0 plus a constant).
void FullGradient::Impl::mlp_backward(const MlpIdx& wi, int pre, int post, MlpActs& a, Buffer& xin, Buffer& d, int T) {
  host::Context& ctx = e.ctx;
  const int D = c.hidden_size, I = c.intermediate_size;
  const bool by_copy = s.chunked && s.chunked->copies.count(wi.w13);
  const int run = by_copy ? s.chunked->B : T;
  const Buffer &w13 = by_copy ? *s.chunked->copies.at(wi.w13) : s.w(wi.w13),
               &w2 = by_copy ? *s.chunked->copies.at(wi.w2) : s.w(wi.w2);
  const size_t step13 = by_copy ? size_t(D) * 2 * I : 0, step2 = by_copy ? size_t(I) * D : 0;
  // Second order keeps each copy's gradient (the reverse sweep needs them one by one); else they are summed.
  const bool split = by_copy && second_order;
  Buffer &dw13 = split ? per_copy[size_t(wi.w13)] : g(wi.w13), &dw2 = split ? per_copy[size_t(wi.w2)] : g(wi.w2);
  ops::rmsnorm_wgrad(ctx, g(post), false, mat(d, D), mat(a.m, D), a.rs_post, T, 1, D, c.post_norm);
  ops::rmsnorm_bwd(ctx, mat(e.dm, D), false, mat(d, D), mat(a.m, D), s.w(post), a.rs_post, T, 1, D, c.post_norm);
  for (int r0 = 0, k = 0; r0 < T; r0 += run, ++k) {
    const size_t n = size_t(std::min(run, T - r0)), r = size_t(r0);
    host::gemm(ctx, Trans::T, Trans::N, I, D, n, 1.f, a.g, r * I, I, e.dm, r * D, D, k && !split ? 1.f : 0.f, dw2,
               split ? k * step2 : 0, D, "gemm_dw2");
    host::gemm(ctx, Trans::N, Trans::T, n, I, D, 1.f, e.dm, r * D, D, w2, k * step2, D, 0.f, e.dg, r * I, I,
               "gemm_dg");
  }
  ops::swiglu_bwd(ctx, e.dh13, e.dg, a.h13, T, I);
  for (int r0 = 0, k = 0; r0 < T; r0 += run, ++k) {
    const size_t n = size_t(std::min(run, T - r0)), r = size_t(r0);
    host::gemm(ctx, Trans::T, Trans::N, D, 2 * I, n, 1.f, a.hn, r * D, D, e.dh13, r * 2 * I, 2 * I,
               k && !split ? 1.f : 0.f, dw13, split ? k * step13 : 0, 2 * I, "gemm_dw13");
    host::gemm(ctx, Trans::N, Trans::T, n, D, 2 * I, 1.f, e.dh13, r * 2 * I, 2 * I, w13, k * step13, 2 * I, 0.f, e.dhn,
               r * D, D, "gemm_dhn");
  }
  ops::rmsnorm_bwd(ctx, mat(d, D), true, mat(e.dhn, D), mat(xin, D), s.w(pre), a.rs_pre, T, 1, D, c.pre_norm);
  ops::rmsnorm_wgrad(ctx, g(pre), false, mat(e.dhn, D), mat(xin, D), a.rs_pre, T, 1, D, c.pre_norm);
}

void FullGradient::Impl::block_backward(int l, int T) {
  host::Context& ctx = e.ctx;
  const BlockIdx& b = e.blocks[size_t(l)];
  BlockActs& a = acts[size_t(l)];
  Buffer* xs = &x[3 * size_t(l)];
  Buffer& d = e.dx;
  const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
  mlp_backward(b.mlp, b.ffn_norm, b.ffn_post_norm, a.ffn, xs[2], d, T);  // d = dL/dx2
  if (b.has_prime) {
    mlp_backward(b.prime, b.prime_norm, b.prime_post_norm, a.prime, xs[1], d, T);  // = dL/dx1
    if (second_order) second_order_sweep(l, d, T);
  }
  // Attention: x1 = x0 + RMSNorm(o Wo, seq_post_norm), as backward.cpp, plus the weights.
  ops::rmsnorm_wgrad(ctx, g(b.seq_post_norm), false, mat(d, D), mat(a.a, D), a.rs2, T, 1, D, c.post_norm);
  ops::rmsnorm_bwd(ctx, mat(e.dm, D), false, mat(d, D), mat(a.a, D), s.w(b.seq_post_norm), a.rs2, T, 1, D,
                   c.post_norm);
  host::gemm(ctx, Trans::T, Trans::N, D, D, T, 1.f, a.o, 0, D, e.dm, 0, D, 0.f, g(b.wo), 0, D, "gemm_dwo");
  host::gemm(ctx, Trans::N, Trans::T, T, D, D, 1.f, e.dm, 0, D, s.w(b.wo), 0, D, 0.f, e.dhn, 0, D, "gemm_do");
  const ops::AttnShape shape{T, H, E, e.C, e.W, 0};
  ops::attention_bwd(ctx, e.dqr, mat(e.dkr, D), mat(e.dqkv, 3 * D, 2 * D), e.dsum, e.dhn, a.o, a.qr, a.lse,
                     s.kc[size_t(l)], s.vc[size_t(l)], shape);
  ops::rope_bwd(ctx, mat(e.dqr, D), mat(e.dqr, D), e.cs, T, H, E);
  ops::rope_bwd(ctx, mat(e.dkr, D), mat(e.dkr, D), e.cs, T, H, E);
  ops::rmsnorm_wgrad(ctx, g(b.q_norm), false, mat(e.dqr, D), mat(a.qkv, 3 * D, 0), a.rq, T, H, E, c.qk_norm);
  ops::rmsnorm_wgrad(ctx, g(b.k_norm), false, mat(e.dkr, D), mat(a.qkv, 3 * D, D), a.rk, T, H, E, c.qk_norm);
  ops::rmsnorm_bwd(ctx, mat(e.dqkv, 3 * D, 0), false, mat(e.dqr, D), mat(a.qkv, 3 * D, 0), s.w(b.q_norm), a.rq, T, H,
                   E, c.qk_norm);
  ops::rmsnorm_bwd(ctx, mat(e.dqkv, 3 * D, D), false, mat(e.dkr, D), mat(a.qkv, 3 * D, D), s.w(b.k_norm), a.rk, T, H,
                   E, c.qk_norm);
  host::gemm(ctx, Trans::T, Trans::N, D, 3 * D, T, 1.f, a.hn1, 0, D, e.dqkv, 0, 3 * D, 0.f, g(b.wqkv), 0, 3 * D,
             "gemm_dwqkv");
  host::gemm(ctx, Trans::N, Trans::T, T, D, 3 * D, 1.f, e.dqkv, 0, 3 * D, s.w(b.wqkv), 0, 3 * D, 0.f, e.dhn, 0, D,
             "gemm_dhn");
  ops::rmsnorm_wgrad(ctx, g(b.seq_norm), false, mat(e.dhn, D), mat(xs[0], D), a.rs1, T, 1, D, c.pre_norm);
  ops::rmsnorm_bwd(ctx, mat(d, D), true, mat(e.dhn, D), mat(xs[0], D), s.w(b.seq_norm), a.rs1, T, 1, D,
                   c.pre_norm);  // d = dL/dx0
}

ref::ObjectiveResult FullGradient::Impl::run(const Model& m, std::span<const int32_t> tokens, ref::Objective o,
                                             double lr) {
  if (tokens.size() < 2 || tokens.size() > size_t(max_tokens) + 1)
    throw Error(fmt::format("FullGradient: {} tokens; a document needs 2..{} (max_tokens + 1)", tokens.size(),
                            max_tokens + 1));
  if (m.config.to_json() != c.to_json())
    throw Error("FullGradient: the model's config is not the one the gradient was made for");
  const int T = int(tokens.size()) - 1, D = c.hidden_size;
  check_token_ids(tokens, c.vocab_size, "FullGradient document");
  ref::ObjectiveResult r;
  s.chunked = nullptr;
  second_order = false;
  if (o != ref::Objective::pretrain && c.num_prime_blocks() > 0) {
    if (const std::string why = device_objective_limit(c, o); !why.empty())
      throw Error("FullGradient: " + why + ": use the reference gradient");
    inner_steps(m, tokens, lr, r);
    s.chunked = &chunked;
    second_order = o == ref::Objective::meta;
    inner_lr = lr;
    if (second_order)
      for (auto& [idx, buf] : chunked.copies)
        if (!per_copy[size_t(idx)]) {
          per_copy[size_t(idx)] = Buffer(e.ctx, buf->bytes(), "prime gradient per copy");
          bytes += buf->bytes();
        }
  }
  // Weights: the engine's copies, then the session's live copies of the trainable ones.
  for (size_t i = 0; i < e.table.device.size(); ++i) e.weights[i].upload(e.table.pack(int(i), m));
  session.reset();
  h_ids.assign(tokens.begin(), tokens.end() - 1);
  h_targets.assign(tokens.begin() + 1, tokens.end());
  h_cs = ops::rope_table(0, T, c.head_dim(), double(c.rope_theta));
  e.ids.write(h_ids.data(), size_t(T) * 4, 0, false);
  e.targets.write(h_targets.data(), size_t(T) * 4, 0, false);
  e.cs.write(h_cs.data(), h_cs.size() * 4, 0, false);
  s.fwd_pos = 0;
  e.owner = &s;  // the engine's scratch now holds this forward
  ++e.forwards;
  forward(T);
  size_t count = 0;
  for (int32_t t : h_targets) count += t != c.bos_token_id;
  const float inv_count = count ? 1.f / float(count) : 0.f;
  const bool tied = c.tie_word_embeddings;
  ops::xent(e.ctx, e.xent, e.nll, nullptr, e.hf, s.w(e.head), tied, e.targets, T, D, c.vocab_size, c.bos_token_id,
            inv_count);
  // Head (and, tied, the embedding's first part), then the final norm.
  ops::xent_bwd_weights(e.ctx, e.xent, e.dhf, g(e.head), e.hf, s.w(e.head), tied, e.targets, T, D, c.vocab_size,
                        c.bos_token_id, inv_count);
  ops::rmsnorm_wgrad(e.ctx, g(e.ln_f), false, mat(e.dhf, D), mat(x.back(), D), e.rsf, T, 1, D);
  ops::rmsnorm_bwd(e.ctx, mat(e.dx, D), false, mat(e.dhf, D), mat(x.back(), D), s.w(e.ln_f), e.rsf, T, 1, D);
  for (int l = c.num_hidden_layers - 1; l >= 0; --l) block_backward(l, T);
  if (!tied) g(e.wte).zero();
  ops::embedding_bwd(e.ctx, g(e.wte), e.dx, e.ids, T, D);
  h_nll.resize(size_t(T));
  e.nll.read(h_nll.data(), size_t(T) * sizeof(float), 0, true);

  s.chunked = nullptr;
  second_order = false;
  r.scored = count;
  double sum = 0;
  for (int t = 0; t < T; ++t)
    if (h_targets[size_t(t)] != c.bos_token_id) sum += double(h_nll[size_t(t)]);
  r.loss = count ? sum / double(count) : 0.0;
  Model gm = shape;
  gm.config = c;
  for (size_t i = 0; i < grads.size(); ++i)
    e.table.unpack(int(i), grads[i].download<float>(size_t(e.table.device[i].size())), gm);
  for (const ParamSpec& p : e.table.params) {
    const std::vector<float>& v = p.host(gm);
    r.grads.emplace_back(v.begin(), v.end());
  }
  return r;
}

std::string device_objective_limit(const Config& c, ref::Objective o) {
  if (o != ref::Objective::meta || c.num_prime_blocks() <= 1) return "";
  return fmt::format(
      "the device's meta gradient (second order) covers models with one prime block (suffix_len 1); this config "
      "has suffix_len {}, whose prime MLPs feed later blocks' attention (its double backward is not on the device "
      "yet)",
      c.num_prime_blocks());
}

FullGradient::FullGradient(Runtime& rt, const Config& c, int max_tokens, int vocab_tile) {
  if (max_tokens < 1) throw Error(fmt::format("FullGradient: max_tokens {} must be >= 1", max_tokens));
  impl_ = std::make_unique<Impl>(rt, c, max_tokens, vocab_tile);
}
FullGradient::~FullGradient() = default;

ref::ObjectiveResult FullGradient::pretrain(const Model& m, std::span<const int32_t> tokens) {
  return impl_->run(m, tokens, ref::Objective::pretrain, 0.0);
}

ref::ObjectiveResult FullGradient::meta_fo(const Model& m, std::span<const int32_t> tokens, double inner_lr) {
  return impl_->run(m, tokens, ref::Objective::meta_fo, inner_lr);
}

ref::ObjectiveResult FullGradient::objective(const Model& m, std::span<const int32_t> tokens, ref::Objective o,
                                             double inner_lr) {
  return impl_->run(m, tokens, o, inner_lr);
}

size_t FullGradient::device_bytes() const {
  return impl_->bytes + impl_->engine.device_bytes() + (impl_->inner ? impl_->inner->device_bytes() : 0);
}

}  // namespace ttt
