// A document fed in pieces (tttcl.Model.session()): tokens are buffered into
// the mini-batches Session::evaluate cuts (inputs cB..cB+B-1 once token
// (c+1)B exists), each scored and trained by the same calls, so the NLLs of
// the pieces, concatenated with flush()'s tail, equal evaluate's on the whole
// document bit for bit. logits() forwards the unscored tail as Decoder does;
// the mini-batch is then replayed with its activations kept (Session::replay).
#pragma once

#include "ttt/decode.hpp"
#include "ttt/engine.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace ttt::py {

class DocSession {
 public:
  DocSession(Engine& engine, SessionOptions opts);

  // Appends ids and scores (and trains on) every mini-batch whose targets are
  // now all known; returns the NLLs scored since the last call. stop() is
  // asked after every mini-batch: true leaves the rest pending (scored by the
  // next feed or flush) and keeps what was scored for the next call.
  std::vector<float> feed(std::span<const int32_t> ids, const std::function<bool()>& stop);
  // Ends the document: scores the tail of fewer than B predicted tokens (no
  // test-time step, as evaluate's last mini-batch) and returns every NLL not
  // returned yet. feed() then refuses until reset().
  std::vector<float> flush();
  // NLLs a caller could not hand on (an interrupt): returned first by the next call.
  void hold(std::vector<float> nll) { out_.insert(out_.begin(), nll.begin(), nll.end()); }
  // Logits predicting the token after the last one fed (blocks).
  const std::vector<float>& logits();
  void reset();

  // The document so far as a session file holds it (Decoder::save's form):
  // every token fed, the pending ones included, and the session moved back to
  // the first unscored mini-batch, which the next feed() or flush() after
  // load() scores (and trains on) as an uninterrupted document would. NLLs
  // already scored are not part of it. Refused after flush().
  Decoder::Saved save() const;
  // Replaces the document by a saved one (checked as Decoder's restoring
  // constructor checks it). A file written by a Decoder without test-time
  // training (which forwards whole mini-batches unscored) continues from its
  // position: those tokens' NLLs are not returned.
  void load(const Decoder::Saved& saved);

  int64_t position() const { return int64_t(doc_.size()); }
  // Tokens whose NLL is not scored yet (the incomplete mini-batch).
  int64_t pending() const;
  bool ended() const { return ended_; }
  bool ttt() const { return s_.ttt(); }
  const Session& session() const { return s_; }

 private:
  void forward_upto(int64_t end);
  Session s_;
  int B_, vocab_;
  std::vector<int32_t> doc_;
  std::vector<float> out_, logits_;  // NLLs scored but not returned; the cached logits
  int64_t done_ = 0;                 // mini-batches scored
  bool ended_ = false, fresh_ = false;
};

}  // namespace ttt::py
