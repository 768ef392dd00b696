// BatchSession: N document slots on one engine. Each step gathers every busy
// slot's next chunk (up to B tokens) into rows s*B.., runs one batched
// forward, scores all rows with one vocabulary sweep, takes each full slot's
// test-time step (its own clip and SGD, on views of the packed prime tensors)
// and hands finished documents back; a free slot takes the next document.
#include "lib/engine/batch.hpp"

#include "host/gemm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ttt {

Buffer BatchSession::Impl::alloc(size_t floats, const char* what) {
  bytes += floats * sizeof(float);
  Buffer b(e.ctx, std::max<size_t>(floats, 1) * sizeof(float), what);
  b.zero();  // padding rows are read (never used): keep them finite
  return b;
}

void BatchSession::Impl::alloc_acts(BlockActs& a, bool prime) {
  alloc_block_acts(a, size_t(T), e.c, prime, [this](size_t n, const char* what) { return alloc(n, what); }, &fwd_only);
}

BatchSession::Impl::Impl(Engine::Impl& eng, int slots, SessionOptions o) : e(eng) {
  if (slots < 1) throw Error(fmt::format("a batched session needs at least 1 slot, got {}", slots));
  const SessionSettings set = resolve(e, o);
  ttt = set.ttt;
  lr = set.lr;
  N = slots;
  B = e.B;
  T = N * B;
  const Config& c = e.c;
  const size_t D = size_t(c.hidden_size), E = size_t(c.head_dim()), R = size_t(T);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    // f16 rings take half the floats' bytes (alloc counts in floats and zeroes).
    const size_t ring = size_t(N) * size_t(e.C) * D, floats = e.kv() == DType::F32 ? ring : (ring + 1) / 2;
    kc.push_back(alloc(floats, "key rings"));
    vc.push_back(alloc(floats, "value rings"));
  }
  slot.resize(size_t(N));
  const size_t nt = e.table.device.size();
  live.resize(nt);
  grad.resize(nt);
  stride.assign(nt, 0);
  int trainable = 0;
  if (trains()) {
    const size_t align = Buffer::view_align(e.ctx) / sizeof(float);
    for (size_t i = 0; i < nt; ++i) {
      const DeviceTensor& d = e.table.device[i];
      if (!d.trainable) continue;
      ++trainable;
      stride[i] = (size_t(d.size()) + align - 1) / align * align;
      live[i] = alloc(size_t(N) * stride[i], d.name.c_str());
      grad[i] = alloc(size_t(N) * stride[i], "gradient");
      for (int s = 0; s < N; ++s) {
        const size_t off = size_t(s) * stride[i] * sizeof(float), n = size_t(d.size()) * sizeof(float);
        slot[size_t(s)].live_v.push_back(live[i].view(off, n, "slot weights"));
        slot[size_t(s)].grad_v.push_back(grad[i].view(off, n, "slot gradient"));
      }
    }
    for (auto& sl : slot) {
      sl.partial = alloc(size_t(ops::sgd_partials(trainable)), "norm partials");
      sl.gstats = alloc(3, "grad stats");
      sl.wstats = alloc(3, "weight stats");
    }
  }
  const int S = trains() ? c.num_prime_blocks() : 0;
  suffix.resize(size_t(S));
  alloc_forward_only(fwd_only, R, c, [this](size_t n, const char* what) { return alloc(n, what); });
  for (auto& a : suffix) alloc_acts(a, true);
  alloc_shared_acts(shared, suffix, R, c, [this](size_t n, const char* what) { return alloc(n, what); }, &fwd_only);
  for (int i = 0; i < 1 + 3 * S; ++i) stream.b.push_back(alloc(R * D, "residual stream"));
  ids = alloc(R, "input ids");
  targets = alloc(R, "target ids");
  cs = alloc(R * E, "rope table");
  nll = alloc(R, "nll");
  hf = alloc(R * D, "final norm");
  rsf = alloc(R, "final rstd");
  seg = alloc(size_t(2 * N) * 2, "segments");  // 2N int64
  const int tile = std::min(e.opts.vocab_tile, c.vocab_size);
  xent = ops::XentScratch(e.ctx, T, int(D), tile);
  bytes += (R * size_t(tile) + 3 * R + R * D) * sizeof(float);
  if (e.dtype(e.head) != DType::F32)  // the engine's widening scratch: nothing else widens while the sweep runs
    xent.wide = e.wide.view(0, size_t(tile) * D * sizeof(float), "xent widened head tile");
  if (S > 0) {  // the backward's scratch where it fits in memory dead while the backward runs (engine.cpp)
    auto fresh = [this](size_t n, const char* what) { return alloc(n, what); };
    Carver dead(dead_during_backward(xent, suffix.front()), Buffer::view_align(e.ctx), fresh);
    alloc_backward_scratch(*this, R, e.c, fresh, [&dead](size_t n, const char* what) {
      Buffer b = dead.take(n, what);
      b.zero();
      return b;
    });
  }
  e.ctx.finish();
}

