// A Session: one document's state on an engine (position, key/value rings,
// live prime weights and gradients) and the phases of a mini-batch: forward,
// score, logits, train and sync; step and evaluate are built from them.
#include "lib/engine/impl.hpp"

#include "host/gemm.hpp"
#include "lib/engine/block.hpp"
#include "ttt/safetensors.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ttt {

Session::Impl::Impl(Engine::Impl& eng, SessionOptions o) : e(eng) {
  const SessionSettings set = resolve(e, o);
  ttt = set.ttt;
  lr = set.lr;
  const size_t D = size_t(e.c.hidden_size);
  for (int l = 0; l < e.c.num_hidden_layers; ++l) {
    kc.push_back(alloc_bytes(size_t(e.C) * D * e.kv_size(), "key ring", "key/value rings"));
    vc.push_back(alloc_bytes(size_t(e.C) * D * e.kv_size(), "value ring", "key/value rings"));
  }
  live.resize(e.table.device.size());
  grad.resize(e.table.device.size());
  if (!trains()) return;  // reads the engine's weights: no copies, no gradients
  int trainable = 0;
  for (size_t i = 0; i < e.table.device.size(); ++i) {
    const DeviceTensor& d = e.table.device[i];
    if (!d.trainable) continue;
    ++trainable;
    live[i] = alloc(size_t(d.size()), d.name.c_str(), "prime weights");
    grad[i] = alloc(size_t(d.size()), "gradient", "prime gradients");
  }
  partial = alloc(size_t(ops::sgd_partials(trainable)), "norm partials", "step statistics");
  gstats = alloc(3, "grad stats", "step statistics");
  wstats = alloc(3, "weight stats", "step statistics");
}

Session::Impl::~Impl() {
  try {
    e.ctx.finish();
  } catch (...) {
    // A destructor never throws; a failing queue has already reported itself to whoever synced last.
  }
}

Buffer Session::Impl::alloc(size_t floats, const char* what, const char* part) {
  return alloc_bytes(floats * sizeof(float), what, part);
}

Buffer Session::Impl::alloc_bytes(size_t n, const char* what, const char* part) {
  bytes += n;
  parts[part] += n;
  return Buffer(e.ctx, std::max<size_t>(n, 1), what);
}

void Session::Impl::init_live() {
  for (size_t i = 0; i < live.size(); ++i) {
    const DeviceTensor& d = e.table.device[i];
    if (!d.trainable) continue;
    if (!live[i]) live[i] = alloc(size_t(d.size()), d.name.c_str(), "prime weights");
    if (d.dtype == DType::F32)
      live[i].copy_from(e.weights[i], live[i].bytes());
    else  // exact: every 16-bit value is a float
      ops::convert_widen(e.ctx, live[i], int(d.cols), e.weights[i], d.dtype, 0, int(d.cols), int(d.rows), int(d.cols));
  }
}

std::vector<float> Session::Impl::prime_values(size_t i) const {
  return live[i] ? live[i].download<float>(size_t(e.table.device[i].size())) : engine_values(i);
}

std::vector<float> Session::Impl::engine_values(size_t i) const {
  const DeviceTensor& d = e.table.device[i];
  const size_t n = size_t(d.size());
  if (d.dtype == DType::F32) return e.weights[i].download<float>(n);
  const std::vector<uint16_t> h = e.weights[i].download<uint16_t>(n);
  std::vector<float> out(n);
  for (size_t k = 0; k < n; ++k) out[k] = d.dtype == DType::BF16 ? bf16_to_f32(h[k]) : f16_to_f32(h[k]);
  return out;
}

// Frees the live copies a session without test-time training got from restore():
// it reads the engine's weights again.
void Session::Impl::drop_live() {
  for (size_t i = 0; i < live.size(); ++i)
    if (live[i]) {
      bytes -= live[i].bytes();
      parts["prime weights"] -= live[i].bytes();
      live[i] = Buffer();
    }
}

