// Internal state of the Engine: device weights (q|k|v and W1|W3 fused so each
// is one GEMM), the key/value rings, per-block activations of the current
// mini-batch, backward scratch and gradients. Shared by engine.cpp,
// forward.cpp and backward.cpp; not part of the public API.
#pragma once

#include "ttt/engine.hpp"
#include "lib/ops/ops.hpp"

namespace ttt {

using host::Buffer;

struct DevMlp {
  Buffer w13;  // (D, 2I): [W1 | W3]
  Buffer w2;   // (I, D)
};

struct DevBlock {
  Buffer seq_norm, seq_post_norm, ffn_norm, ffn_post_norm;  // (D)
  Buffer q_norm, k_norm;                                    // (E)
  Buffer wqkv;                                              // (D, 3D): [Wq | Wk | Wv]
  Buffer wo;                                                // (D, D)
  DevMlp mlp;
  bool has_prime = false;
  Buffer prime_norm, prime_post_norm;  // (D)
  DevMlp prime, prime_init;            // live and as-loaded prime weights
  Buffer kc, vc;                       // key/value ring (C, D); position p at row p % C
};

// Activations of one MLP sub-layer for the current mini-batch.
struct MlpActs {
  Buffer hn, rs_pre;   // (T, D), (T)
  Buffer h13, g;       // (T, 2I), (T, I)
  Buffer m, rs_post;   // (T, D), (T)
};

// Activations of one block; suffix blocks keep their own for the backward,
// the others share one set.
struct BlockActs {
  Buffer hn1, rs1;     // (T, D), (T)
  Buffer qkv;          // (T, 3D): raw q | k | v
  Buffer rq, rk;       // (T*H) qk-norm rstd
  Buffer qr, kr;       // (T, D): normed, rotated q and k
  Buffer o, lse;       // (T, D), (T, H): attention output and log-sum-exp
  Buffer a, rs2;       // (T, D), (T): o @ Wo and its post-norm rstd
  MlpActs prime, ffn;
};

struct Engine::Impl {
  host::Context& ctx;
  Config c;
  EngineOptions opts;
  float lr = 0;
  int B = 0, C = 0;  // mini-batch, ring rows
  int64_t pos = 0, chunk = 0;
  StepInfo info;
  size_t bytes = 0;

  Buffer wte, ln_f, lm_head;
  std::vector<DevBlock> blocks;
  BlockActs shared;                   // prefix blocks (and all blocks without TTT)
  std::vector<BlockActs> suffix;      // one per prime block when training
  std::vector<Buffer> stream;         // residual stream: [0] in-place for shared blocks, suffix chain after
  Buffer ids, targets, cs, nll, hf, rsf;
  ops::XentScratch xent;

  // Backward scratch and gradients.
  Buffer dx, dhf, dm, dg, dh13, dhn, dqkv, dqr, dkr, dsum;
  std::vector<DevMlp> grads;  // per prime block: dW13, dW2
  Buffer partial, gstats, wstats;

  // Host staging kept alive until the end-of-step read drains the queue.
  std::vector<int32_t> h_ids, h_targets;
  std::vector<float> h_cs;

  Impl(host::Context& ctx, const Model& m, EngineOptions o);
  Buffer alloc(size_t floats, const char* what);
  void upload(const Model& m);
  void alloc_acts(BlockActs& a, bool full);
  bool trains() const { return opts.ttt && c.num_prime_blocks() > 0; }

  // forward.cpp
  void block_forward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& x3, int T);
  void mlp_forward(const DevMlp& w, const Buffer& pre, const Buffer& post, MlpActs& a, Buffer& xin, Buffer& xout,
                   int T);
  Buffer& forward(int T, bool keep);  // returns the final residual stream buffer

  // backward.cpp
  void backward(Buffer& xL, int T);
  void mlp_backward(const DevMlp& w, const Buffer& pre, const Buffer& post, MlpActs& a, Buffer& xin, Buffer& dxio,
                    DevMlp* g, bool need_dx, int T);
  void block_backward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& dx, bool first, int T);
  void update();
};

}  // namespace ttt