BatchSession::Impl::~Impl() {
  try {
    e.ctx.finish();
  } catch (...) {
    // A destructor never throws; a failing queue has already reported itself.
  }
}

void BatchSession::Impl::reset_slot(int s) {
  Slot& sl = slot[size_t(s)];
  sl.pos = 0;
  sl.chunk = 0;
  sl.nll.clear();
  const size_t ring = size_t(e.C) * size_t(e.c.hidden_size) * e.kv_size();
  for (auto& b : kc) b.zero(ring, size_t(s) * ring);
  for (auto& b : vc) b.zero(ring, size_t(s) * ring);
  for (size_t i = 0, k = 0; i < live.size(); ++i) {
    if (!live[i]) continue;
    const DeviceTensor& d = e.table.device[i];
    if (d.dtype == DType::F32)
      live[i].copy_from(e.weights[i], size_t(d.size()) * sizeof(float), 0, size_t(s) * stride[i] * sizeof(float));
    else  // exact: every 16-bit value is a float
      ops::convert_widen(e.ctx, slot[size_t(s)].live_v[k], int(d.cols), e.weights[i], d.dtype, 0, int(d.cols),
                         int(d.rows), int(d.cols));
    ++k;
  }
}

block::Pass BatchSession::Impl::pass(bool keep) {
  block::Pass p{e.ctx, e};
  p.T = T;
  p.group = B;
  for (int s = 0; s < N; ++s)
    p.docs.push_back({s * B, slot[size_t(s)].n, slot[size_t(s)].pos, size_t(s) * size_t(e.C)});
  p.seg = &seg;
  p.cs = &cs;
  p.kc = &kc;
  p.vc = &vc;
  p.w = block::weights_of(e, {});
  if (trains()) {
    // Each slot's live prime weights (and gradients): matrix s of the packed tensors.
    p.g.resize(live.size());
    for (size_t i = 0; i < live.size(); ++i)
      if (live[i]) {
        p.w[i] = {&live[i], 0, stride[i]};
        if (keep) p.g[i] = {&grad[i], stride[i]};
      }
  }
  return p;
}