namespace {

// Host-side ring rows: f32 as the public state holds them, converted to and
// from the rings' storage type (f16 rounds to nearest even, widens exactly).
void write_ring(Buffer& ring, DType kv, const float* src, size_t n, size_t first) {
  if (kv == DType::F32) return ring.write(src, n * sizeof(float), first * sizeof(float));
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
  ring.write(h.data(), n * sizeof(uint16_t), first * sizeof(uint16_t));
}

std::vector<float> read_ring(const Buffer& ring, DType kv, size_t n) {
  if (kv == DType::F32) return ring.download<float>(n);
  const std::vector<uint16_t> h = ring.download<uint16_t>(n);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
  return out;
}

}  // namespace

void Session::Impl::require_own_forward(const char* phase) const {
  if (fwd_n == 0) throw Error(fmt::format("Session::{}: no forward to follow (call forward first)", phase));
  if (e.owner != this || e.forwards != fwd_serial)
    throw Error(fmt::format("Session::{}: another session ran a forward on this engine since this session's last "
                            "one; run forward again",
                            phase));
}

Session::Session(Engine& engine, SessionOptions opts) : impl_(std::make_unique<Impl>(impl_of(engine), opts)) { reset(); }
Session::~Session() = default;

bool Session::ttt() const { return impl_->trains(); }
float Session::inner_lr() const { return impl_->lr; }
int64_t Session::position() const { return impl_->pos; }
int Session::mini_batch() const { return impl_->e.B; }
int Session::forward_tokens() const { return impl_->fwd_n; }
const StepInfo& Session::last_step() const { return impl_->info; }
size_t Session::device_bytes() const { return impl_->bytes; }

void Session::reset() {
  Impl& s = *impl_;
  s.pos = 0;
  s.info = {};
  s.fwd_n = 0;
  s.scored = s.trained = false;
  // Ring rows are always written before any query can see them; zeroing
  // just keeps stale numbers of an earlier document out of reach.
  for (auto& b : s.kc) b.zero();
  for (auto& b : s.vc) b.zero();
  if (s.trains())
    s.init_live();
  else
    s.drop_live();
  s.drained();
}

void Session::forward(std::span<const int32_t> ids) {
  Impl& s = *impl_;
  const int n = int(ids.size());
  if (n < 1 || n > s.e.B)
    throw Error(fmt::format("Session::forward: {} tokens, expected 1..{} (the mini-batch size)", n, s.e.B));
  check_token_ids(ids, s.e.c.vocab_size, fmt::format("mini-batch {} inputs", s.pos / s.e.B));
  s.run_forward(ids, s.pos, s.e.c.takes_update(n, s.trains()));
  s.pos += n;
}

// Uploads ids and the RoPE table of positions pos0.., runs the blocks (keeping
// the suffix activations when keep) and the final norm. Enqueued.
void Session::Impl::run_forward(std::span<const int32_t> ids, int64_t pos0, bool keep) {
  const int n = int(ids.size());
  restage(kIds);  // a forward not followed by sync(): its transfers may not have run yet
  h_ids.assign(ids.begin(), ids.end());
  h_cs = ops::rope_table(pos0, n, e.c.head_dim(), double(e.c.rope_theta));
  e.ids.write(h_ids.data(), size_t(n) * 4, 0, false);
  e.cs.write(h_cs.data(), h_cs.size() * 4, 0, false);
  fwd_pos = pos0;
  fwd_n = n;
  fwd_keep = keep;
  fwd_serial = e.claim_scratch(this);
  scored = trained = false;
  block::forward(pass(), e.ids, block::stream_io(e.stream, e.shared, e.suffix, e.c.first_prime_block(), fwd_keep), e.hf, e.rsf);
  info = {pos0 / e.B, false, 0.f, 0.f};
}

// The one document's rows (its last forward) as the block description takes them.
block::Pass Session::Impl::pass() {
  block::Pass p{e.ctx, e};
  p.T = fwd_n;
  p.docs = {{0, fwd_n, fwd_pos, 0}};
  p.cs = &e.cs;
  p.kc = &kc;
  p.vc = &vc;
  p.w = block::weights_of(e, live);
  if (trains()) {
    p.g.resize(grad.size());
    for (size_t i = 0; i < grad.size(); ++i)
      if (grad[i]) p.g[i].buf = &grad[i];
  }
  return p;
}

// Backward of the mini-batch from its mean NLL to the prime weights.
void Session::Impl::backward() {
  block::backward(pass(), block::stream_io(e.stream, e.shared, e.suffix, e.c.first_prime_block(), fwd_keep), e.ids, e.dhf, e.rsf, e.dx, block::Reach::prime_weights,
                  block::scratch_of(e));
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
  block::mark(pass(), "update");
}

