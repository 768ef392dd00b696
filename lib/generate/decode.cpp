// Decoder: mini-batch bookkeeping of generation on a session. The session's
// position is how far the document has been forwarded; done_ counts the
// mini-batches whose step is taken. Invariant: done_ * B <= position <= (done_ + 1) * B
// once append() returns, so a mini-batch is never half-forwarded and then
// forwarded again from its start.
#include "ttt/decode.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ttt {

Decoder::Decoder(Session& s) : s_(s) { s_.reset(); }

Decoder::Saved Decoder::save() const {
  Saved out{doc_, done_, steps_, s_.state()};
  const int64_t B = s_.mini_batch();
  out.session.position = out.session.position / B * B;
  return out;
}

Decoder::Saved Decoder::scored(Session& s, std::vector<int32_t> tokens) {
  const int64_t B = s.mini_batch(), n = int64_t(tokens.size());
  if (n < 1 || s.position() != n - 1)
    throw Error(fmt::format("Decoder::scored: a session at position {} did not score a document of {} tokens",
                            s.position(), n));
  // Every mini-batch whose targets were all known took its step (as append() takes them).
  const int64_t done = s.ttt() ? (n - 1) / B : 0;
  Saved out{std::move(tokens), done, done, s.state()};
  out.session.position = out.session.position / B * B;
  return out;
}

Decoder::Decoder(Session& s, const Saved& saved) : s_(s), doc_(saved.tokens), done_(saved.done), steps_(saved.steps) {
  const int64_t B = s_.mini_batch(), n = int64_t(doc_.size()), pos = saved.session.position;
  // The invariant of append(): a session holds the document's first pos tokens, pos a multiple of B at most one
  // mini-batch past the ones stepped.
  if (pos % B != 0 || pos > n || done_ < 0 || done_ * B > pos || (s_.ttt() && pos > (done_ + 1) * B) || steps_ < 0)
    throw Error(fmt::format("a saved document of {} tokens at position {} with {} mini-batches stepped does not fit "
                            "a session of mini-batch {}",
                            n, pos, done_, B));
  s_.restore(saved.session);
}

void Decoder::forward_upto(int64_t end) {
  const int64_t B = s_.mini_batch();
  while (s_.position() < end) {
    const int64_t f = s_.position(), n = std::min(B, end - f);
    s_.forward({doc_.data() + f, size_t(n)});
  }
}

void Decoder::append(std::span<const int32_t> ids) {
  if (ids.empty()) return;
  doc_.insert(doc_.end(), ids.begin(), ids.end());
  fresh_ = false;
  const int64_t B = s_.mini_batch(), n = int64_t(doc_.size());
  if (!s_.ttt()) {
    // No steps: forward whole mini-batches as they fill, leave the tail to logits().
    forward_upto(s_.position() + (n - s_.position()) / B * B);
    return;
  }
  // Mini-batch c (inputs cB..cB+B-1) has all its targets once token (c+1)B exists.
  while ((done_ + 1) * B <= n - 1) {
    const int64_t c0 = done_ * B, f = s_.position();
    const std::span<const int32_t> in{doc_.data() + c0, size_t(B)}, tg{doc_.data() + c0 + 1, size_t(B)};
    if (f == c0) {  // never forwarded: a prefill step
      s_.forward(in);
      s_.score(tg);
      s_.train();
    } else {  // forwarded in pieces: finish it, then replay it with activations kept
      forward_upto(c0 + B);
      s_.replay(in, tg);
    }
    const std::vector<float>& nll = s_.sync();
    nll_.insert(nll_.end(), nll.begin(), nll.end());
    steps_ += s_.last_step().updated;
    ++done_;
  }
}

const std::vector<float>& Decoder::logits() {
  if (doc_.empty()) throw Error("Decoder::logits: the document is empty (append a prompt first)");
  if (fresh_) return logits_;
  // When append() already forwarded up to the end (whole mini-batches without
  // test-time training), the last forward's last row is the one wanted.
  const int64_t n = int64_t(doc_.size());
  forward_upto(n);
  logits_ = s_.logits(s_.forward_tokens() - 1);
  fresh_ = true;
  return logits_;
}

}  // namespace ttt