void BatchSession::Impl::step() {
  const Config& c = e.c;
  const int E = c.head_dim(), D = c.hidden_size;
  h_ids.assign(size_t(T), 0);
  h_targets.assign(size_t(T), 0);
  h_cs.assign(size_t(T) * size_t(E), 0.f);
  for (size_t i = 0; i < h_cs.size(); i += 2) h_cs[i] = 1.f;  // padding rows: angle 0
  h_seg.assign(size_t(2 * N), 0);
  bool keep = false;
  for (int s = 0; s < N; ++s) {
    Slot& sl = slot[size_t(s)];
    sl.n = 0;
    sl.trains = false;
    if (!sl.busy) continue;
    const int64_t n_pred = int64_t(sl.doc.tokens.size()) - 1;
    sl.n = int(std::min<int64_t>(B, n_pred - sl.pos));
    sl.trains = c.takes_update(sl.n, trains());
    keep |= sl.trains;
    const size_t r0 = size_t(s) * size_t(B);
    std::copy_n(sl.doc.tokens.data() + sl.pos, sl.n, h_ids.begin() + long(r0));
    std::copy_n(sl.doc.tokens.data() + sl.pos + 1, sl.n, h_targets.begin() + long(r0));
    const auto tab = ops::rope_table(sl.pos, sl.n, E, double(c.rope_theta));
    std::copy(tab.begin(), tab.end(), h_cs.begin() + long(r0 * size_t(E)));
    h_seg[size_t(2 * s)] = sl.pos;
    h_seg[size_t(2 * s + 1)] = sl.n;
  }
  ids.write(h_ids.data(), h_ids.size() * 4, 0, false);
  targets.write(h_targets.data(), h_targets.size() * 4, 0, false);
  cs.write(h_cs.data(), h_cs.size() * 4, 0, false);
  seg.write(h_seg.data(), h_seg.size() * 8, 0, false);

  e.claim_scratch(this);  // the engine's own scratch is untouched, but no session may take this for its forward
  const block::Pass p = pass(keep);
  block::forward(p, ids, block::stream_io(stream, shared, suffix, c.first_prime_block(), keep), hf, rsf);
  // The loss each slot descends is its own mean over its non-BOS targets:
  // the sweep scales by 1/count of the first training slot with any, other
  // slots' rows are rescaled after it, and rows of slots that do not train
  // (or have no target to learn from) get no gradient.
  std::vector<int> count(size_t(N), 0);
  int ref = -1;
  for (int s = 0; s < N; ++s) {
    if (!slot[size_t(s)].trains) continue;
    for (int t = 0; t < B; ++t) count[size_t(s)] += h_targets[size_t(s * B + t)] != c.bos_token_id;
    if (ref < 0 && count[size_t(s)] > 0) ref = s;
  }
  const float inv = ref >= 0 ? 1.f / float(count[size_t(ref)]) : 0.f;
  ops::xent(e.ctx, xent, nll, keep ? &dhf : nullptr, hf, e.weights[size_t(e.head)], c.tie_word_embeddings, targets, T, D,
            c.vocab_size, c.bos_token_id, inv, e.dtype(e.head), e.head_tiles ? &e.head_tiles : nullptr);
  block::mark(p, "loss");
  h_nll.resize(size_t(T));
  nll.read(h_nll.data(), h_nll.size() * sizeof(float), 0, false);
  if (keep) {
    const size_t rows = size_t(B) * size_t(D);
    for (int s = 0; s < N; ++s) {
      const int n = count[size_t(s)];
      if (!slot[size_t(s)].trains || n == 0)
        dhf.zero(rows * sizeof(float), size_t(s) * rows * sizeof(float));
      else if (n != count[size_t(ref)])
        host::scal(e.ctx, rows, float(count[size_t(ref)]) / float(n), dhf, size_t(s) * rows, "scale_dh");
    }
    block::backward(p, block::stream_io(stream, shared, suffix, c.first_prime_block(), keep), ids, dhf, rsf, dx, block::Reach::prime_weights, block::scratch_of(*this));
    for (int s = 0; s < N; ++s) {
      Slot& sl = slot[size_t(s)];
      if (!sl.trains) continue;
      std::vector<ops::SgdParam> params;
      std::vector<std::pair<const Buffer*, int>> weights;
      size_t k = 0;
      for (size_t i = 0; i < live.size(); ++i) {
        if (!live[i]) continue;
        const int n = int(e.table.device[i].size());
        params.push_back({&sl.live_v[k], &sl.grad_v[k], n});
        weights.emplace_back(&sl.live_v[k], n);
        ++k;
      }
      ops::sgd_step(e.ctx, params, sl.partial, sl.gstats, lr, c.inner_clip_gradient);
      ops::global_norm(e.ctx, weights, sl.partial, sl.wstats, 0.f);
      sl.gstats.read(sl.h_g, sizeof sl.h_g, 0, false);
      sl.wstats.read(sl.h_w, sizeof sl.h_w, 0, false);
    }
    block::mark(p, "update");
  }
  e.ctx.finish();
  for (int s = 0; s < N; ++s) {
    Slot& sl = slot[size_t(s)];
    if (!sl.busy) continue;
    const int64_t c0 = sl.pos, c1 = sl.pos + sl.n - 1;
    for (int t = 0; t < sl.n; ++t) {
      const float v = h_nll[size_t(s * B + t)];
      if (!std::isfinite(v))
        throw Error(fmt::format("document {}, mini-batch {} (positions {}..{}): non-finite loss ({}) at position {}; "
                                "stopping",
                                sl.doc.index, sl.chunk, c0, c1, v, c0 + t));
      sl.nll.push_back(v);
    }
    if (sl.trains && (sl.h_g[2] == 0.f || sl.h_w[2] == 0.f))
      throw Error(fmt::format("document {}, mini-batch {} (positions {}..{}): {}; stopping", sl.doc.index, sl.chunk,
                              c0, c1,
                              sl.h_g[2] == 0.f ? "non-finite gradient norm"
                                               : "the update made a prime weight non-finite"));
    sl.pos += sl.n;
    ++sl.chunk;
  }
}

