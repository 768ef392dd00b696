// Engine set-up (device weights, rings, activations), the per-mini-batch step
// with its checks, whole-document evaluation and prime weight download.
#include "lib/engine/impl.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ttt {

void check_token_ids(std::span<const int32_t> ids, int vocab, const std::string& origin) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw Error(fmt::format("{}: token id {} at position {} is outside the model's vocabulary (0..{})", origin, ids[i],
                              i, vocab - 1));
}

Buffer Engine::Impl::alloc(size_t floats, const char* what) {
  bytes += floats * sizeof(float);
  return Buffer(ctx, floats * sizeof(float), what);
}

namespace {

Buffer upload_vec(Engine::Impl& e, const std::vector<float>& v, const char* what) {
  Buffer b = e.alloc(std::max<size_t>(v.size(), 1), what);
  b.write(v.data(), v.size() * sizeof(float));
  return b;
}

// [A | B] row by row: A (rows, na), B (rows, nb) -> (rows, na + nb).
std::vector<float> hcat(const std::vector<const std::vector<float>*>& parts, size_t rows) {
  size_t width = 0;
  for (auto* p : parts) width += p->size() / rows;
  std::vector<float> out(rows * width);
  for (size_t r = 0; r < rows; ++r) {
    size_t col = 0;
    for (auto* p : parts) {
      const size_t w = p->size() / rows;
      std::copy_n(p->data() + r * w, w, out.data() + r * width + col);
      col += w;
    }
  }
  return out;
}

}  // namespace

void Engine::Impl::upload(const Model& m) {
  const size_t D = size_t(c.hidden_size);
  wte = upload_vec(*this, m.wte, "wte");
  ln_f = upload_vec(*this, m.ln_f, "ln_f");
  if (!c.tie_word_embeddings) lm_head = upload_vec(*this, m.lm_head, "lm_head");
  const std::vector<float> ones(size_t(c.head_dim()), 1.f);
  for (const BlockWeights& bw : m.blocks) {
    DevBlock b;
    b.seq_norm = upload_vec(*this, bw.seq_norm, "seq_norm");
    b.seq_post_norm = upload_vec(*this, bw.seq_post_norm, "seq_post_norm");
    b.ffn_norm = upload_vec(*this, bw.ffn_norm, "ffn_norm");
    b.ffn_post_norm = upload_vec(*this, bw.ffn_post_norm, "ffn_post_norm");
    b.q_norm = upload_vec(*this, c.qk_norm ? bw.q_norm : ones, "q_norm");
    b.k_norm = upload_vec(*this, c.qk_norm ? bw.k_norm : ones, "k_norm");
    b.wqkv = upload_vec(*this, hcat({&bw.wq, &bw.wk, &bw.wv}, D), "wqkv");
    b.wo = upload_vec(*this, bw.wo, "wo");
    b.mlp.w13 = upload_vec(*this, hcat({&bw.mlp.w1, &bw.mlp.w3}, D), "mlp w13");
    b.mlp.w2 = upload_vec(*this, bw.mlp.w2, "mlp w2");
    b.has_prime = bw.has_prime;
    if (b.has_prime) {
      b.prime_norm = upload_vec(*this, bw.prime_norm, "prime_norm");
      b.prime_post_norm = upload_vec(*this, bw.prime_post_norm, "prime_post_norm");
      b.prime_init.w13 = upload_vec(*this, hcat({&bw.prime.w1, &bw.prime.w3}, D), "prime w13 (initial)");
      b.prime_init.w2 = upload_vec(*this, bw.prime.w2, "prime w2 (initial)");
      b.prime.w13 = alloc(b.prime_init.w13.bytes() / 4, "prime w13");
      b.prime.w2 = alloc(b.prime_init.w2.bytes() / 4, "prime w2");
    }
    b.kc = alloc(size_t(C) * D, "key ring");
    b.vc = alloc(size_t(C) * D, "value ring");
    blocks.push_back(std::move(b));
  }
}

void Engine::Impl::alloc_acts(BlockActs& a, bool prime) {
  const size_t T = size_t(B), D = size_t(c.hidden_size), H = size_t(c.num_attention_heads),
               I = size_t(c.intermediate_size);
  a.hn1 = alloc(T * D, "hn1");
  a.rs1 = alloc(T, "rstd1");
  a.qkv = alloc(T * 3 * D, "qkv");
  a.rq = alloc(T * H, "q rstd");
  a.rk = alloc(T * H, "k rstd");
  a.qr = alloc(T * D, "q");
  a.kr = alloc(T * D, "k");
  a.o = alloc(T * D, "attention out");
  a.lse = alloc(T * H, "lse");
  a.a = alloc(T * D, "attention proj");
  a.rs2 = alloc(T, "rstd2");
  for (MlpActs* m : {&a.ffn, &a.prime}) {
    if (m == &a.prime && !prime) break;
    m->hn = alloc(T * D, "mlp hn");
    m->rs_pre = alloc(T, "mlp rstd pre");
    m->h13 = alloc(T * 2 * I, "mlp h13");
    m->g = alloc(T * I, "mlp g");
    m->m = alloc(T * D, "mlp out");
    m->rs_post = alloc(T, "mlp rstd post");
  }
}

