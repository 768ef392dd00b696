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
  const char* tiles_env = std::getenv("TTT_HEAD_TILES");  // "on": keep them (V x D floats more, for speed)
  if (dtype(head) == DType::F32 && host::gemm_plan(ctx).col_major && tiles_env && std::string(tiles_env) == "on")
    head_tiles = alloc(size_t(c.vocab_size) * c.hidden_size, "output embedding in logits tiles");
  for (size_t i = 0; i < table.device.size(); ++i) {
    const DeviceTensor& d = table.device[i];
    weights.push_back(alloc_bytes(d.bytes(), d.name.c_str()));
    upload_tensor(i, m);
    if (d.dtype != DType::F32 && int(i) != wte && int(i) != head) widest = std::max(widest, size_t(d.size()));
  }
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

void alloc_block_acts(BlockActs& a, size_t R, const Config& c, bool prime,
                      const std::function<Buffer(size_t, const char*)>& alloc) {
  const size_t D = size_t(c.hidden_size), H = size_t(c.num_attention_heads);
  a.hn1 = alloc(R * D, "hn1");
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
  alloc_mlp_acts(a.ffn, R, c, alloc);
  if (prime) alloc_mlp_acts(a.prime, R, c, alloc);
}

void alloc_mlp_acts(MlpActs& m, size_t R, const Config& c, const std::function<Buffer(size_t, const char*)>& alloc) {
  const size_t D = size_t(c.hidden_size), I = size_t(c.intermediate_size);
  m.hn = alloc(R * D, "mlp hn");
  m.rs_pre = alloc(R, "mlp rstd pre");
  m.h13 = alloc(R * 2 * I, "mlp h13");
  m.g = alloc(R * I, "mlp g");
  m.m = alloc(R * D, "mlp out");
  m.rs_post = alloc(R, "mlp rstd post");
}

void Engine::Impl::alloc_acts(BlockActs& a, bool prime) {
  alloc_block_acts(a, size_t(B), c, prime, [this](size_t n, const char* what) { return alloc(n, what); });
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
  upload(m);
  alloc_acts(shared, c.num_prime_blocks() > 0);
  const int S = can_train() ? c.num_prime_blocks() : 0;
  suffix.resize(size_t(S));
  for (auto& a : suffix) alloc_acts(a, true);
  for (int i = 0; i < 1 + 3 * S; ++i) stream.b.push_back(alloc(size_t(B) * D, "residual stream"));
  ids = alloc(size_t(B), "input ids");
  targets = alloc(size_t(B), "target ids");
  cs = alloc(size_t(B) * E, "rope table");
  nll = alloc(size_t(B), "nll");
  hf = alloc(size_t(B) * D, "final norm");
  rsf = alloc(size_t(B), "final rstd");
  const int tile = std::min(opts.vocab_tile, c.vocab_size);
  xent = ops::XentScratch(ctx, B, int(D), tile);
  bytes += (size_t(B) * tile + 3 * size_t(B) + size_t(B) * D) * sizeof(float);
  if (dtype(head) != DType::F32) xent.wide = alloc(size_t(tile) * D, "xent widened head tile");
  if (S > 0)
    alloc_backward_scratch(*this, size_t(B), c, [this](size_t n, const char* what) { return alloc(n, what); });
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
DType Engine::weight_dtype() const { return impl_->dtype(impl_->wte); }
DType Engine::kv_dtype() const { return impl_->opts.kv_dtype; }

Session& Engine::session() { return *own_; }

void set_matvec(Engine& engine, MatVec m) { impl_of(engine).matvec = m; }

}  // namespace ttt
