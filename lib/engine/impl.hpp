// Internals of Engine and Session, shared by engine.cpp, session.cpp,
// forward.cpp and backward.cpp; not part of the public API. Device weights are
// the parameter table's device tensors (q|k|v and W1|W3 fused, so each is one
// GEMM), addressed by their index in the table.
#pragma once

#include "lib/engine/options.hpp"
#include "lib/ops/ops.hpp"
#include "ttt/engine.hpp"
#include "ttt/params.hpp"

#include <map>
#include <string>

namespace ttt {

using host::Buffer;

namespace block {
struct Pass;
}  // namespace block

// Device-tensor indices of one MLP and of one block.
struct MlpIdx {
  int w13 = -1;  // (D, 2I): [W1 | W3]
  int w2 = -1;   // (I, D)
};

struct BlockIdx {
  int seq_norm = -1, seq_post_norm = -1, ffn_norm = -1, ffn_post_norm = -1;  // (D)
  int q_norm = -1, k_norm = -1;                                              // (E)
  int wqkv = -1;                                                             // (D, 3D): [Wq | Wk | Wv]
  int wo = -1;                                                               // (D, D)
  MlpIdx mlp;
  bool has_prime = false;
  int prime_norm = -1, prime_post_norm = -1;  // (D)
  MlpIdx prime;
};

// Activations of one MLP sub-layer for the current mini-batch.
struct MlpActs {
  Buffer hn, rs_pre;   // (T, D), (T)
  Buffer h13, g;       // (T, 2I), (T, I)
  Buffer m, rs_post;   // (T, D), (T)
  // hn and g are views of buffers every set of the owner shares (ForwardOnly):
  // the backward computes them again (exactly: the same kernel on the same
  // kept inputs) where a weight gradient needs them.
  bool recompute = false;
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
  bool recompute = false;  // hn1 is a view of a shared buffer, as MlpActs::recompute
};

// The activations that every set of an engine or batched session shares: the
// normed inputs of the projections and the gates. A forward reads each just
// after writing it (the next GEMM), and the backward computes again what a
// weight gradient needs, so no set keeps them: (R, D) and (R, I).
struct ForwardOnly {
  Buffer hn, g;
};

using Alloc = std::function<Buffer(size_t, const char*)>;  // (floats, what)

// Allocates a block's activations for R rows through alloc(floats, what);
// the prime MLP's only when `prime`; with `f`, the normed inputs and gates are
// views of f's (and recomputed by the backward). Engine and BatchSession share it.
void alloc_block_acts(BlockActs& a, size_t R, const Config& c, bool prime, const Alloc& alloc,
                      const ForwardOnly* f = nullptr);
void alloc_mlp_acts(MlpActs& m, size_t R, const Config& c, const Alloc& alloc, const ForwardOnly* f = nullptr);
void alloc_forward_only(ForwardOnly& f, size_t R, const Config& c, const Alloc& alloc);

// The activation set of the blocks whose activations are not kept (Engine and
// BatchSession, R rows), given the kept sets `suffix` (one per prime block,
// empty when sessions do not train): none with kept sets (the first kept set
// serves), else one without prime MLP activations. See engine.cpp for why
// each sharing is safe.
void alloc_shared_acts(BlockActs& shared, std::vector<BlockActs>& suffix, size_t R, const Config& c,
                       const Alloc& alloc, const ForwardOnly* f);

// Views carved from buffers whose contents are dead for a while (each region
// once, first fit, offsets aligned for sub-buffers); what does not fit is
// allocated. The views must not outlive the regions.
class Carver {
 public:
  Carver(std::vector<const Buffer*> regions, size_t align, Alloc alloc);
  Buffer take(size_t floats, const char* what);

