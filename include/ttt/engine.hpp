// The TTT-E2E engine on one OpenCL device, in two parts:
//  - Engine: what documents share: the model's device weights (laid out by the
//    parameter table), the kernels and the scratch of one mini-batch;
//  - Session: one document's state: its position, the key/value rings of every
//    block (the last W + B - 1 keys/values, so memory does not grow with the
//    document), its live prime weights and their gradients.
// A mini-batch of n <= B tokens runs as phases on a session:
//   forward(ids) -> score(targets) -> train() -> sync()
// and generation uses forward + logits. Several sessions may live on one
// engine; each costs only its own state. They share the engine's scratch, so a
// session's score/train/logits must follow its own forward with no other
// session's forward in between (checked). An engine runs on a Runtime
// (ttt/device.hpp), which must outlive it.
#pragma once

#include "ttt/device.hpp"
#include "ttt/error.hpp"
#include "ttt/model.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ttt {

struct EngineOptions {
  bool ttt = true;                // sessions' default; false also skips the training scratch
  std::optional<float> inner_lr;  // overrides config.inner_lr (sessions' default)
  int vocab_tile = 8192;          // columns of logits held at once
  // Attention window in tokens; 0: the model's sliding_window_size. A window
  // at least as long as every document is full attention (the key/value rings
  // then hold window + B - 1 rows: they grow with the context, not the model).
  int window = 0;
  // Storage type of the weight matrices on the device (not norm gains: f32
  // always; the prime MLPs are stored as t too, and a session that trains
  // holds its live copy of them, widened exactly, and their gradients in f32).
  // Kernels widen as they read and accumulate in f32. Unset (auto): the file's (Model::dtype), so an f32 file
  // stays f32 and a bf16 checkpoint stays bf16 (half the bytes).
  std::optional<DType> weight_dtype = std::nullopt;
  // Storage type of the key/value rings on the device: f32, or f16 (half the
  // bytes of the largest part of a session). Keys and values are rounded to
  // nearest even as they enter a ring; attention widens them as it reads and
  // accumulates in f32, and the test-time step's gradients are taken at the
  // stored (rounded) keys and values. bf16 is refused. SessionState stays f32.
  DType kv_dtype = DType::F32;
  // Speed knobs that never change the numbers (docs/performance.md, "CLBlast's copies").
  // head_tiles: keep a second copy of an f32 output embedding laid out per
  // logits tile, so that CLBlast reads each tile as it is instead of
  // transposing it on every call. Taken only where that transposition would
  // happen (an f32 head and a column-major GEMM plan: the CPU tuning records);
  // costs V x D floats of device memory (376 MB for 125m) for 6-8% less CPU
  // time per prefill there. $TTT_HEAD_TILES=on|off, when set, overrides it.
  bool head_tiles = false;
  // gemm_views: a GEMM operand at an aligned non-zero offset is handed to
  // CLBlast as a sub-buffer instead of copied by it (the GEMM plan's views).
  // A setting of the runtime's context: the engine sets it when it is built,
  // for every GEMM there from then on. $TTT_GEMM_VIEWS=on|off, when set,
  // overrides it (the switch the measurements used).
  bool gemm_views = true;
};

struct SessionOptions {
  std::optional<bool> ttt;        // test-time training; default: the engine's
  std::optional<float> inner_lr;  // default: the engine's
};

// Figures of the last mini-batch, for progress displays and diagnostics.
struct StepInfo {
  int64_t chunk = 0;        // mini-batch index in the document
  bool updated = false;     // whether it took a test-time update
  float grad_norm = 0;      // global gradient norm before clipping (updated chunks)
  float weight_norm = 0;    // global norm of the prime weights after the update
};

// A session's whole state on the host (Session::state, Session::restore):
// its position, every block's key/value ring (row p % rows holds position p)
// and its live trainable weights, in the parameter table's order. Always f32:
// f16 rings (EngineOptions::kv_dtype) widen exactly into it, and restore()
// rounds to nearest even into them (exact for a state taken from f16 rings).
struct SessionState {
  int64_t position = 0;
  std::vector<std::vector<float>> keys, values;  // per block: (ring rows, hidden_size)
  std::vector<std::vector<float>> prime;         // per trainable tensor
};

class Session;

namespace detail {
struct EngineAccess;
}