Engine::Impl::Impl(host::Context& ctx_, const Model& m, EngineOptions o) : ctx(ctx_), c(m.config), opts(o) {
  c.validate("model config");
  lr = opts.inner_lr.value_or(c.inner_lr);
  if (!std::isfinite(lr) || lr < 0) throw Error(fmt::format("inner learning rate {} must be a finite number >= 0", lr));
  if (opts.vocab_tile < 1) throw Error("vocab_tile must be >= 1");
  B = c.mini_batch_size;
  C = c.sliding_window_size + B - 1;
  const size_t D = size_t(c.hidden_size), H = size_t(c.num_attention_heads), I = size_t(c.intermediate_size),
               E = size_t(c.head_dim());
  upload(m);
  const bool prime_any = c.num_prime_blocks() > 0;
  alloc_acts(shared, prime_any);
  const int S = trains() ? c.num_prime_blocks() : 0;
  suffix.resize(size_t(S));
  for (auto& a : suffix) alloc_acts(a, true);
  for (int i = 0; i < 1 + 3 * S; ++i) stream.push_back(alloc(size_t(B) * D, "residual stream"));
  ids = alloc(size_t(B), "input ids");
  targets = alloc(size_t(B), "target ids");
  cs = alloc(size_t(B) * E, "rope table");
  nll = alloc(size_t(B), "nll");
  hf = alloc(size_t(B) * D, "final norm");
  rsf = alloc(size_t(B), "final rstd");
  const int tile = std::min(opts.vocab_tile, c.vocab_size);
  xent = ops::XentScratch(ctx, B, int(D), tile);
  bytes += (size_t(B) * tile + 3 * size_t(B) + size_t(B) * D) * sizeof(float);
  if (S > 0) {
    const size_t T = size_t(B);
    dx = alloc(T * D, "dx");
    dhf = alloc(T * D, "dhf");
    dm = alloc(T * D, "dm");
    dg = alloc(T * I, "dg");
    dh13 = alloc(T * 2 * I, "dh13");
    dhn = alloc(T * D, "dhn");
    dqkv = alloc(T * 3 * D, "dqkv");
    dqr = alloc(T * D, "dq");
    dkr = alloc(T * D, "dk");
    dsum = alloc(T * H, "attention dsum");
    for (int j = 0; j < S; ++j) {
      DevMlp g;
      g.w13 = alloc(D * 2 * I, "prime grad w13");
      g.w2 = alloc(I * D, "prime grad w2");
      grads.push_back(std::move(g));
    }
    partial = alloc(size_t(ops::sgd_partials(2 * S)), "norm partials");
    gstats = alloc(3, "grad stats");
    wstats = alloc(3, "weight stats");
  }
}

Engine::Engine(host::Context& ctx, const Model& model, EngineOptions opts)
    : impl_(std::make_unique<Impl>(ctx, model, opts)) {
  ops::prepare_kernels(ctx, impl_->c.head_dim());
  reset();
}

Engine::~Engine() = default;

const Config& Engine::config() const { return impl_->c; }
bool Engine::ttt() const { return impl_->opts.ttt; }
float Engine::inner_lr() const { return impl_->lr; }
int64_t Engine::position() const { return impl_->pos; }
const StepInfo& Engine::last_step() const { return impl_->info; }
size_t Engine::device_bytes() const { return impl_->bytes; }

void Engine::reset() {
  Impl& s = *impl_;
  s.pos = 0;
  s.chunk = 0;
  s.info = {};
  for (auto& b : s.blocks) {
    // Ring rows are always written before any query can see them; zeroing
    // just keeps stale numbers of an earlier document out of reach.
    b.kc.zero();
    b.vc.zero();
    if (b.has_prime) {
      b.prime.w13.copy_from(b.prime_init.w13, b.prime_init.w13.bytes());
      b.prime.w2.copy_from(b.prime_init.w2, b.prime_init.w2.bytes());
    }
  }
  s.ctx.finish();
}

