// RefModel: the forward of one chunk keeps every activation the backward
// needs; the backward runs the block steps in exact reverse order down to the
// first block that carries a prime MLP.
#include "lib/reference/model.hpp"

#include "ttt/error.hpp"
#include "lib/reference/ops.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ttt::ref {
namespace {

template <typename F>
std::vector<F> cast(const std::vector<float>& v) {
  return std::vector<F>(v.begin(), v.end());
}

template <typename F>
struct Mlp {
  std::vector<F> w1, w3, w2;  // (D, I), (D, I), (I, D)
};

template <typename F>
struct Block {
  std::vector<F> seq_norm, seq_post_norm, ffn_norm, ffn_post_norm, wq, wk, wv, wo, q_norm, k_norm;
  Mlp<F> mlp;
  bool has_prime = false;
  std::vector<F> prime_norm, prime_post_norm;
  Mlp<F> prime;
  // Carried window: rotated keys and values of the last <= W positions.
  std::deque<std::vector<F>> k_win, v_win;
};

// Activations of one MLP sub-layer (pre-norm, SwiGLU, post-norm) for a chunk.
template <typename F>
struct MlpActs {
  std::vector<F> xin, hn, rs_pre, h13, g, m, rs_post;
};

template <typename F>
struct BlockActs {
  std::vector<F> x0, hn1, rs1, q, k, v, rq, rk, qr, kr, o, lse, a, rs2, x1;
  std::vector<F> kall, vall;  // carried + current keys/values, (Tk, D)
  int Tk = 0;
  int64_t kpos0 = 0;
  MlpActs<F> prime, ffn;
  std::vector<F> x2, x3;
};

}  // namespace

template <typename F>
struct RefModel<F>::Impl {
  Config c;
  std::vector<F> wte, ln_f, lm_head;
  std::vector<Block<F>> blocks;
  std::vector<Mlp<F>> prime_init;

  // y (T, N) = x (T, K) @ W (K, N)
  static void linear(std::vector<F>& y, const std::vector<F>& x, const std::vector<F>& W, int T, int K, int N) {
    y.assign(size_t(T) * N, F(0));
    matmul(y.data(), x.data(), W.data(), T, N, K, false, false, false);
  }
  // dx (T, K) (+)= dy (T, N) @ W^T
  static void linear_dx(std::vector<F>& dx, const std::vector<F>& dy, const std::vector<F>& W, int T, int K, int N,
                        bool accumulate) {
    if (!accumulate) dx.assign(size_t(T) * K, F(0));
    matmul(dx.data(), dy.data(), W.data(), T, K, N, false, true, accumulate);
  }
  // dW (K, N) += x^T (K, T) @ dy (T, N)
  static void linear_dw(std::vector<F>& dW, const std::vector<F>& x, const std::vector<F>& dy, int T, int K, int N) {
    matmul(dW.data(), x.data(), dy.data(), K, N, T, true, false, true);
  }

  // out = res + norm(x) when enabled, else res + x (res may be empty: no residual).
  void norm(std::vector<F>& out, std::vector<F>& rs, const std::vector<F>& x, const std::vector<F>& g,
            const std::vector<F>* res, int R, int N, bool enabled) const {
    out.resize(x.size());
    rs.assign(size_t(R), F(1));
    if (enabled) {
      rmsnorm_fwd(out.data(), rs.data(), x.data(), g.data(), res ? res->data() : nullptr, R, N, F(c.rms_norm_eps));
    } else {
      for (size_t i = 0; i < x.size(); ++i) out[i] = (res ? (*res)[i] : F(0)) + x[i];
    }
  }
  void norm_bwd(std::vector<F>& dx, const std::vector<F>& dy, const std::vector<F>& x, const std::vector<F>& g,
                const std::vector<F>& rs, int R, int N, bool enabled, bool accumulate) const {
    if (!accumulate) dx.assign(x.size(), F(0));
    if (enabled) {
      rmsnorm_bwd(dx.data(), dy.data(), x.data(), g.data(), rs.data(), R, N, true);
    } else {
      for (size_t i = 0; i < x.size(); ++i) dx[i] += dy[i];
    }
  }