 private:
  std::vector<const Buffer*> regions_;
  std::vector<size_t> used_;  // bytes taken from each region
  size_t align_;
  Alloc alloc_;
};

// The backward scratch of R rows (dx, dhf, dm, dg, dh13, dhn, dqkv, dqr, dkr,
// dsum), for any owner with those members: Engine, BatchSession and
// FullGradient. dhf (written by the loss, read by the backward) comes from
// `alloc`, the rest (alive during the backward only) from `during`.
template <typename Owner, typename Alloc1, typename Alloc2>
void alloc_backward_scratch(Owner& s, size_t R, const Config& c, Alloc1 alloc, Alloc2 during) {
  const size_t D = size_t(c.hidden_size), H = size_t(c.num_attention_heads), I = size_t(c.intermediate_size);
  s.dhf = alloc(R * D, "dhf");
  s.dx = during(R * D, "dx");
  s.dm = during(R * D, "dm");
  s.dg = during(R * I, "dg");
  s.dh13 = during(R * 2 * I, "dh13");
  s.dhn = during(R * D, "dhn");
  s.dqkv = during(R * 3 * D, "dqkv");
  s.dqr = during(R * D, "dq");
  s.dkr = during(R * D, "dk");
  s.dsum = during(R * H, "attention dsum");
}

// The regions of a step-taking engine or batched session that are dead while
// its test-time backward runs: the loss's scratch (its logits tile and U,
// read and written only by the vocabulary sweep, which runs before the
// backward) and the first kept set's attention activations (the backward
// stops at the first prime block's prime MLP, before its attention; hn1, a
// view, is left out).
std::vector<const Buffer*> dead_during_backward(const ops::XentScratch& xent, const BlockActs& first);

// The residual stream of one mini-batch, (T, D) per buffer. Blocks whose
// activations are not kept run in place in shared(); suffix block j reads
// in(j) and writes after_attn(j), after_prime(j) and out(j) == in(j + 1).
struct Residual {
  std::vector<Buffer> b;
  Buffer& shared() { return b[0]; }
  Buffer& in(size_t j) { return b[3 * j]; }
  Buffer& after_attn(size_t j) { return b[3 * j + 1]; }
  Buffer& after_prime(size_t j) { return b[3 * j + 2]; }
  Buffer& out(size_t j) { return b[3 * j + 3]; }
  Buffer& last() { return b.back(); }
};

struct Engine::Impl {
  host::Context& ctx;
  Config c;
  EngineOptions opts;
  float lr = 0;
  int B = 0, C = 0, W = 0;  // mini-batch, ring rows, attention window
  ParamTable table;             // each device tensor's storage type set (store_weights)
  std::vector<Buffer> weights;  // one per device tensor in its storage type; trainable ones hold the values as loaded
  // A 16-bit weight of the blocks widened to f32 for a GEMM (block::linear),
  // and a tile of a 16-bit head widened for the loss's sweep (xent.wide, a
  // view of it: the sweep and the blocks' GEMMs never run at once): as large
  // as the largest such tensor; empty when every weight is f32.
  mutable Buffer wide;
  // The output embedding laid out for the logits GEMMs (ops::xent's `tiles`):
  // for each vocabulary tile of opts.vocab_tile rows, its (D, nv) transpose,
  // row stride nv, at element v0 * D. Kept when the head is stored in f32 and
  // the GEMM plan hands CLBlast column-major products (the CPU records): its
  // kernel then reads each tile as laid out here, where from wte (tb = T) it
  // transposed the tile into a temporary on every call (docs/performance.md,
  // "CLBlast's copies"). Written with the head (upload_tensor). Opt-in
  // (EngineOptions::head_tiles, $TTT_HEAD_TILES): they cost V x D floats (376 MB
  // for 125m, a fifth of its device memory) for 6-8% less CPU time per prefill;
  // empty otherwise.
  Buffer head_tiles;
  std::vector<BlockIdx> blocks;
  int wte = -1, ln_f = -1, head = -1;  // head: lm_head, or wte when tied
  size_t bytes = 0, per_session = 0;
  std::map<std::string, size_t> parts;  // bytes by part (device_parts)
  const char* part = "other";           // the part alloc() counts into

  // Scratch of one mini-batch, shared by the sessions. Members that hold views
  // of others are declared after them (a view must not outlive its buffer).
  ForwardOnly fwd_only;
  std::vector<BlockActs> suffix;  // one per prime block, kept for the backward
  BlockActs shared;               // prefix blocks (and all blocks of sessions that do not train)
  Residual stream;
  Buffer ids, targets, cs, nll, hf, rsf, logits;
  ops::XentScratch xent;
  Buffer dx, dhf, dm, dg, dh13, dhn, dqkv, dqr, dkr, dsum;  // backward scratch
  // Which session's forward the scratch holds: its Impl and the forward's serial number.
  const void* owner = nullptr;
  uint64_t forwards = 0;
  MatVec matvec = MatVec::Kernels;  // set_matvec (lib/engine/options.hpp)

