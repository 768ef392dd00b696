// The Engine: device weights uploaded through the parameter table, the scratch
// of one mini-batch shared by every session, and the engine's own session.
#include "lib/engine/impl.hpp"

#include "host/gemm.hpp"
#include "host/runtime.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>

namespace ttt {

void check_token_ids(std::span<const int32_t> ids, int vocab, const std::string& origin) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw Error(fmt::format("{}: token id {} at position {} is outside the model's vocabulary (0..{})", origin, ids[i],
                              i, vocab - 1));
}

Buffer Engine::Impl::alloc(size_t floats, const char* what) { return alloc_bytes(floats * sizeof(float), what); }

Buffer Engine::Impl::alloc_bytes(size_t n, const char* what) {
  bytes += n;
  parts[part] += n;
  return Buffer(ctx, std::max<size_t>(n, 1), what);
}

void Engine::Impl::upload_tensor(size_t i, const Model& m) {
  const std::vector<uint8_t> data = table.pack_stored(int(i), m);
  weights[i].write(data.data(), data.size());
  if (int(i) != head || !head_tiles) return;
  // head_tiles: tile by tile, (D, nv) = the tile's rows of wte (V, D) transposed, or its columns of lm_head (D, V).
  const int V = c.vocab_size, D = c.hidden_size, tile = std::min(opts.vocab_tile, c.vocab_size);
  std::vector<float> t(size_t(tile) * D);
  for (int v0 = 0; v0 < V; v0 += tile) {
    const int nv = std::min(tile, V - v0);
    ops::logits_tile_layout(t.data(), reinterpret_cast<const float*>(data.data()), c.tie_word_embeddings, V, D, v0, nv);
    head_tiles.write(t.data(), size_t(nv) * D * sizeof(float), size_t(v0) * D * sizeof(float));
  }
}

void Engine::Impl::upload(const Model& m) {
  table.store_weights(opts.weight_dtype.value_or(m.dtype));
  wte = table.device_index("wte");
  ln_f = table.device_index("ln_f");
  head = c.tie_word_embeddings ? wte : table.device_index("lm_head");
  size_t widest = 0;  // floats of the largest 16-bit weight a block's GEMM reads
  part = "head tiles";
  const bool tiles = host::env_switch("TTT_HEAD_TILES").value_or(opts.head_tiles);  // V x D floats more, for speed
  if (tiles && dtype(head) == DType::F32 && host::gemm_plan(ctx).col_major)
    head_tiles = alloc(size_t(c.vocab_size) * c.hidden_size, "output embedding in logits tiles");
  part = "weights";
  for (size_t i = 0; i < table.device.size(); ++i) {
    const DeviceTensor& d = table.device[i];
    weights.push_back(alloc_bytes(d.bytes(), d.name.c_str()));
    upload_tensor(i, m);
    if (d.dtype != DType::F32 && int(i) != wte && int(i) != head) widest = std::max(widest, size_t(d.size()));
  }
  // The loss's sweep widens a tile of a 16-bit head into the same scratch (Impl::wide).
  const size_t tile = size_t(std::min(opts.vocab_tile, c.vocab_size));
  if (dtype(head) != DType::F32) widest = std::max(widest, tile * size_t(c.hidden_size));
  part = "widening scratch";
  if (widest) wide = alloc(widest, "widened weight");
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("blocks.{}.", l);
    auto idx = [&](const char* n) { return table.device_index(p + n); };
    BlockIdx b;
    b.seq_norm = idx("seq_norm");
    b.seq_post_norm = idx("seq_post_norm");
    b.ffn_norm = idx("ffn_norm");
    b.ffn_post_norm = idx("ffn_post_norm");
    b.q_norm = idx("attn.q_norm");
    b.k_norm = idx("attn.k_norm");
    b.wqkv = idx("attn.wqkv");
    b.wo = idx("attn.wo");
    b.mlp = {idx("mlp.w13"), idx("mlp.w2")};
    b.has_prime = c.has_prime(l);
    if (b.has_prime) {
      b.prime_norm = idx("prime_norm");
      b.prime_post_norm = idx("prime_post_norm");
      b.prime = {idx("prime.w13"), idx("prime.w2")};
    }
    blocks.push_back(b);
  }
}

