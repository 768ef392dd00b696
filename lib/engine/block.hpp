// The one description of a TTT-E2E block and of the head, which every
// execution path runs: one document (Session), N documents (BatchSession),
// the whole-document training pass (FullGradient and its meta tail) and one
// decoded token (a Session at T = 1). What differs between the paths is a
// parameter of the description, a `Pass`, never a copy of the math:
//   - how the rows are laid out: the documents whose rows they are, each with
//     its positions and its key/value ring (`docs`, `seg`);
//   - where each weight comes from: one matrix for every row, or a copy per
//     group of rows (a slot's live prime weights, meta's per-mini-batch
//     copies) (`w`);
//   - which weight gradients are wanted and where they go (`g`);
//   - which product serves a one-row forward (`matvec`).
// The forward keeps what the backward needs in a BlockActs; the backward runs
// the forward's steps in exact reverse order.
//
//   a = attn(RMSNorm(x, seq_norm));            x += RMSNorm(a, seq_post_norm)
//   m = SwiGLU_prime(RMSNorm(x, prime_norm));  x += RMSNorm(m, prime_post_norm)   (suffix blocks)
//   m = SwiGLU_mlp(RMSNorm(x, ffn_norm));      x += RMSNorm(m, ffn_post_norm)
#pragma once

#include "lib/engine/impl.hpp"

#include <array>
#include <functional>
#include <vector>

namespace ttt::block {

// Where one device tensor's values come from: one matrix at `off` elements, or
// (stride > 0) a copy per group of `Pass::group` rows, copy k at off + k * stride;
// stored as `dtype` (the parameter table's: 16-bit ones are read widened, and
// only ungrouped ones may be 16-bit, since grouped copies are trained).
struct WeightRef {
  const Buffer* buf = nullptr;
  size_t off = 0;
  size_t stride = 0;
  DType dtype = DType::F32;
};

// Where one device tensor's gradient goes: nowhere (buf null), summed over all
// rows (stride 0), or for a grouped weight one gradient per group (stride > 0).
// Gradients are written (beta 0), never accumulated.
struct GradRef {
  Buffer* buf = nullptr;
  size_t stride = 0;
};

// The rows of one document in a pass: rows row0 .. row0 + n - 1 hold its
// positions pos .. pos + n - 1; its ring starts at ring row ring0.
struct Document {
  int row0 = 0, n = 0;
  int64_t pos = 0;
  size_t ring0 = 0;
};

// The backward's scratch for one MLP sub-layer (T rows each).
struct MlpScratch {
  Buffer& dm;    // (T, D)
  Buffer& dg;    // (T, I)
  Buffer& dh13;  // (T, 2I)
  Buffer& dhn;   // (T, D)
};

// The backward's scratch for a whole block.
struct Scratch {
  MlpScratch mlp;
  Buffer& dqkv;  // (T, 3D)
  Buffer& dqr;   // (T, D)
  Buffer& dkr;   // (T, D)
  Buffer& dsum;  // (T, H)
};

// The scratch of any owner with the members alloc_backward_scratch fills.
template <typename Owner>
Scratch scratch_of(Owner& o) {
  return {{o.dm, o.dg, o.dh13, o.dhn}, o.dqkv, o.dqr, o.dkr, o.dsum};
}

struct Pass {
  Pass(host::Context& ctx_, const Engine::Impl& e_) : ctx(ctx_), e(e_) {}
  host::Context& ctx;
  const Engine::Impl& e;  // config, block indices, window W, ring rows C, matvec choice
  int T = 0;              // rows
  int group = 0;          // rows per copy of a grouped weight (0: none is grouped)
  std::vector<Document> docs;
  // N documents of `group` rows each: their {pos, n} on the device (attention's
  // batched kernels); null: one document, docs[0].
  const Buffer* seg = nullptr;
  const Buffer* cs = nullptr;                        // RoPE table, a row per row
  std::vector<Buffer>* kc = nullptr, *vc = nullptr;  // key/value ring per block
  std::vector<WeightRef> w;                          // per device tensor
  std::vector<GradRef> g;                            // per device tensor (empty: no weight gradient)

