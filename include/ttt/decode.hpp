// Generation on a session: the document so far (prompt, then generated
// tokens) with the test-time step taken on every full mini-batch as soon as
// its targets are known, counting from the document start exactly as
// Session::evaluate chunks it. So generating a text and then scoring it gives
// the same adapted weights and the same NLLs as prefilling it.
//   append(prompt); loop { logits(); id = sample(); append({id}); }
// A complete mini-batch that was never forwarded (inside a prompt) is
// forwarded, scored and trained in one go, like a prefill; one forwarded in
// pieces (a prompt's tail, single tokens) is replayed with its activations
// kept (Session::replay). Per generated token the host waits once, in logits().
#pragma once

#include "ttt/engine.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace ttt {

class Decoder {
 public:
  // Starts a fresh document on the session (resets it).
  explicit Decoder(Session& s);

  // Where a document stands, to continue it later (a session file): its
  // tokens, the mini-batches stepped, and the session state moved back to the
  // last multiple of B, so that continuing forwards the tail exactly as an
  // uninterrupted run does (the ring still holds every row that needs).
  struct Saved {
    std::vector<int32_t> tokens;
    int64_t done = 0, steps = 0;
    SessionState session;
  };
  Saved save() const;
  // What a Decoder that appended tokens would save, from a session that
  // scored them mini-batch by mini-batch from their start (Session::evaluate's
  // way, e.g. a ttt-perplexity document): the same state.
  static Saved scored(Session& s, std::vector<int32_t> tokens);
  // Continues a saved document on s (a session of the same engine shape).
  Decoder(Session& s, const Saved& saved);

  // Appends tokens to the document and takes the test-time step of every
  // mini-batch whose targets are now all known. Forwards nothing else.
  void append(std::span<const int32_t> ids);
  // Logits predicting the token after the document's last one: forwards the
  // tokens not yet forwarded (at most B at a time) and reads one row. Blocks.
  const std::vector<float>& logits();

  const std::vector<int32_t>& tokens() const { return doc_; }
  int64_t steps() const { return steps_; }  // test-time steps taken
  // NLL of every position of the mini-batches scored so far (with test-time
  // training: the completed ones, each scored before its step); positions 0...
  const std::vector<float>& nll() const { return nll_; }
  Session& session() { return s_; }

 private:
  void forward_upto(int64_t end);
  Session& s_;
  std::vector<int32_t> doc_;
  std::vector<float> nll_, logits_;
  int64_t done_ = 0;  // mini-batches whose step was taken (or scored, without training)
  int64_t steps_ = 0;
  bool fresh_ = false;  // logits_ belong to the current document end
};

}  // namespace ttt