void Session::score(std::span<const int32_t> targets) {
  Impl& s = *impl_;
  Engine::Impl& e = s.e;
  s.require_own_forward("score");
  const int n = s.fwd_n;
  if (int(targets.size()) != n)
    throw Error(fmt::format("Session::score: {} targets for a forward of {} tokens", targets.size(), n));
  check_token_ids(targets, e.c.vocab_size, fmt::format("mini-batch {} targets", s.info.chunk));
  s.restage(Impl::kTargets);
  s.h_targets.assign(targets.begin(), targets.end());
  e.targets.write(s.h_targets.data(), size_t(n) * 4, 0, false);
  int count = 0;
  for (int32_t t : targets) count += t != e.c.bos_token_id;
  const float inv_count = count ? 1.f / float(count) : 0.f;
  ops::xent(e.ctx, e.xent, e.nll, s.fwd_keep ? &e.dhf : nullptr, e.hf, s.w(e.head), e.c.tie_word_embeddings, e.targets,
            n, e.c.hidden_size, e.c.vocab_size, e.c.bos_token_id, inv_count, e.dtype(e.head),
            e.head_tiles && !s.live[size_t(e.head)] ? &e.head_tiles : nullptr);  // a trained head has no tiles
  block::mark(s.pass(), "loss");
  s.h_nll.resize(size_t(n));
  e.nll.read(s.h_nll.data(), size_t(n) * sizeof(float), 0, false);
  s.scored = true;
}

std::vector<float> Session::logits(int row) {
  Impl& s = *impl_;
  Engine::Impl& e = s.e;
  s.require_own_forward("logits");
  if (row < 0 || row >= s.fwd_n)
    throw Error(fmt::format("Session::logits: row {} outside the last forward's 0..{}", row, s.fwd_n - 1));
  const int D = e.c.hidden_size, V = e.c.vocab_size;
  if (!e.logits) e.logits = e.alloc_bytes(size_t(V) * sizeof(float), "logits row");
  // (1, V) = hf[row] (1, D) @ W^T: wte is (V, D); an untied lm_head is (D, V).
  // A 16-bit head is read as stored by the kernels whatever the option (widening it would need V x D floats).
  const bool tied = e.c.tie_word_embeddings;
  const DType ht = e.dtype(e.head);
  if (e.matvec == MatVec::Kernels || ht != DType::F32) {
    if (tied)
      ops::matvec_rows(e.ctx, e.logits, s.w(e.head), e.hf, size_t(row) * D, V, D, D, ht);
    else
      ops::matvec_cols(e.ctx, e.logits, e.hf, size_t(row) * D, s.w(e.head), D, V, V, ht);
  } else if (e.matvec == MatVec::ClblastGemv)
    host::gemv(e.ctx, tied ? host::Trans::N : host::Trans::T, tied ? V : D, tied ? D : V, 1.f, s.w(e.head), 0,
               tied ? D : V, e.hf, size_t(row) * D, 0.f, e.logits, 0, "gemv_logits_row");
  else
    host::gemm(e.ctx, host::Trans::N, tied ? host::Trans::T : host::Trans::N, 1, V, D, 1.f, e.hf, size_t(row) * D, D,
               s.w(e.head), 0, tied ? D : V, 0.f, e.logits, 0, V, "gemm_logits_row");
  return e.logits.download<float>(size_t(V));
}

bool Session::replay(std::span<const int32_t> ids, std::span<const int32_t> targets) {
  Impl& s = *impl_;
  Engine::Impl& e = s.e;
  if (int(ids.size()) != e.B || int(targets.size()) != e.B)
    throw Error(fmt::format("Session::replay: {} ids and {} targets, expected a mini-batch of {}", ids.size(),
                            targets.size(), e.B));
  if (s.pos < e.B || s.pos % e.B != 0)
    throw Error(fmt::format("Session::replay: position {} does not end a mini-batch of {}", s.pos, e.B));
  check_token_ids(ids, e.c.vocab_size, fmt::format("mini-batch {} inputs", s.pos / e.B - 1));
  s.run_forward(ids, s.pos - e.B, e.c.takes_update(e.B, s.trains()));
  score(targets);
  return train();
}

