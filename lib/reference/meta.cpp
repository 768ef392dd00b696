// The training objectives (pretrain, meta, meta_fo) as one autodiff graph per
// document: the model's forward over mini-batches with carried key/value
// windows, the test-time steps as graph nodes, and one backward to every
// parameter of the table.
#include "lib/reference/meta.hpp"

#include "lib/reference/autodiff.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>

namespace ttt::ref {

namespace {

using ad::Var;
using Prime = std::array<Var, 3>;  // w1, w3, w2 of one suffix block's prime MLP

// One block's carried window: rotated keys and values of the last <= W positions.
struct Window {
  Var k = nullptr, v = nullptr;
  int64_t kpos0 = 0;
};

struct Net {
  const Config& c;
  std::map<std::string, Var> p;  // every parameter leaf by table name
  Var at(const std::string& name) const {
    auto it = p.find(name);
    if (it == p.end()) throw Error(fmt::format("objective: no parameter '{}'", name));
    return it->second;
  }

  // RMSNorm of the rows of x with the named gain; the identity when disabled.
  Var norm(Var x, const std::string& gain, bool enabled) const {
    return enabled ? ad::rmsnorm(x, at(gain), double(c.rms_norm_eps)) : x;
  }

  // SwiGLU sub-layer with its pre- and post-norm and residual.
  Var mlp(Var x, Var w1, Var w3, Var w2, const std::string& pre, const std::string& post) const {
    Var h = norm(x, pre, c.pre_norm);
    Var g = ad::mul(ad::silu(ad::matmul(h, w1)), ad::matmul(h, w3));
    return ad::add(x, norm(ad::matmul(g, w2), post, c.post_norm));
  }

  Var attention(Var x, int i, Window& win, int64_t pos0) const {
    const std::string b = fmt::format("blocks.{}.", i);
    const int T = x->rows, D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
    Var h = norm(x, b + "seq_norm", c.pre_norm);
    Var q = ad::matmul(h, at(b + "attn.wq")), k = ad::matmul(h, at(b + "attn.wk")), v = ad::matmul(h, at(b + "attn.wv"));
    if (c.qk_norm) {  // RMSNorm over each head's E values
      q = ad::reshape(ad::rmsnorm(ad::reshape(q, T * H, E), at(b + "attn.q_norm"), double(c.rms_norm_eps)), T, D);
      k = ad::reshape(ad::rmsnorm(ad::reshape(k, T * H, E), at(b + "attn.k_norm"), double(c.rms_norm_eps)), T, D);
    }
    q = ad::rope(q, pos0, H, double(c.rope_theta));
    k = ad::rope(k, pos0, H, double(c.rope_theta));
    Var K = win.k ? ad::concat_rows(win.k, k) : k;
    Var V = win.v ? ad::concat_rows(win.v, v) : v;
    const int64_t kpos0 = win.k ? win.kpos0 : pos0;
    std::vector<Var> heads;
    for (int hd = 0; hd < H; ++hd) {
      Var s = ad::scale(ad::matmul(ad::slice_cols(q, hd * E, E), ad::slice_cols(K, hd * E, E), false, true),
                        1.0 / std::sqrt(double(E)));
      Var pr = ad::softmax_window(s, pos0, kpos0, c.sliding_window_size);
      heads.push_back(ad::matmul(pr, ad::slice_cols(V, hd * E, E)));
    }
    Var a = ad::matmul(H == 1 ? heads[0] : ad::concat_cols(heads), at(b + "attn.wo"));
    // The next mini-batch sees the last W positions (the gradient flows back through them).
    const int keep = std::min(K->rows, c.sliding_window_size);
    win.k = ad::slice_rows(K, K->rows - keep, keep);
    win.v = ad::slice_rows(V, V->rows - keep, keep);
    win.kpos0 = pos0 + T - keep;
    return ad::add(x, norm(a, b + "seq_post_norm", c.post_norm));
  }