BatchSession::BatchSession(Engine& engine, int slots, SessionOptions opts)
    : impl_(std::make_unique<Impl>(impl_of(engine), slots, opts)) {}
BatchSession::~BatchSession() = default;

int BatchSession::slots() const { return impl_->N; }
size_t BatchSession::device_bytes() const { return impl_->bytes; }

void BatchSession::run(const std::function<std::optional<BatchDocument>()>& next,
                       const std::function<void(size_t, std::vector<float>)>& done,
                       const std::function<void(size_t)>& progress, const std::function<bool()>& stop,
                       const std::function<void(size_t, std::vector<float>)>& cut) {
  Impl& b = *impl_;
  bool more = true;
  for (;;) {
    int busy = 0;
    for (int s = 0; s < b.N; ++s) {
      Impl::Slot& sl = b.slot[size_t(s)];
      while (!sl.busy && more) {
        std::optional<BatchDocument> d = next();
        if (!d) {
          more = false;
          break;
        }
        if (d->tokens.size() < 2)
          throw Error(fmt::format("document {}: a document needs at least 2 tokens to score, got {}", d->index,
                                  d->tokens.size()));
        check_token_ids(d->tokens, b.e.c.vocab_size, fmt::format("document {}", d->index));
        sl.doc = *d;
        sl.busy = true;
        b.reset_slot(s);
      }
      busy += sl.busy;
    }
    if (!busy) return;
    b.step();
    size_t scored = 0;
    for (const auto& sl : b.slot) scored += size_t(sl.n);
    if (progress) progress(scored);
    for (auto& sl : b.slot)
      if (sl.busy && sl.pos + 1 == int64_t(sl.doc.tokens.size())) {
        sl.busy = false;
        done(sl.doc.index, std::move(sl.nll));
        sl.nll.clear();
      }
    const bool in_flight = std::any_of(b.slot.begin(), b.slot.end(), [](const Impl::Slot& sl) { return sl.busy; });
    if (in_flight && stop && stop()) {
      for (auto& sl : b.slot)
        if (sl.busy) {
          sl.busy = false;
          if (cut) cut(sl.doc.index, std::move(sl.nll));
          sl.nll.clear();
        }
      return;
    }
  }
}

std::vector<std::vector<float>> BatchSession::evaluate(const std::vector<std::span<const int32_t>>& docs) {
  std::vector<std::vector<float>> out(docs.size());
  size_t i = 0;
  run([&]() -> std::optional<BatchDocument> {
        if (i == docs.size()) return std::nullopt;
        ++i;
        return BatchDocument{i - 1, docs[i - 1]};
      },
      [&](size_t k, std::vector<float> nll) { out[k] = std::move(nll); });
  return out;
}

}  // namespace ttt