void Session::fill_random(int64_t position, uint64_t seed) {
  Impl& s = *impl_;
  if (position < 0) throw Error(fmt::format("Session::fill_random: position {} < 0", position));
  reset();
  // One block of values, written over every ring row (only rows in a query's window are ever read).
  const size_t D = size_t(s.e.c.hidden_size), rows = std::min<size_t>(size_t(s.e.C), 4096);
  std::vector<float> block(rows * D);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& v : block) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = float(int64_t(x >> 40) - (int64_t(1) << 23)) / float(1 << 23);  // in [-1, 1)
  }
  for (size_t l = 0; l < s.kc.size(); ++l)
    for (size_t r = 0; r < size_t(s.e.C); r += rows) {
      const size_t n = std::min(rows, size_t(s.e.C) - r);
      write_ring(s.kc[l], s.e.kv(), block.data(), n * D, r * D);
      write_ring(s.vc[l], s.e.kv(), block.data(), n * D, r * D);
    }
  s.pos = position;
}

bool Session::train() {
  Impl& s = *impl_;
  s.require_own_forward("train");
  if (!s.fwd_keep) return false;
  if (!s.scored) throw Error("Session::train: score the mini-batch first (its loss is what the step descends)");
  if (s.trained) throw Error("Session::train: this mini-batch already took its step");
  s.backward();
  s.update();
  s.restage(Impl::kStats);
  s.gstats.read(s.h_g, sizeof s.h_g, 0, false);
  s.wstats.read(s.h_w, sizeof s.h_w, 0, false);
  s.trained = true;
  return true;
}

const std::vector<float>& Session::sync() {
  Impl& s = *impl_;
  s.drained();
  const int64_t c0 = s.fwd_pos, c1 = s.fwd_pos + s.fwd_n - 1;
  if (s.scored)
    for (size_t i = 0; i < s.h_nll.size(); ++i)
      if (!std::isfinite(s.h_nll[i]))
        throw Error(fmt::format("mini-batch {} (positions {}..{}): non-finite loss ({}) at position {}; stopping",
                                s.info.chunk, c0, c1, s.h_nll[i], c0 + int64_t(i)));
  if (s.trained && !s.info.updated) {
    if (s.h_g[2] == 0.f)
      throw Error(fmt::format("mini-batch {} (positions {}..{}): non-finite gradient norm ({}); the prime weights were "
                              "left as they were; stopping",
                              s.info.chunk, c0, c1, s.h_g[0]));
    if (s.h_w[2] == 0.f)
      throw Error(fmt::format("mini-batch {} (positions {}..{}): the update made a prime weight non-finite; stopping",
                              s.info.chunk, c0, c1));
    s.info.updated = true;
    s.info.grad_norm = s.h_g[0];
    s.info.weight_norm = s.h_w[0];
  }
  if (!s.scored) s.h_nll.clear();
  return s.h_nll;
}

void Session::step(std::span<const int32_t> inputs, std::span<const int32_t> targets, std::span<float> nll) {
  const int B = impl_->e.B;
  if (inputs.empty() || inputs.size() > size_t(B))
    throw Error(fmt::format("Session::step: {} inputs, expected 1..{} (the mini-batch size)", inputs.size(), B));
  if (targets.size() != inputs.size() || nll.size() != inputs.size())
    throw Error(fmt::format("Session::step: {} inputs, {} targets and room for {} NLLs; expected as many of each",
                            inputs.size(), targets.size(), nll.size()));
  forward(inputs);
  score(targets);
  train();
  const std::vector<float>& out = sync();
  std::copy(out.begin(), out.end(), nll.begin());
}

std::vector<float> Session::evaluate(std::span<const int32_t> tokens,
                                     const std::function<void(size_t, size_t)>& progress) {
  if (tokens.size() < 2) throw Error(fmt::format("a document needs at least 2 tokens to score, got {}", tokens.size()));
  check_token_ids(tokens, impl_->e.c.vocab_size, "document");
  reset();
  const size_t n_pred = tokens.size() - 1, B = size_t(impl_->e.B);
  std::vector<float> out(n_pred);
  for (size_t s = 0; s < n_pred; s += B) {
    const size_t n = std::min(B, n_pred - s);
    step(tokens.subspan(s, n), tokens.subspan(s + 1, n), std::span<float>(out).subspan(s, n));
    if (progress) progress(s + n, n_pred);
  }
  return out;
}

