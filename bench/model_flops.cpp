// GEMM shapes and analytic FLOP/byte counts of the engine's prefill; see model_flops.hpp.
#include "bench/model_flops.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ttt::bench {

std::string GemmShape::name() const {
  return fmt::format("{} {}{} {}x{}x{}", label, ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K);
}

namespace {

// The GEMMs of one mini-batch of T rows; `update` adds the xent backward and the suffix backward.
std::vector<GemmShape> chunk_gemms(const Config& c, int64_t T, bool update, int vocab_tile) {
  const int64_t D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers;
  const int S = c.num_prime_blocks();
  const int64_t tile = std::min<int64_t>(vocab_tile, V);
  const bool tied = c.tie_word_embeddings;
  std::vector<GemmShape> g;
  auto add = [&](const char* label, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int count) {
    if (count <= 0) return;
    for (auto& x : g)
      if (x.label == label && x.ta == ta && x.tb == tb && x.M == M && x.N == N && x.K == K) {
        x.count += count;
        return;
      }
    g.push_back({label, ta, tb, M, N, K, count});
  };
  // Forward (lib/engine/forward.cpp): every block, the prime MLP in the suffix blocks.
  add("gemm_qkv", false, false, T, 3 * D, D, int(L));
  add("gemm_wo", false, false, T, D, D, int(L));
  add("gemm_w13", false, false, T, 2 * I, D, int(L) + S);
  add("gemm_w2", false, false, T, D, I, int(L) + S);
  // Logits and the xent backward's U, per vocabulary tile (lib/ops/xent.cpp).
  const int64_t full = V / tile, rest = V % tile;
  add("gemm_logits", false, tied, T, tile, D, int(full));
  add("gemm_logits", false, tied, T, rest, D, rest ? 1 : 0);
  if (update) {
    add("gemm_xent_bwd", false, !tied, T, D, tile, int(full));
    add("gemm_xent_bwd", false, !tied, T, D, rest, rest ? 1 : 0);
    // Suffix backward (lib/engine/backward.cpp): both MLPs of every suffix
    // block; the first stops after its prime MLP's weight gradients.
    add("gemm_dg", false, true, T, I, D, 2 * S);
    add("gemm_dhn", false, true, T, D, 2 * I, 2 * S - 1);
    add("gemm_dw2", true, false, I, D, T, S);
    add("gemm_dw13", true, false, D, 2 * I, T, S);
    add("gemm_do", false, true, T, D, D, S - 1);
    add("gemm_dhn", false, true, T, D, 3 * D, S - 1);
  }
  return g;
}

}  // namespace

std::vector<GemmShape> model_gemms(const Config& c, bool ttt, int vocab_tile) {
  return chunk_gemms(c, c.mini_batch_size, c.takes_update(c.mini_batch_size, ttt), vocab_tile);
}