void alloc_block_acts(BlockActs& a, size_t R, const Config& c, bool prime, const Alloc& alloc,
                      const ForwardOnly* f) {
  const size_t D = size_t(c.hidden_size), H = size_t(c.num_attention_heads);
  a.hn1 = f ? f->hn.view(0, R * D * sizeof(float), "hn1") : alloc(R * D, "hn1");
  a.recompute = f != nullptr;
  a.rs1 = alloc(R, "rstd1");
  a.qkv = alloc(R * 3 * D, "qkv");
  a.rq = alloc(R * H, "q rstd");
  a.rk = alloc(R * H, "k rstd");
  a.qr = alloc(R * D, "q");
  a.kr = alloc(R * D, "k");
  a.o = alloc(R * D, "attention out");
  a.lse = alloc(R * H, "lse");
  a.a = alloc(R * D, "attention proj");
  a.rs2 = alloc(R, "rstd2");
  alloc_mlp_acts(a.ffn, R, c, alloc, f);
  if (prime) alloc_mlp_acts(a.prime, R, c, alloc, f);
}

void alloc_mlp_acts(MlpActs& m, size_t R, const Config& c, const Alloc& alloc, const ForwardOnly* f) {
  const size_t D = size_t(c.hidden_size), I = size_t(c.intermediate_size);
  m.hn = f ? f->hn.view(0, R * D * sizeof(float), "mlp hn") : alloc(R * D, "mlp hn");
  m.rs_pre = alloc(R, "mlp rstd pre");
  m.h13 = alloc(R * 2 * I, "mlp h13");
  m.g = f ? f->g.view(0, R * I * sizeof(float), "mlp g") : alloc(R * I, "mlp g");
  m.m = alloc(R * D, "mlp out");
  m.rs_post = alloc(R, "mlp rstd post");
  m.recompute = f != nullptr;
}

void alloc_forward_only(ForwardOnly& f, size_t R, const Config& c, const Alloc& alloc) {
  f.hn = alloc(R * size_t(c.hidden_size), "normed inputs");
  f.g = alloc(R * size_t(c.intermediate_size), "gates");
}

// Blocks whose activations are not kept share one set (block::stream_io):
//   - with kept sets, the first kept set itself, so `shared` stays empty. A
//     step-taking forward runs every block that shares it (those below the
//     first prime block) before the first prime block writes its kept set, and
//     its backward never reads theirs (it stops at the first prime block); a
//     forward that takes no step keeps nothing.
//   - without (sessions that do not train), a set with no prime MLP activations
//     of its own: a prime block runs its prime MLP in the MLP's (block_fwd).
//     The prime MLP's activations are dead once its output has joined the
//     residual stream, before the MLP writes its own, and nothing reads them later.
void alloc_shared_acts(BlockActs& shared, std::vector<BlockActs>& suffix, size_t R, const Config& c,
                       const Alloc& alloc, const ForwardOnly* f) {
  if (suffix.empty()) alloc_block_acts(shared, R, c, false, alloc, f);
}

Carver::Carver(std::vector<const Buffer*> regions, size_t align, Alloc alloc)
    : regions_(std::move(regions)), used_(regions_.size(), 0), align_(std::max<size_t>(align, 1)),
      alloc_(std::move(alloc)) {}

Buffer Carver::take(size_t floats, const char* what) {
  const size_t n = std::max<size_t>(floats, 1) * sizeof(float);
  for (size_t i = 0; i < regions_.size(); ++i) {
    const size_t at = (used_[i] + align_ - 1) / align_ * align_;
    if (at + n > regions_[i]->bytes()) continue;
    used_[i] = at + n;
    return regions_[i]->view(at, n, what);
  }
  return alloc_(floats, what);
}

std::vector<const Buffer*> dead_during_backward(const ops::XentScratch& xent, const BlockActs& first) {
  return {&xent.logits, &xent.U, &first.qkv, &first.qr, &first.kr, &first.o, &first.a};
}

void Engine::Impl::alloc_acts(BlockActs& a, bool prime) {
  alloc_block_acts(a, size_t(B), c, prime, [this](size_t n, const char* what) { return alloc(n, what); }, &fwd_only);
}

