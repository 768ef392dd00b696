// FullGradient (full_gradient.hpp): the block description's forward
// (block.hpp) of a whole document with every block's activations kept, then
// its backward with every weight's gradient wanted, down to the embedding;
// the head's gradient comes from the vocabulary sweep (xent_bwd_weights).
#include "lib/engine/full_gradient.hpp"

#include "host/gemm.hpp"
#include "lib/engine/full_gradient_impl.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace ttt {

namespace {

Config whole_document(Config c, int max_tokens) {
  c.mini_batch_size = max_tokens;  // one mini-batch: nothing carried, every key in the chunk
  return c;
}

EngineOptions no_ttt(int vocab_tile) {
  EngineOptions o;
  o.ttt = false;
  o.vocab_tile = vocab_tile;
  o.weight_dtype = DType::F32;  // every weight is trained: f32, as its gradient
  o.kv_dtype = DType::F32;      // and the keys and values differentiated through: f32 (this path takes no choice)
  return o;
}

}  // namespace

FullGradient::Impl::Impl(Runtime& rt, const Config& cfg, int n, int vocab_tile)
    : c(cfg),
      max_tokens(n),
      shape(Model::random(whole_document(cfg, n), 0)),
      engine(rt, shape, no_ttt(vocab_tile)),
      e(impl_of(engine)) {
  const size_t R = size_t(n), D = size_t(c.hidden_size);
  auto alloc = [this](size_t floats, const char* what) {
    bytes += floats * sizeof(float);
    return Buffer(e.ctx, std::max<size_t>(floats, 1) * sizeof(float), what);
  };
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    kc.push_back(alloc(size_t(e.C) * D, "key ring"));
    vc.push_back(alloc(size_t(e.C) * D, "value ring"));
  }
  acts.resize(size_t(c.num_hidden_layers));
  for (int l = 0; l < c.num_hidden_layers; ++l) alloc_block_acts(acts[size_t(l)], R, c, c.has_prime(l), alloc);
  for (int i = 0; i < 3 * c.num_hidden_layers + 1; ++i) x.push_back(alloc(R * D, "residual stream"));
  if (!e.dm) alloc_backward_scratch(e, R, c, alloc, alloc);  // an engine without test-time training has none
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
    o.weight_dtype = DType::F32;  // re-uploaded from the trained model before each pass
    inner = std::make_unique<Engine>(engine.runtime(), m, o);
    copies.resize(e.table.device.size());
    for (size_t i = 0; i < e.table.device.size(); ++i) {
      if (!e.table.device[i].trainable) continue;
      bytes += size_t(chunks) * size_t(e.table.device[i].size()) * sizeof(float);
      copies[i] = Buffer(e.ctx, size_t(chunks) * size_t(e.table.device[i].size()) * sizeof(float), "prime copies");
    }
    per_copy.resize(copies.size());
  } else {
    Engine::Impl& ie = impl_of(*inner);
    for (size_t i = 0; i < ie.table.device.size(); ++i) ie.upload_tensor(i, m);
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
    for (size_t idx = 0; idx < copies.size(); ++idx) {
      if (!copies[idx]) continue;
      const size_t bytes_one = size_t(e.table.device[idx].size()) * sizeof(float);
      copies[idx].copy_from(ti.live[idx], bytes_one, 0, size_t(k) * bytes_one);
    }
    const int n = std::min(B, T - r0);
    ts.step(tokens.subspan(size_t(r0), size_t(n)), tokens.subspan(size_t(r0) + 1, size_t(n)),
            std::span<float>(nll).first(size_t(n)));
    updated.push_back(ts.last_step().updated);
    step_norms.push_back(ts.last_step().grad_norm);
    if (ts.last_step().updated) r.inner_norms.push_back(double(ts.last_step().grad_norm));
  }
}

block::Pass FullGradient::Impl::pass(int T) {
  block::Pass p{e.ctx, e};
  p.T = T;
  p.group = c.mini_batch_size;
  p.docs = {{0, T, 0, 0}};
  p.cs = &e.cs;
  p.kc = &kc;
  p.vc = &vc;
  p.w = block::weights_of(e, {});
  p.g.resize(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    p.g[i].buf = &grads[i];
    if (!by_copy || !copies[i]) continue;
    // Meta: rows of mini-batch c multiply copy c. Their gradients are summed
    // (each copy is W_0 plus a constant), or kept per copy for the second-order sweep.
    const size_t n = size_t(e.table.device[i].size());
    p.w[i] = {&copies[i], 0, n};
    if (second_order) p.g[i] = {&per_copy[i], n};
  }
  return p;
}

block::BlockIO FullGradient::Impl::io(int l) {
  Buffer* b = &x[3 * size_t(l)];
  return {&acts[size_t(l)], {&b[0], &b[1], &b[2], &b[3]}};
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
  by_copy = false;
  second_order = false;
  if (o != ref::Objective::pretrain && c.num_prime_blocks() > 0) {
    if (const std::string why = device_objective_limit(c, o); !why.empty())
      throw Error("FullGradient: " + why + ": use the reference gradient");
    inner_steps(m, tokens, lr, r);
    by_copy = true;
    second_order = o == ref::Objective::meta;
    inner_lr = lr;
    if (second_order)
      for (size_t i = 0; i < copies.size(); ++i)
        if (copies[i] && !per_copy[i]) {
          per_copy[i] = Buffer(e.ctx, copies[i].bytes(), "prime gradient per copy");
          bytes += copies[i].bytes();
        }
  }
  for (size_t i = 0; i < e.table.device.size(); ++i) e.upload_tensor(i, m);
  h_ids.assign(tokens.begin(), tokens.end() - 1);
  h_targets.assign(tokens.begin() + 1, tokens.end());
  h_cs = ops::rope_table(0, T, c.head_dim(), double(c.rope_theta));
  e.ids.write(h_ids.data(), size_t(T) * 4, 0, false);
  e.targets.write(h_targets.data(), size_t(T) * 4, 0, false);
  e.cs.write(h_cs.data(), h_cs.size() * 4, 0, false);
  e.claim_scratch(this);
  const block::Pass p = pass(T);
  const auto blocks = [this](int l) { return io(l); };
  block::forward(p, e.ids, blocks, e.hf, e.rsf);
  size_t count = 0;
  for (int32_t t : h_targets) count += t != c.bos_token_id;
  const float inv_count = count ? 1.f / float(count) : 0.f;
  const bool tied = c.tie_word_embeddings;
  ops::xent(e.ctx, e.xent, e.nll, nullptr, e.hf, w(e.head), tied, e.targets, T, D, c.vocab_size, c.bos_token_id,
            inv_count);
  // Head (and, tied, the embedding's first part), then the blocks down to the embedding.
  ops::xent_bwd_weights(e.ctx, e.xent, e.dhf, g(e.head), e.hf, w(e.head), tied, e.targets, T, D, c.vocab_size,
                        c.bos_token_id, inv_count);
  std::function<void(int, Buffer&)> sweep;
  if (second_order) sweep = [this, T](int l, Buffer& d) { second_order_sweep(l, d, T); };
  block::backward(p, blocks, e.ids, e.dhf, e.rsf, e.dx, block::Reach::embedding, block::scratch_of(e), sweep);
  h_nll.resize(size_t(T));
  e.nll.read(h_nll.data(), size_t(T) * sizeof(float), 0, true);

  by_copy = false;
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