  void mlp_fwd(MlpActs<F>& A, const std::vector<F>& xin, const Mlp<F>& w, const std::vector<F>& pre,
               const std::vector<F>& post, std::vector<F>& xout, int T) const {
    const int D = c.hidden_size, I = c.intermediate_size;
    A.xin = xin;
    norm(A.hn, A.rs_pre, xin, pre, nullptr, T, D, c.pre_norm);
    std::vector<F> a, b;
    linear(a, A.hn, w.w1, T, D, I);
    linear(b, A.hn, w.w3, T, D, I);
    A.h13.resize(size_t(T) * 2 * I);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < I; ++i) {
        A.h13[size_t(t) * 2 * I + i] = a[size_t(t) * I + i];
        A.h13[size_t(t) * 2 * I + I + i] = b[size_t(t) * I + i];
      }
    A.g.resize(size_t(T) * I);
    swiglu_fwd(A.g.data(), A.h13.data(), T, I);
    linear(A.m, A.g, w.w2, T, I, D);
    norm(xout, A.rs_post, A.m, post, &xin, T, D, c.post_norm);
  }

  // dxin = dxout + d(sublayer)/dxin; accumulates weight grads into g (w1, w3, w2) when given.
  void mlp_bwd(std::vector<F>& dxin, const std::vector<F>& dxout, const MlpActs<F>& A, const Mlp<F>& w,
               const std::vector<F>& pre, const std::vector<F>& post, Mlp<F>* g, int T) const {
    const int D = c.hidden_size, I = c.intermediate_size;
    std::vector<F> dm, dg, dh13(size_t(T) * 2 * I), da(size_t(T) * I), db(size_t(T) * I), a(size_t(T) * I),
        dhn;
    norm_bwd(dm, dxout, A.m, post, A.rs_post, T, D, c.post_norm, false);
    if (g) linear_dw(g->w2, A.g, dm, T, I, D);
    linear_dx(dg, dm, w.w2, T, I, D, false);
    swiglu_bwd(dh13.data(), dg.data(), A.h13.data(), T, I);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < I; ++i) {
        da[size_t(t) * I + i] = dh13[size_t(t) * 2 * I + i];
        db[size_t(t) * I + i] = dh13[size_t(t) * 2 * I + I + i];
      }
    if (g) {
      linear_dw(g->w1, A.hn, da, T, D, I);
      linear_dw(g->w3, A.hn, db, T, D, I);
    }
    linear_dx(dhn, da, w.w1, T, D, I, false);
    linear_dx(dhn, db, w.w3, T, D, I, true);
    dxin = dxout;
    norm_bwd(dxin, dhn, A.xin, pre, A.rs_pre, T, D, c.pre_norm, true);
  }

  void block_fwd(BlockActs<F>& A, const Block<F>& b, const std::vector<F>& x0, int T, int64_t pos0) const {
    const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
    A.x0 = x0;
    norm(A.hn1, A.rs1, x0, b.seq_norm, nullptr, T, D, c.pre_norm);
    linear(A.q, A.hn1, b.wq, T, D, D);
    linear(A.k, A.hn1, b.wk, T, D, D);
    linear(A.v, A.hn1, b.wv, T, D, D);
    norm(A.qr, A.rq, A.q, b.q_norm, nullptr, T * H, E, c.qk_norm);
    norm(A.kr, A.rk, A.k, b.k_norm, nullptr, T * H, E, c.qk_norm);
    rope_fwd(A.qr.data(), pos0, T, H, E, double(c.rope_theta));
    rope_fwd(A.kr.data(), pos0, T, H, E, double(c.rope_theta));
    const int Tc = int(b.k_win.size());
    A.Tk = Tc + T;
    A.kpos0 = pos0 - Tc;
    A.kall.clear();
    A.vall.clear();
    for (int j = 0; j < Tc; ++j) {
      A.kall.insert(A.kall.end(), b.k_win[size_t(j)].begin(), b.k_win[size_t(j)].end());
      A.vall.insert(A.vall.end(), b.v_win[size_t(j)].begin(), b.v_win[size_t(j)].end());
    }
    A.kall.insert(A.kall.end(), A.kr.begin(), A.kr.end());
    A.vall.insert(A.vall.end(), A.v.begin(), A.v.end());
    A.o.resize(size_t(T) * D);
    A.lse.resize(size_t(T) * H);
    attention_fwd(A.o.data(), A.lse.data(), A.qr.data(), A.kall.data(), A.vall.data(), T, A.Tk, pos0, A.kpos0, H, E,
                  c.sliding_window_size);
    linear(A.a, A.o, b.wo, T, D, D);
    norm(A.x1, A.rs2, A.a, b.seq_post_norm, &A.x0, T, D, c.post_norm);
    if (b.has_prime)
      mlp_fwd(A.prime, A.x1, b.prime, b.prime_norm, b.prime_post_norm, A.x2, T);
    else
      A.x2 = A.x1;
    mlp_fwd(A.ffn, A.x2, b.mlp, b.ffn_norm, b.ffn_post_norm, A.x3, T);
  }

  // dx0 from dx3; prime grads accumulate into g. Keys/values carried from
  // earlier chunks are constants: only the current chunk's rows flow back.
  void block_bwd(std::vector<F>& dx0, const std::vector<F>& dx3, const BlockActs<F>& A, const Block<F>& b,
                 Mlp<F>* g, int T, int64_t pos0) const {
    const int D = c.hidden_size, H = c.num_attention_heads, E = c.head_dim();
    std::vector<F> dx2, dx1;
    mlp_bwd(dx2, dx3, A.ffn, b.mlp, b.ffn_norm, b.ffn_post_norm, nullptr, T);
    if (b.has_prime)
      mlp_bwd(dx1, dx2, A.prime, b.prime, b.prime_norm, b.prime_post_norm, g, T);
    else
      dx1 = dx2;
    std::vector<F> da, dO, dqr(size_t(T) * D), dK(size_t(A.Tk) * D), dV(size_t(A.Tk) * D);
    norm_bwd(da, dx1, A.a, b.seq_post_norm, A.rs2, T, D, c.post_norm, false);
    linear_dx(dO, da, b.wo, T, D, D, false);
    attention_bwd(dqr.data(), dK.data(), dV.data(), dO.data(), A.qr.data(), A.kall.data(), A.vall.data(),
                  A.lse.data(), T, A.Tk, pos0, A.kpos0, H, E, c.sliding_window_size);
    const size_t cur = size_t(A.Tk - T) * D;
    std::vector<F> dkr(dK.begin() + long(cur), dK.end()), dv(dV.begin() + long(cur), dV.end()), dq, dk, dhn;
    rope_bwd(dqr.data(), pos0, T, H, E, double(c.rope_theta));
    rope_bwd(dkr.data(), pos0, T, H, E, double(c.rope_theta));
    norm_bwd(dq, dqr, A.q, b.q_norm, A.rq, T * H, E, c.qk_norm, false);
    norm_bwd(dk, dkr, A.k, b.k_norm, A.rk, T * H, E, c.qk_norm, false);
    linear_dx(dhn, dq, b.wq, T, D, D, false);
    linear_dx(dhn, dk, b.wk, T, D, D, true);
    linear_dx(dhn, dv, b.wv, T, D, D, true);
    dx0 = dx1;
    norm_bwd(dx0, dhn, A.x0, b.seq_norm, A.rs1, T, D, c.pre_norm, true);
  }

  // Forward of a chunk; nll per token. With grads, also the backward of the
  // mean non-BOS loss into grads (per suffix block: w1, w3, w2).
  std::vector<F> chunk(std::vector<BlockActs<F>>& acts, const int32_t* inputs, const int32_t* targets, int T,
                       int64_t pos0, std::vector<Mlp<F>>* grads, F* loss) const {
    const int D = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
    std::vector<F> x(size_t(T) * D);
    embedding_fwd(x.data(), inputs, wte.data(), T, D);
    acts.resize(size_t(L));
    for (int l = 0; l < L; ++l) {
      block_fwd(acts[size_t(l)], blocks[size_t(l)], x, T, pos0);
      x = acts[size_t(l)].x3;
    }
    std::vector<F> hf, rf, logits(size_t(T) * V), nll(static_cast<size_t>(T));
    norm(hf, rf, x, ln_f, nullptr, T, D, true);
    if (c.tie_word_embeddings)
      matmul(logits.data(), hf.data(), wte.data(), T, V, D, false, true, false);
    else
      matmul(logits.data(), hf.data(), lm_head.data(), T, V, D, false, false, false);
    xent_fwd(nll.data(), logits.data(), targets, T, V);
    std::vector<F> w(static_cast<size_t>(T));
    int count = 0;
    for (int t = 0; t < T; ++t) count += targets[t] != c.bos_token_id;
    double total = 0;
    for (int t = 0; t < T; ++t) {
      w[size_t(t)] = count && targets[t] != c.bos_token_id ? F(1.0 / count) : F(0);
      total += double(w[size_t(t)]) * double(nll[size_t(t)]);
    }
    if (loss) *loss = F(total);
    if (!grads) return nll;

    const int I = c.intermediate_size, first = c.first_prime_block();
    grads->assign(size_t(c.num_prime_blocks()), Mlp<F>{});
    for (auto& g : *grads) {
      g.w1.assign(size_t(D) * I, F(0));
      g.w3.assign(size_t(D) * I, F(0));
      g.w2.assign(size_t(I) * D, F(0));
    }
    std::vector<F> dlogits(size_t(T) * V), dhf(size_t(T) * D), dx;
    xent_bwd(dlogits.data(), logits.data(), targets, w.data(), T, V);
    if (c.tie_word_embeddings)
      matmul(dhf.data(), dlogits.data(), wte.data(), T, D, V, false, false, false);
    else
      matmul(dhf.data(), dlogits.data(), lm_head.data(), T, D, V, false, true, false);
    norm_bwd(dx, dhf, x, ln_f, rf, T, D, true, false);
    for (int l = L - 1; l >= first; --l) {
      std::vector<F> dx0;
      block_bwd(dx0, dx, acts[size_t(l)], blocks[size_t(l)], &(*grads)[size_t(l - first)], T, pos0);
      dx.swap(dx0);
    }
    return nll;
  }

  void commit(const std::vector<BlockActs<F>>& acts, int T) {
    const int D = c.hidden_size, W = c.sliding_window_size;
    for (size_t l = 0; l < blocks.size(); ++l) {
      Block<F>& b = blocks[l];
      for (int t = 0; t < T; ++t) {
        b.k_win.emplace_back(acts[l].kr.begin() + long(t) * D, acts[l].kr.begin() + long(t + 1) * D);
        b.v_win.emplace_back(acts[l].v.begin() + long(t) * D, acts[l].v.begin() + long(t + 1) * D);
      }
      while (int(b.k_win.size()) > W) {
        b.k_win.pop_front();
        b.v_win.pop_front();
      }
    }
  }
};