void Engine::step(const int32_t* inputs, const int32_t* targets, int n, float* nll_out) {
  Impl& s = *impl_;
  if (n < 1 || n > s.B) throw Error(fmt::format("Engine::step: {} tokens, expected 1..{} (the mini-batch size)", n, s.B));
  check_token_ids({inputs, size_t(n)}, s.c.vocab_size, fmt::format("mini-batch {} inputs", s.chunk));
  check_token_ids({targets, size_t(n)}, s.c.vocab_size, fmt::format("mini-batch {} targets", s.chunk));
  const bool update = s.trains() && n == s.B;
  s.h_ids.assign(inputs, inputs + n);
  s.h_targets.assign(targets, targets + n);
  s.h_cs = ops::rope_table(s.pos, n, s.c.head_dim(), double(s.c.rope_theta));
  s.ids.write(s.h_ids.data(), size_t(n) * 4, 0, false);
  s.targets.write(s.h_targets.data(), size_t(n) * 4, 0, false);
  s.cs.write(s.h_cs.data(), s.h_cs.size() * 4, 0, false);

  Buffer& xL = s.forward(n, update);
  ops::rmsnorm_fwd(s.ctx, ops::mat(s.hf, s.c.hidden_size), s.rsf, ops::mat(xL, s.c.hidden_size), s.ln_f, nullptr, n,
                   1, s.c.hidden_size, s.c.rms_norm_eps);
  int count = 0;
  for (int i = 0; i < n; ++i) count += targets[i] != s.c.bos_token_id;
  const float inv_count = count ? 1.f / float(count) : 0.f;
  const Buffer& W = s.c.tie_word_embeddings ? s.wte : s.lm_head;
  ops::xent(s.ctx, s.xent, s.nll, update ? &s.dhf : nullptr, s.hf, W, s.c.tie_word_embeddings, s.targets, n,
            s.c.hidden_size, s.c.vocab_size, s.c.bos_token_id, inv_count);
  if (update) {
    s.backward(xL, n);
    s.update();
  }
  s.nll.read(nll_out, size_t(n) * sizeof(float));  // blocks until the whole step is done

  const int64_t c0 = s.pos;
  for (int i = 0; i < n; ++i)
    if (!std::isfinite(nll_out[i]))
      throw Error(fmt::format("mini-batch {} (positions {}..{}): non-finite loss ({}) at position {}; stopping", s.chunk,
                              c0, c0 + n - 1, nll_out[i], c0 + i));
  s.info = {s.chunk, update, 0.f, 0.f};
  if (update) {
    float g[3], w[3];
    s.gstats.read(g, sizeof g);
    s.wstats.read(w, sizeof w);
    if (g[2] == 0.f)
      throw Error(fmt::format("mini-batch {} (positions {}..{}): non-finite gradient norm ({}); the prime weights were "
                              "left as they were; stopping",
                              s.chunk, c0, c0 + n - 1, g[0]));
    if (w[2] == 0.f)
      throw Error(fmt::format("mini-batch {} (positions {}..{}): the update made a prime weight non-finite; stopping",
                              s.chunk, c0, c0 + n - 1));
    s.info.grad_norm = g[0];
    s.info.weight_norm = w[0];
  }
  s.pos += n;
  ++s.chunk;
}

std::vector<float> Engine::evaluate(std::span<const int32_t> tokens, const std::function<void(size_t, size_t)>& progress) {
  if (tokens.size() < 2) throw Error(fmt::format("a document needs at least 2 tokens to score, got {}", tokens.size()));
  check_token_ids(tokens, impl_->c.vocab_size, "document");
  reset();
  const size_t n_pred = tokens.size() - 1, B = size_t(impl_->B);
  std::vector<float> out(n_pred);
  for (size_t s = 0; s < n_pred; s += B) {
    const size_t n = std::min(B, n_pred - s);
    step(tokens.data() + s, tokens.data() + s + 1, int(n), out.data() + s);
    if (progress) progress(s + n, n_pred);
  }
  return out;
}

void Engine::download_prime(Model& m) const {
  const Impl& s = *impl_;
  const size_t D = size_t(s.c.hidden_size), I = size_t(s.c.intermediate_size);
  for (size_t l = 0; l < s.blocks.size(); ++l) {
    if (!s.blocks[l].has_prime) continue;
    auto w13 = s.blocks[l].prime.w13.download<float>(D * 2 * I);
    MlpWeights& p = m.blocks[l].prime;
    p.w1.resize(D * I);
    p.w3.resize(D * I);
    for (size_t d = 0; d < D; ++d) {
      std::copy_n(w13.data() + d * 2 * I, I, p.w1.data() + d * I);
      std::copy_n(w13.data() + d * 2 * I + I, I, p.w3.data() + d * I);
    }
    p.w2 = s.blocks[l].prime.w2.download<float>(I * D);
    for (auto* v : {&p.w1, &p.w3, &p.w2})
      for (float x : *v)
        if (!std::isfinite(x)) throw Error(fmt::format("block {}: adapted prime weights hold a non-finite value", l));
  }
}

}  // namespace ttt