  // NLL (T, 1) of one mini-batch at pos0 with the given prime weights; advances the windows.
  Var chunk(const int32_t* inputs, const int32_t* targets, int T, int64_t pos0, const std::vector<Prime>& prime,
            std::vector<Window>& wins) const {
    Var x = ad::gather_rows(at("wte"), std::vector<int32_t>(inputs, inputs + T));
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string b = fmt::format("blocks.{}.", i);
      x = attention(x, i, wins[size_t(i)], pos0);
      if (c.has_prime(i)) {
        const Prime& w = prime[size_t(i - c.first_prime_block())];
        x = mlp(x, w[0], w[1], w[2], b + "prime_norm", b + "prime_post_norm");
      }
      x = mlp(x, at(b + "mlp.w1"), at(b + "mlp.w3"), at(b + "mlp.w2"), b + "ffn_norm", b + "ffn_post_norm");
    }
    Var hf = ad::rmsnorm(x, at("ln_f"), double(c.rms_norm_eps));
    Var logits = c.tie_word_embeddings ? ad::matmul(hf, at("wte"), false, true) : ad::matmul(hf, at("lm_head"));
    return ad::nll_rows(logits, std::vector<int32_t>(targets, targets + T));
  }
};

// Sum of w[t] * nll[t] as a (1, 1) node.
Var weighted_sum(ad::Tape& tape, Var nll, std::vector<double> w) {
  return ad::matmul(tape.constant(nll->rows, 1, std::move(w)), nll, true, false);
}

}  // namespace

ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, Objective o, double inner_lr,
                          bool want_grads) {
  return objective(m, tokens, o, inner_lr, want_grads, ObjectiveOptions{});
}

ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, Objective o, double inner_lr,
                          bool want_grads, const ObjectiveOptions& opt) {
  const Config& c = m.config;
  const ParamTable table = param_table(c);
  const bool ttt = o != Objective::pretrain;
  ad::Tape tape;
  Net net{c, {}};
  std::vector<Var> leaves;
  auto& mm = const_cast<Model&>(m);  // ParamSpec::host hands out mutable storage; only read here
  for (const ParamSpec& s : table.params) {
    const std::vector<float>& src = s.host(mm);
    if (int64_t(src.size()) != s.size())
      throw Error(fmt::format("objective: tensor '{}' holds {} values, expected {}", s.name, src.size(), s.size()));
    const int rows = s.shape.size() == 2 ? int(s.shape[0]) : 1, cols = int(s.shape.back());
    // The prime weights always carry gradient under TTT: the inner step needs it.
    const bool req = want_grads || (ttt && s.trainable);
    leaves.push_back(tape.leaf(rows, cols, std::vector<double>(src.begin(), src.end()), req));
    net.p[s.name] = leaves.back();
  }
  std::vector<Prime> prime;
  for (int i = c.first_prime_block(); i < c.num_hidden_layers; ++i) {
    const std::string b = fmt::format("blocks.{}.prime.", i);
    prime.push_back({net.at(b + "w1"), net.at(b + "w3"), net.at(b + "w2")});
  }

  ObjectiveResult res;
  const int B = c.mini_batch_size, n_pred = int(tokens.size()) - 1;
  if (n_pred < 1) throw Error("objective: a document needs at least 2 tokens");
  const int32_t* in = tokens.data();
  const int32_t* tg = tokens.data() + 1;
  for (int t = 0; t < n_pred; ++t) res.scored += tg[t] != c.bos_token_id;
  const int n_chunks = (n_pred + B - 1) / B;

  std::vector<Window> wins(size_t(c.num_hidden_layers));
  Var loss = nullptr;
  size_t step = 0;
  for (int s0 = 0; s0 < n_pred; s0 += B) {
    const int n = std::min(B, n_pred - s0);
    Var nll = net.chunk(in + s0, tg + s0, n, s0, prime, wins);
    int count = 0;
    for (int t = 0; t < n; ++t) count += tg[s0 + t] != c.bos_token_id;
    // Document weights (see meta.hpp) and the inner loss's own mean.
    std::vector<double> wd(size_t(n), 0.0), wc(size_t(n), 0.0);
    for (int t = 0; t < n; ++t) {
      if (tg[s0 + t] == c.bos_token_id) continue;
      wc[size_t(t)] = 1.0 / count;
      wd[size_t(t)] = opt.mean_over_mini_batches ? 1.0 / (double(count) * n_chunks) : 1.0 / double(res.scored);
    }
    Var part = weighted_sum(tape, nll, wd);
    loss = loss ? ad::add(loss, part) : part;
    if (!ttt || !c.takes_update(n, true)) continue;

    std::vector<Var> flat;
    for (const Prime& w : prime) flat.insert(flat.end(), w.begin(), w.end());
    std::vector<Var> next(flat.size());
    if (opt.frozen_increments) {
      const auto& inc = *opt.frozen_increments;
      if (step >= inc.size() || inc[step].size() != flat.size())
        throw Error(fmt::format("objective: frozen increments do not cover test-time step {}", step));
      for (size_t j = 0; j < flat.size(); ++j) {
        if (inc[step][j].size() != flat[j]->size()) throw Error("objective: a frozen increment has the wrong size");
        next[j] = ad::add(flat[j], tape.constant(flat[j]->rows, flat[j]->cols, inc[step][j]));
      }
    } else {
      // g = d loss_c / d W_c; meta keeps it differentiable (second order), meta_fo a constant.
      const bool create = o == Objective::meta && want_grads;
      std::vector<Var> g = ad::grad(weighted_sum(tape, nll, wc), flat, create);
      Var sumsq = nullptr;
      for (Var gj : g) {
        Var ss = ad::sum_all(ad::mul(gj, gj));
        sumsq = sumsq ? ad::add(sumsq, ss) : ss;
      }
      const double norm = std::sqrt(sumsq->v[0]), clip = double(c.inner_clip_gradient);
      res.inner_norms.push_back(norm);
      // Clipped by global norm as optax.clip_by_global_norm: scale = clip / ||g|| once ||g|| >= clip,
      // a function of g that the meta gradient differentiates.
      Var k = clip > 0 && norm >= clip ? ad::scale(ad::powc(sumsq, -0.5), clip * inner_lr) : nullptr;
      for (size_t j = 0; j < flat.size(); ++j)
        next[j] = ad::sub(flat[j], k ? ad::mul_s(g[j], k) : ad::scale(g[j], inner_lr));
    }
    if (opt.record_increments) {
      res.increments.emplace_back();
      for (size_t j = 0; j < flat.size(); ++j) {
        std::vector<double> d(flat[j]->size());
        for (size_t e = 0; e < d.size(); ++e) d[e] = next[j]->v[e] - flat[j]->v[e];
        res.increments.back().push_back(std::move(d));
      }
    }
    for (size_t j = 0; j < flat.size(); ++j) prime[j / 3][j % 3] = next[j];
    ++step;
  }
  res.loss = loss->v[0];
  if (want_grads) {
    std::vector<Var> g = ad::grad(loss, leaves, false);
    for (Var gj : g) res.grads.push_back(gj->v);
  }
  return res;
}

double max_relative_difference(const ObjectiveResult& a, const ObjectiveResult& b) {
  if (a.grads.size() != b.grads.size()) throw Error("max_relative_difference: gradients of different models");
  double worst = 0;
  for (size_t i = 0; i < b.grads.size(); ++i) {
    if (a.grads[i].size() != b.grads[i].size()) throw Error("max_relative_difference: tensors of different sizes");
    double scale = 0, err = 0;
    for (size_t j = 0; j < b.grads[i].size(); ++j) {
      scale = std::max(scale, std::abs(b.grads[i][j]));
      err = std::max(err, std::abs(a.grads[i][j] - b.grads[i][j]));
    }
    if (scale > 0) worst = std::max(worst, err / scale);
  }
  return worst;
}

}  // namespace ttt::ref