template <typename F>
RefModel<F>::RefModel(const Model& m) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.c = m.config;
  s.wte = cast<F>(m.wte);
  s.ln_f = cast<F>(m.ln_f);
  s.lm_head = cast<F>(m.lm_head);
  for (const BlockWeights& bw : m.blocks) {
    Block<F> b;
    b.seq_norm = cast<F>(bw.seq_norm);
    b.seq_post_norm = cast<F>(bw.seq_post_norm);
    b.ffn_norm = cast<F>(bw.ffn_norm);
    b.ffn_post_norm = cast<F>(bw.ffn_post_norm);
    b.wq = cast<F>(bw.wq);
    b.wk = cast<F>(bw.wk);
    b.wv = cast<F>(bw.wv);
    b.wo = cast<F>(bw.wo);
    b.q_norm = cast<F>(bw.q_norm);
    b.k_norm = cast<F>(bw.k_norm);
    b.mlp = {cast<F>(bw.mlp.w1), cast<F>(bw.mlp.w3), cast<F>(bw.mlp.w2)};
    b.has_prime = bw.has_prime;
    if (b.has_prime) {
      b.prime_norm = cast<F>(bw.prime_norm);
      b.prime_post_norm = cast<F>(bw.prime_post_norm);
      b.prime = {cast<F>(bw.prime.w1), cast<F>(bw.prime.w3), cast<F>(bw.prime.w2)};
      s.prime_init.push_back(b.prime);
    }
    s.blocks.push_back(std::move(b));
  }
}