Engine::Impl::Impl(host::Context& ctx_, const Model& m, EngineOptions o)
    : ctx(ctx_), c(m.config), opts(o), table(param_table(m.config)) {
  c.validate("model config");
  lr = opts.inner_lr.value_or(c.inner_lr);
  if (!std::isfinite(lr) || lr < 0) throw Error(fmt::format("inner learning rate {} must be a finite number >= 0", lr));
  if (opts.vocab_tile < 1) throw Error("vocab_tile must be >= 1");
  if (opts.kv_dtype != DType::F32 && opts.kv_dtype != DType::F16)
    throw Error(fmt::format("key/value rings stored as {}: give f32 or f16", dtype_name(opts.kv_dtype)));
  if (opts.window < 0) throw Error(fmt::format("attention window {} must be >= 0 (0: the model's)", opts.window));
  B = c.mini_batch_size;
  W = opts.window ? opts.window : c.sliding_window_size;
  if (int64_t(W) + B - 1 > INT32_MAX) throw Error(fmt::format("attention window {} is too long", W));
  C = W + B - 1;
  const size_t D = size_t(c.hidden_size), E = size_t(c.head_dim());
  host::set_gemm_views(ctx, opts.gemm_views);  // the context's, for every GEMM on it from here on
  upload(m);
  const int S = can_train() ? c.num_prime_blocks() : 0;
  suffix.resize(size_t(S));
  part = "activations";
  const Alloc fresh = [this](size_t n, const char* what) { return alloc(n, what); };
  alloc_forward_only(fwd_only, size_t(B), c, fresh);
  for (auto& a : suffix) alloc_acts(a, true);
  alloc_shared_acts(shared, suffix, size_t(B), c, fresh, &fwd_only);
  part = "residual streams";
  for (int i = 0; i < 1 + 3 * S; ++i) stream.b.push_back(alloc(size_t(B) * D, "residual stream"));
  part = "loss and inputs";
  ids = alloc(size_t(B), "input ids");
  targets = alloc(size_t(B), "target ids");
  cs = alloc(size_t(B) * E, "rope table");
  nll = alloc(size_t(B), "nll");
  hf = alloc(size_t(B) * D, "final norm");
  rsf = alloc(size_t(B), "final rstd");
  const int tile = std::min(opts.vocab_tile, c.vocab_size);
  xent = ops::XentScratch(ctx, B, int(D), tile);
  const size_t xent_bytes = (size_t(B) * tile + 3 * size_t(B) + size_t(B) * D) * sizeof(float);
  bytes += xent_bytes;
  parts[part] += xent_bytes;
  if (dtype(head) != DType::F32) xent.wide = wide.view(0, size_t(tile) * D * sizeof(float), "xent widened head tile");
  if (S > 0) {
    part = "backward scratch";
    Carver dead(dead_during_backward(xent, suffix.front()), Buffer::view_align(ctx), fresh);
    alloc_backward_scratch(*this, size_t(B), c, fresh, [&dead](size_t n, const char* what) { return dead.take(n, what); });
  }
  part = "other";
}

SessionSettings resolve(const Engine::Impl& e, const SessionOptions& o) {
  SessionSettings r;
  r.ttt = o.ttt.value_or(e.opts.ttt) && e.c.num_prime_blocks() > 0;
  r.lr = o.inner_lr.value_or(e.lr);
  if (!std::isfinite(r.lr) || r.lr < 0)
    throw Error(fmt::format("inner learning rate {} must be a finite number >= 0", r.lr));
  if (r.ttt && !e.can_train())
    throw Error("a session with test-time training needs an engine created with test-time training on");
  return r;
}

Engine::Engine(Runtime& runtime, const Model& model, EngineOptions opts)
    : runtime_(&runtime), impl_(std::make_unique<Impl>(host::context(runtime), model, opts)) {
  ops::KernelPlan plan{impl_->c.head_dim(), impl_->c.num_attention_heads, impl_->opts.kv_dtype, {}};
  for (const DeviceTensor& d : impl_->table.device)
    if (std::find(plan.weights.begin(), plan.weights.end(), d.dtype) == plan.weights.end()) plan.weights.push_back(d.dtype);
  ops::prepare_kernels(impl_->ctx, plan);
  own_ = std::make_unique<Session>(*this);
  impl_->per_session = own_->device_bytes();
}

Engine::~Engine() = default;

const Config& Engine::config() const { return impl_->c; }
Runtime& Engine::runtime() const { return *runtime_; }
bool Engine::ttt() const { return impl_->opts.ttt; }
float Engine::inner_lr() const { return impl_->lr; }
int Engine::window() const { return impl_->W; }
size_t Engine::device_bytes() const { return impl_->bytes + own_->device_bytes(); }
size_t Engine::session_bytes() const { return impl_->per_session; }
size_t Engine::weight_bytes() const { return impl_->table.device_bytes(); }

std::vector<std::pair<std::string, size_t>> device_parts(const Engine& engine) {
  const Engine::Impl& e = impl_of(engine);
  std::vector<std::pair<std::string, size_t>> out(e.parts.begin(), e.parts.end());
  for (const auto& [name, n] : impl_of(const_cast<Engine&>(engine).session()).parts) out.emplace_back("session " + name, n);
  return out;
}
DType Engine::weight_dtype() const { return impl_->dtype(impl_->wte); }
DType Engine::kv_dtype() const { return impl_->opts.kv_dtype; }

Session& Engine::session() { return *own_; }

void set_matvec(Engine& engine, MatVec m) { impl_of(engine).matvec = m; }

}  // namespace ttt
