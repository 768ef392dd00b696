// Internals of BatchSession (batch.cpp: slots, scheduling, steps;
// batch_pass.cpp: forward and backward over N * B rows). Slot s owns rows
// s*B .. s*B + B - 1 of every activation, rows s*C .. of every ring and matrix
// s of every packed prime tensor (at s * stride floats, stride rounded up to
// the device's sub-buffer alignment so the SGD step can see it as a buffer).
#pragma once

#include "lib/engine/impl.hpp"
#include "host/gemm.hpp"
#include "ttt/batch.hpp"

namespace ttt {

struct BatchSession::Impl {
  Engine::Impl& e;
  int N = 0, B = 0, T = 0;  // slots, rows per slot, rows in all
  bool ttt = true;
  float lr = 0;
  size_t bytes = 0;

  std::vector<Buffer> kc, vc;          // per block: N rings of (C, D)
  std::vector<Buffer> live, grad;      // per device tensor, trainable ones only: N packed matrices
  std::vector<size_t> stride;          // per device tensor: floats between two slots' matrices

  struct Slot {
    bool busy = false;
    BatchDocument doc;
    int64_t pos = 0, chunk = 0;        // next input position, mini-batches so far
    std::vector<float> nll;
    int n = 0;                         // rows of the current step (0: idle)
    bool trains = false;               // the current step takes a test-time update
    std::vector<Buffer> live_v, grad_v;  // views of the packed tensors (trainable indices only)
    Buffer partial, gstats, wstats;
    float h_g[3] = {0, 0, 0}, h_w[3] = {0, 0, 0};
  };
  std::vector<Slot> slot;

  // Scratch of one step (N * B rows), laid out like the engine's.
  BlockActs shared;
  std::vector<BlockActs> suffix;
  Residual stream;
  Buffer ids, targets, cs, nll, hf, rsf, seg;
  ops::XentScratch xent;
  Buffer dx, dhf, dm, dg, dh13, dhn, dqkv, dqr, dkr, dsum;
  std::vector<int32_t> h_ids, h_targets;
  std::vector<float> h_cs, h_nll;
  std::vector<int64_t> h_seg;

  Impl(Engine::Impl& e, int slots, SessionOptions o);
  ~Impl();
  Buffer alloc(size_t floats, const char* what);
  void alloc_acts(BlockActs& a, bool prime);
  bool trains() const { return ttt && e.c.num_prime_blocks() > 0; }
  void reset_slot(int s);
  void step();  // one mini-batch over the busy slots

  // batch_pass.cpp
  const Buffer& wt(int idx) const { return e.weights[size_t(idx)]; }
  ops::AttnBatch attn_shape() const;
  // N GEMMs, one per slot: C_s = op(A_s) @ op(B_s), matrix s at s * stride of each operand.
  void batched(host::Trans ta, host::Trans tb, size_t M, size_t Nn, size_t K, const Buffer& A, size_t lda,
               size_t as, const Buffer& Bm, size_t ldb, size_t bs, Buffer& C, size_t ldc, size_t cs,
               const char* label);
  void mlp_forward(const MlpIdx& w, bool prime, int pre, int post, MlpActs& a, Buffer& xin, Buffer& xout);
  void block_forward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& x3);
  Buffer& forward_blocks(bool keep);
  void mlp_backward(const MlpIdx& w, bool prime, int pre, int post, MlpActs& a, Buffer& xin, Buffer& dxio,
                    bool need_dx);
  void block_backward(int l, BlockActs& a, Buffer& x0, Buffer& x1, Buffer& x2, Buffer& dx, bool first);
  void backward();
};

}  // namespace ttt
