// Internals of BatchSession (batch.cpp: slots, scheduling, steps; the
// forward and backward over N * B rows are the block description's, block.hpp). Slot s owns rows
// s*B .. s*B + B - 1 of every activation, rows s*C .. of every ring and matrix
// s of every packed prime tensor (at s * stride floats, stride rounded up to
// the device's sub-buffer alignment so the SGD step can see it as a buffer).
#pragma once

#include "lib/engine/block.hpp"
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

  // Scratch of one step (N * B rows), laid out like the engine's (views after their buffers).
  ForwardOnly fwd_only;
  std::vector<BlockActs> suffix;
  BlockActs shared;
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

  // The N slots' rows as the block description takes them (block.hpp): slot
  // s in rows s*B.., its ring at s*C, its prime weights matrix s of the packed
  // tensors when sessions train.
  block::Pass pass(bool keep);
};

}  // namespace ttt