template <typename F>
RefModel<F>::~RefModel() = default;

template <typename F>
void RefModel<F>::reset() {
  pos_ = 0;
  size_t j = 0;
  for (auto& b : impl_->blocks) {
    b.k_win.clear();
    b.v_win.clear();
    if (b.has_prime) b.prime = impl_->prime_init[j++];
  }
}

template <typename F>
std::vector<F> RefModel<F>::step(const int32_t* inputs, const int32_t* targets, int n, bool ttt, F lr) {
  Impl& s = *impl_;
  const bool update = s.c.takes_update(n, ttt);
  std::vector<BlockActs<F>> acts;
  std::vector<Mlp<F>> grads;
  auto nll = s.chunk(acts, inputs, targets, n, pos_, update ? &grads : nullptr, nullptr);
  if (update) {
    std::vector<const F*> ptrs;
    std::vector<size_t> sizes;
    for (auto& g : grads)
      for (auto* v : {&g.w1, &g.w3, &g.w2}) {
        ptrs.push_back(v->data());
        sizes.push_back(v->size());
      }
    last_norm_ = global_norm(ptrs.data(), sizes.data(), int(ptrs.size()));
    const F scale = clip_scale(last_norm_, F(s.c.inner_clip_gradient));
    size_t j = 0;
    for (auto& b : s.blocks) {
      if (!b.has_prime) continue;
      sgd_update(b.prime.w1.data(), grads[j].w1.data(), b.prime.w1.size(), lr, scale);
      sgd_update(b.prime.w3.data(), grads[j].w3.data(), b.prime.w3.size(), lr, scale);
      sgd_update(b.prime.w2.data(), grads[j].w2.data(), b.prime.w2.size(), lr, scale);
      ++j;
    }
  }
  s.commit(acts, n);
  pos_ += n;
  return nll;
}