Work prefill_work(const Config& c, int64_t n_inputs, bool ttt, int vocab_tile) {
  Work w;
  const int64_t B = c.mini_batch_size, D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t L = c.num_hidden_layers, Wn = c.sliding_window_size;
  const int S = c.num_prime_blocks();
  const double f = 4.0;  // bytes per float
  for (int64_t pos = 0; pos < n_inputs; pos += B) {
    const int64_t T = std::min(B, n_inputs - pos);
    const bool update = c.takes_update(int(T), ttt);
    for (const auto& g : chunk_gemms(c, T, update, vocab_tile)) {
      w.gemm += g.flops() * g.count;
      w.bytes += f * double(g.M * g.K + g.K * g.N + g.M * g.N) * g.count;
    }
    // Attention: query t at position pos+t sees min(W, pos+t+1) keys; forward
    // QK^T and PV (4 flops per pair and width), backward 10 (it recomputes QK^T).
    double pairs = 0;
    for (int64_t t = 0; t < T; ++t) pairs += double(std::min<int64_t>(Wn, pos + t + 1));
    const int att_bwd = update ? S - 1 : 0;
    w.attention += pairs * double(D) * (4.0 * double(L) + 10.0 * att_bwd);
    // Keys and values read once per query tile is the kernel's real traffic;
    // the lower bound counts the window's keys and values once per block.
    const double win = double(std::min<int64_t>(Wn, pos + T));
    w.bytes += f * (2.0 * win * D + 3.0 * T * D) * double(L + att_bwd);
    // Element-wise work, roughly: per block 6 RMSNorms (~5 flops/element),
    // RoPE (~3), two SwiGLUs (~8 per gate), the softmax over V (~4 per logit),
    // and with an update about twice that backwards plus SGD (~4 per weight, twice for the norms).
    const double prime_w = double(S) * 3.0 * double(D) * double(I);
    double other = double(L) * (6.0 * 5.0 * T * D + 3.0 * T * D + 2.0 * 8.0 * T * I) + 4.0 * double(T) * V;
    w.bytes += f * (double(L) * (12.0 * T * D + 4.0 * T * I) + 2.0 * T * D);
    if (update) {
      other += 2.0 * double(S) * (6.0 * 5.0 * T * D + 3.0 * T * D + 2.0 * 8.0 * T * I) + 2.0 * double(T) * V +
               3.0 * 4.0 * prime_w;
      w.bytes += f * (double(S) * (24.0 * T * D + 8.0 * T * I) + 5.0 * prime_w);
    }
    w.other += other;
  }
  return w;
}

std::vector<KernelWork> kernel_table(const Config& c, bool ttt, int vocab_tile) {
  const double T = c.mini_batch_size, D = c.hidden_size, I = c.intermediate_size;
  const double W = c.sliding_window_size, H = c.num_attention_heads, f = 4.0;
  const int L = c.num_hidden_layers, S = c.num_prime_blocks();
  const bool update = c.takes_update(c.mini_batch_size, ttt);
  const int tiles = (c.vocab_size + vocab_tile - 1) / vocab_tile;
  std::vector<KernelWork> rows;
  for (const auto& g : model_gemms(c, ttt, vocab_tile)) {
    auto it = std::find_if(rows.begin(), rows.end(), [&](const KernelWork& k) { return k.name == g.label; });
    if (it == rows.end()) it = rows.insert(rows.end(), KernelWork{g.label});
    it->launches += g.count;
    it->flops += g.flops() * g.count;
    it->bytes += f * double(g.M * g.K + g.K * g.N + g.M * g.N) * g.count;
  }
  auto add = [&](const char* name, int n, double flops, double bytes) {
    if (n > 0) rows.push_back({name, n, flops * n, bytes * n});
  };
  const int norms_fwd = 6 * L + 2 * S + 1;  // seq, seq_post, q, k, ffn, ffn_post; prime pair; final
  add("embedding_fwd", 1, 0, f * 2 * T * D);
  add("rmsnorm_fwd", norms_fwd, 4 * T * D, f * 3 * T * D);
  add("rope_fwd", 2 * L, 6 * T * D, f * 2 * T * D);
  add("attention_fwd", L, 4 * T * W * D, f * (2 * (W + T) * D + 2 * T * D + T * H));
  add("swiglu_fwd", L + S, 6 * T * I, f * 3 * T * I);
  add("xent_fwd_tile", tiles, 4 * T * vocab_tile, f * (update ? 2 : 1) * T * vocab_tile);
  if (update) {
    add("rmsnorm_bwd", 8 * (S - 1) + 3 + 1, 8 * T * D, f * 5 * T * D);
    add("swiglu_bwd", 2 * S, 12 * T * I, f * 5 * T * I);
    add("rope_bwd", 2 * (S - 1), 6 * T * D, f * 2 * T * D);
    add("attention_bwd", S - 1, 10 * T * W * D, f * (2 * (W + T) * D + 6 * T * D + 2 * T * H));
    const double P = double(S) * 3 * D * I;  // prime weights
    add("sgd (sumsq, norm, update, weight norm)", 1, 6 * P, f * 5 * P);
  }
  return rows;
}

}  // namespace ttt::bench
