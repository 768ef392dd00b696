// Batched sessions: N documents scored together on one engine, one mini-batch
// of N * B rows per step. Each document (slot) keeps its own position,
// key/value rings and prime weights; the other weights are the engine's. Rows
// run through the shared weights as one GEMM, the prime MLPs as strided-batched
// GEMMs (one matrix per slot), attention per slot against its own ring; the
// test-time step is per slot (its own gradient, clip and SGD). A slot whose
// document ends takes the next one, so documents of any lengths share a batch.
// The NLLs equal Session::evaluate's of each document alone (to rounding).
#pragma once

#include "ttt/engine.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ttt {

struct BatchDocument {
  size_t index = 0;                  // the caller's name for it, handed back to done()
  std::span<const int32_t> tokens;   // >= 2 tokens; must stay alive until done() for it
};

class BatchSession {
 public:
  // slots >= 1 documents at a time; its own scratch of slots * B rows.
  BatchSession(Engine& engine, int slots, SessionOptions opts = {});
  ~BatchSession();
  BatchSession(const BatchSession&) = delete;
  BatchSession& operator=(const BatchSession&) = delete;

  int slots() const;
  size_t device_bytes() const;

  // Scores documents until next() returns nothing and every slot has drained:
  // each free slot takes next()'s document; done(index, nll) is called once per
  // document as soon as its last mini-batch is scored (T tokens give T-1 NLLs),
  // in the order documents finish; progress(n) after each step with the tokens
  // it scored, before that step's done() calls. stop, when given, is asked
  // after each step's done() calls while a document is in a slot: true ends
  // the run there, each document still in a slot handed to cut(index, nll of
  // its scored prefix), so an interrupt waits for one step, not for the
  // longest document in flight.
  void run(const std::function<std::optional<BatchDocument>()>& next,
           const std::function<void(size_t, std::vector<float>)>& done,
           const std::function<void(size_t)>& progress = {}, const std::function<bool()>& stop = {},
           const std::function<void(size_t, std::vector<float>)>& cut = {});
  // Every document of docs; the NLLs in docs' order.
  std::vector<std::vector<float>> evaluate(const std::vector<std::span<const int32_t>>& docs);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ttt