SessionState Session::state() const {
  const Impl& s = *impl_;
  SessionState st;
  st.position = s.pos;
  const size_t ring = size_t(s.e.C) * size_t(s.e.c.hidden_size);
  for (size_t l = 0; l < s.kc.size(); ++l) {
    st.keys.push_back(read_ring(s.kc[l], s.e.kv(), ring));
    st.values.push_back(read_ring(s.vc[l], s.e.kv(), ring));
  }
  for (size_t i = 0; i < s.live.size(); ++i)
    if (s.e.table.device[i].trainable) st.prime.push_back(s.prime_values(i));
  return st;
}

void Session::restore(const SessionState& st) {
  Impl& s = *impl_;
  const size_t ring = size_t(s.e.C) * size_t(s.e.c.hidden_size);
  size_t trainable = 0;
  for (const DeviceTensor& d : s.e.table.device) trainable += d.trainable;
  if (st.position < 0 || st.keys.size() != s.kc.size() || st.values.size() != s.vc.size() ||
      st.prime.size() != trainable)
    throw Error(fmt::format("Session::restore: a state of {} key rings, {} value rings and {} trainable tensors at "
                            "position {}; this session has {} blocks and {} trainable tensors",
                            st.keys.size(), st.values.size(), st.prime.size(), st.position, s.kc.size(), trainable));
  for (size_t l = 0; l < s.kc.size(); ++l)
    if (st.keys[l].size() != ring || st.values[l].size() != ring)
      throw Error(fmt::format("Session::restore: block {} ring of {} / {} floats, this session's holds {} (another "
                              "window or mini-batch)",
                              l, st.keys[l].size(), st.values[l].size(), ring));
  for (size_t i = 0, k = 0; i < s.live.size(); ++i) {
    const DeviceTensor& d = s.e.table.device[i];
    if (d.trainable && st.prime[k++].size() != size_t(d.size()))
      throw Error(fmt::format("Session::restore: trainable tensor {} ({}) of {} floats, this session's has {}", k - 1,
                              d.name, st.prime[k - 1].size(), d.size()));
  }
  s.drained();
  // A session without test-time training keeps reading the engine's weights when the state holds
  // them (a state it took itself); other weights it holds in copies of its own.
  bool own = s.trains();
  for (size_t i = 0, k = 0; i < s.live.size() && !own; ++i)
    if (s.e.table.device[i].trainable) {
      const std::vector<float> mine = s.engine_values(i);
      own = std::memcmp(mine.data(), st.prime[k++].data(), mine.size() * sizeof(float)) != 0;  // bit for bit
    }
  if (!own) s.drop_live();
  for (size_t i = 0; i < s.live.size() && own; ++i)
    if (s.e.table.device[i].trainable && !s.live[i])
      s.live[i] = s.alloc(size_t(s.e.table.device[i].size()), s.e.table.device[i].name.c_str(), "prime weights");
  for (size_t l = 0; l < s.kc.size(); ++l) {
    write_ring(s.kc[l], s.e.kv(), st.keys[l].data(), ring, 0);
    write_ring(s.vc[l], s.e.kv(), st.values[l].data(), ring, 0);
  }
  for (size_t i = 0, k = 0; i < s.live.size(); ++i)
    if (s.e.table.device[i].trainable) {
      if (s.live[i]) s.live[i].write(st.prime[k].data(), st.prime[k].size() * sizeof(float));
      ++k;
    }
  s.pos = st.position;
  s.info = {};
  s.fwd_n = 0;
  s.scored = s.trained = false;
}

void Session::download_prime(Model& m) const {
  const Impl& s = *impl_;
  for (size_t i = 0; i < s.live.size(); ++i) {
    const DeviceTensor& d = s.e.table.device[i];
    if (!d.trainable) continue;
    const auto data = s.prime_values(i);
    for (float x : data)
      if (!std::isfinite(x)) throw Error(fmt::format("{}: adapted weights hold a non-finite value", d.name));
    s.e.table.unpack(int(i), data, m);
  }
}

}  // namespace ttt