class Engine {
 public:
  Engine(Runtime& runtime, const Model& model, EngineOptions opts = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Config& config() const;
  Runtime& runtime() const;
  bool ttt() const;
  float inner_lr() const;
  int window() const;  // the attention window in effect
  // Device bytes in all (shared part plus the engine's own session), and of one
  // more session with the engine's default options (key/value rings, live prime
  // weights and their gradients when it trains).
  size_t device_bytes() const;
  size_t session_bytes() const;
  size_t weight_bytes() const;  // the weights alone, each in its storage type
  DType weight_dtype() const;   // the weight matrices' storage type (EngineOptions::weight_dtype resolved)
  DType kv_dtype() const;       // the key/value rings' storage type (EngineOptions::kv_dtype)

  // The engine's own session (the engine's options), for one document at a
  // time: engine.session().evaluate(tokens) scores a document.
  Session& session();

  struct Impl;

 private:
  friend struct detail::EngineAccess;
  Runtime* runtime_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Session> own_;
};

class Session {
 public:
  explicit Session(Engine& engine, SessionOptions opts = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool ttt() const;  // whether it takes test-time steps (training on and a prime MLP to train)
  float inner_lr() const;
  // Tokens forwarded so far (the position of the next token).
  int64_t position() const;
  int mini_batch() const;      // B
  int forward_tokens() const;  // tokens of the last forward (0: none yet)
  // Fresh document: position 0, empty key/value windows, prime weights as loaded.
  void reset();

  // Runs n = ids.size() (1..B) tokens through every block at the next
  // positions, appending their keys and values, up to the final norm. Enqueued.
  void forward(std::span<const int32_t> ids);
  // NLL of each row of the last forward against targets (same length), and,
  // when that forward was a full mini-batch with test-time training on, the
  // gradient train() needs. Enqueued; sync() returns the NLLs.
  void score(std::span<const int32_t> targets);
  // Logits of one row of the last forward over the whole vocabulary. Blocks:
  // the host's one wait per generated token.
  std::vector<float> logits(int row);
  // Generation: the mini-batch that ends at the current position (a multiple
  // of B) was forwarded in pieces (a prompt's tail, then one token at a time),
  // which keep no activations. This runs it again with them kept, scores it
  // against targets and takes its test-time step, exactly as a prefill of the
  // same tokens would: the weights have not changed since those pieces ran, so
  // it rewrites the same ring rows with the same keys and values. Enqueued;
  // sync() returns the NLLs. ids and targets hold B tokens each.
  bool replay(std::span<const int32_t> ids, std::span<const int32_t> targets);
  // Benchmarks: jumps to `position` with pseudo-random keys and values in the
  // window (per-token latency does not depend on their values), instead of
  // prefilling position tokens.
  void fill_random(int64_t position, uint64_t seed);
  // The test-time step on the last forward's mini-batch if it takes one
  // (Config::takes_update: training on and a full mini-batch); needs score()
  // first. Enqueued; returns whether it was taken.
  bool train();
  // Waits for everything enqueued and checks it: throws ttt::Error naming the
  // mini-batch on a non-finite loss, gradient or weight (the weights are then
  // left as they were before the step). Returns the last score's NLLs.
  const std::vector<float>& sync();

  // forward + score + train + sync: scores the next n = inputs.size() (1..B)
  // tokens (inputs[i] predicts targets[i]) and writes their n NLLs; targets
  // and nll hold n each (checked).
  void step(std::span<const int32_t> inputs, std::span<const int32_t> targets, std::span<float> nll);
  // A whole document from a fresh state: T tokens give T-1 NLLs. progress is
  // called after each mini-batch with (tokens scored, total).
  std::vector<float> evaluate(std::span<const int32_t> tokens,
                              const std::function<void(size_t, size_t)>& progress = {});

  // The whole state, downloaded; restore() uploads one taken from a session
  // of the same engine shape (checked: ring and weight sizes) and leaves no
  // last forward (the next phase is a forward). A position may be moved back
  // by up to B tokens (to re-forward them: their ring rows are overwritten).
  SessionState state() const;
  void restore(const SessionState& st);

  const StepInfo& last_step() const;
  // Writes the current (adapted) trainable weights into m.
  void download_prime(Model& m) const;
  size_t device_bytes() const;

  struct Impl;

 private:
  friend struct detail::EngineAccess;
  std::unique_ptr<Impl> impl_;
};

// Throws ttt::Error naming `origin`, the index and the value of the first id outside [0, vocab).
void check_token_ids(std::span<const int32_t> ids, int vocab, const std::string& origin);

}  // namespace ttt