template <typename F>
std::vector<F> RefModel<F>::evaluate(const std::vector<int32_t>& tokens, bool ttt) {
  reset();
  std::vector<F> out;
  const int B = impl_->c.mini_batch_size;
  const int n_pred = int(tokens.size()) - 1;
  for (int s = 0; s < n_pred; s += B) {
    const int n = std::min(B, n_pred - s);
    auto nll = step(tokens.data() + s, tokens.data() + s + 1, n, ttt, F(impl_->c.inner_lr));
    out.insert(out.end(), nll.begin(), nll.end());
  }
  return out;
}

template <typename F>
F RefModel<F>::chunk_loss(const int32_t* inputs, const int32_t* targets, int n, std::vector<std::vector<F>>* grads) {
  std::vector<BlockActs<F>> acts;
  std::vector<Mlp<F>> g;
  F loss = 0;
  impl_->chunk(acts, inputs, targets, n, pos_, grads ? &g : nullptr, &loss);
  if (grads) {
    grads->clear();
    for (auto& m : g) {
      grads->push_back(m.w1);
      grads->push_back(m.w3);
      grads->push_back(m.w2);
    }
  }
  return loss;
}

template <typename F>
std::vector<std::vector<F>*> RefModel<F>::prime_params() {
  std::vector<std::vector<F>*> out;
  for (auto& b : impl_->blocks)
    if (b.has_prime) {
      out.push_back(&b.prime.w1);
      out.push_back(&b.prime.w3);
      out.push_back(&b.prime.w2);
    }
  return out;
}

template class RefModel<float>;
template class RefModel<double>;

}  // namespace ttt::ref