  const Buffer& weight(int idx) const;  // an ungrouped weight's buffer (norm gains, the head)
  bool wants_grad(int idx) const { return !g.empty() && g[size_t(idx)].buf; }
};

// Every device tensor from one matrix each: `live` where set (a session's own
// prime weights), else the engine's.
std::vector<WeightRef> weights_of(const Engine::Impl& e, const std::vector<Buffer>& live);

// Products against a device tensor, as the tensor's WeightRef says. A 16-bit
// weight is multiplied by the matvec kernels as stored (one row), else widened
// into the engine's `wide` scratch just before its GEMM.
// out (T, N) = in (T, K) @ W, W (K, N).
void linear(const Pass& p, Buffer& out, const Buffer& in, int idx, int K, int N, const char* label);
// din (T, K) = dout (T, N) @ W^T.
void linear_dx(const Pass& p, Buffer& din, const Buffer& dout, int idx, int K, int N, const char* label);
// dW (K, N) = in^T dout, into the tensor's GradRef (nothing when none).
void linear_dw(const Pass& p, int idx, const Buffer& in, const Buffer& dout, int K, int N, const char* label);

// One block's residual stream: x0 -> x1 (after attention) -> x2 (after the
// prime MLP) -> x3. A block whose activations are not kept passes one buffer
// for all four (the residual adds are element-wise, so they run in place).
struct BlockIO {
  BlockActs* acts = nullptr;
  std::array<Buffer*, 4> x{};
};

// A mini-batch pass of a session (one document or N): the blocks whose
// activations the test-time step needs (the suffix, when `keep`) each use
// their own set and stream buffers; the others share one set, in place.
std::function<BlockIO(int)> stream_io(Residual& x, BlockActs& shared, std::vector<BlockActs>& suffix, int first,
                                      bool keep);

// Sub-layers. mlp_fwd: xout = xin + RMSNorm(SwiGLU(RMSNorm(xin, pre)), post).
void mlp_fwd(const Pass& p, const MlpIdx& w, int pre, int post, MlpActs& a, Buffer& xin, Buffer& xout);
// dxio: dL/d(xout) on entry; dL/d(xin) on exit unless !need_dx (only the weight gradients wanted).
void mlp_bwd(const Pass& p, const MlpIdx& w, int pre, int post, MlpActs& a, Buffer& xin, Buffer& dxio,
             bool need_dx, const MlpScratch& s);
// The attention sub-layer of block l; its keys and values enter the documents' rings.
void attn_fwd(const Pass& p, int l, BlockActs& a, Buffer& x0, Buffer& x1);
// d: dL/dx1 on entry, dL/dx0 on exit. Carried keys and values are constants.
void attn_bwd(const Pass& p, int l, BlockActs& a, Buffer& x0, Buffer& d, const Scratch& s);

void block_fwd(const Pass& p, int l, const BlockIO& io);

// A progress mark after a phase of the pass (Runtime::mark_progress; nothing
// when marking is off): "tokens 64-127: forward, block 3/12 done" for block k
// of n, "tokens 64-127: loss done" when n is 0.
void mark(const Pass& p, const char* phase, int k = 0, int n = 0);

// The forward of every block from the embedding of `ids` to the final norm
// (hf, rsf), block l through io(l); a mark after each block.
void forward(const Pass& p, const Buffer& ids, const std::function<BlockIO(int)>& io, Buffer& hf, Buffer& rsf);

// How far a backward goes.
enum class Reach {
  prime_weights,  // the test-time step: down to the first prime MLP's weight gradients
  embedding,      // training: every block, the embedding's gradient included
};
// From dhf = dL/d(final norm output) down through the blocks, into the Pass's
// gradients; d is the residual gradient (T, D), updated in place.
// after_prime(l, d), when set, runs once block l's prime MLP has its backward
// (d = dL/dx1 of block l then). A mark after each block.
void backward(const Pass& p, const std::function<BlockIO(int)>& io, const Buffer& ids, Buffer& dhf, Buffer& rsf,
              Buffer& d, Reach reach, const Scratch& s,
              const std::function<void(int, Buffer&)>& after_prime = nullptr);

// The head's final norm: hf = RMSNorm(x, ln_f) (normalised always).
void final_norm_fwd(const Pass& p, Buffer& hf, Buffer& rsf, Buffer& x);
// d = dL/dx from dhf (written), and ln_f's gradient when wanted.
void final_norm_bwd(const Pass& p, Buffer& d, Buffer& dhf, Buffer& x, Buffer& rsf);

}  // namespace ttt::block