  Impl(host::Context& ctx, const Model& m, EngineOptions o);
  Buffer alloc(size_t floats, const char* what);
  Buffer alloc_bytes(size_t bytes, const char* what);
  void upload(const Model& m);
  // Device tensor i from the model, in its storage type.
  void upload_tensor(size_t i, const Model& m);
  DType dtype(int idx) const { return table.device[size_t(idx)].dtype; }
  void alloc_acts(BlockActs& a, bool prime);
  bool can_train() const { return opts.ttt && c.num_prime_blocks() > 0; }
  DType kv() const { return opts.kv_dtype; }
  size_t kv_size() const { return ops::stored_size(opts.kv_dtype); }  // bytes of one ring element
  // The scratch now holds a forward of `who` (a session, a batched session, a
  // training pass): any other session's score, logits or train must run its
  // forward again first.
  uint64_t claim_scratch(const void* who) {
    owner = who;
    return ++forwards;
  }
};

// The settings a session runs with, one document or N: its options over the
// engine's, checked in this one place for every path.
struct SessionSettings {
  bool ttt = true;  // takes test-time steps (the option, and a model with prime blocks)
  float lr = 0;     // inner learning rate
};
SessionSettings resolve(const Engine::Impl& e, const SessionOptions& o);

struct Session::Impl {
  Engine::Impl& e;
  bool ttt = true;
  float lr = 0;
  int64_t pos = 0;
  StepInfo info;
  size_t bytes = 0;
  std::map<std::string, size_t> parts;  // bytes by part (device_parts)

  std::vector<Buffer> kc, vc;      // per block: key/value ring (C, D) of kv_dtype, position p at row p % C
  // Per device tensor, trainable ones only (others empty): the live f32 prime
  // weights of a session that trains, and their gradients. A session without
  // test-time training reads the engine's (live stays empty) unless restore()
  // gave it weights of its own.
  std::vector<Buffer> live, grad;
  Buffer partial, gstats, wstats;

  // The last forward and what followed it.
  int64_t fwd_pos = 0;
  int fwd_n = 0;
  bool fwd_keep = false;  // kept the suffix activations (a step-taking mini-batch)
  uint64_t fwd_serial = 0;
  bool scored = false, trained = false;

  // Host staging of enqueued transfers, alive until the queue drains: sync(),
  // a blocking read, or restage() before the staging is written again.
  // Per staging area: a transfer enqueued since the queue last drained may still read or write it.
  enum Staging { kIds, kTargets, kStats, kStagings };
  bool staged[kStagings] = {false, false, false};
  void restage(Staging which) {  // before `which` is written again
    if (staged[which]) drained();
    staged[which] = true;
  }
  void drained() {
    e.ctx.finish();
    for (bool& b : staged) b = false;
  }
  std::vector<int32_t> h_ids, h_targets;
  std::vector<float> h_cs, h_nll;
  float h_g[3] = {0, 0, 0}, h_w[3] = {0, 0, 0};

  Impl(Engine::Impl& e, SessionOptions o);
  ~Impl();  // drains the queue: enqueued transfers still point into the staging above
  Buffer alloc(size_t floats, const char* what, const char* part);
  Buffer alloc_bytes(size_t n, const char* what, const char* part);
  // The live copies of the trainable tensors, widened from the engine's (reset); allocated when absent.
  void init_live();
  void drop_live();  // back to the engine's weights (a session without test-time training)
  // Trainable tensor i as the session's forward reads it, in f32: its live copy or the engine's, widened.
  std::vector<float> prime_values(size_t i) const;
  std::vector<float> engine_values(size_t i) const;  // the engine's, widened
  bool trains() const { return ttt && e.c.num_prime_blocks() > 0; }
  // The buffer of a device tensor: this session's live copy if trainable, else the engine's.
  Buffer& w(int idx) { return live[size_t(idx)] ? live[size_t(idx)] : e.weights[size_t(idx)]; }
  void require_own_forward(const char* phase) const;

  void run_forward(std::span<const int32_t> ids, int64_t pos0, bool keep);
  block::Pass pass();
  void backward();
  void update();
};

// The Impl behind a public Engine or Session, for the engine's own files.
namespace detail {
struct EngineAccess {
  static Engine::Impl& impl(const Engine& e) { return *e.impl_; }
  static Session::Impl& impl(const Session& s) { return *s.impl_; }
};
}  // namespace detail
inline Engine::Impl& impl_of(const Engine& e) { return detail::EngineAccess::impl(e); }
inline Session::Impl& impl_of(const Session& s) { return detail::EngineAccess::impl(s); }

}  // namespace ttt
