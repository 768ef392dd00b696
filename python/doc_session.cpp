// DocSession: the mini-batch bookkeeping of a document fed in pieces. The
// session's position is how far the document has been forwarded; done_ counts
// the mini-batches scored. Until flush(): done_ * B <= position <= size and
// size - 1 < (done_ + 1) * B once feed() returns.
#include "python/doc_session.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace ttt::py {

DocSession::DocSession(Engine& engine, SessionOptions opts)
    : s_(engine, opts), B_(engine.config().mini_batch_size), vocab_(engine.config().vocab_size) {}

void DocSession::forward_upto(int64_t end) {
  while (s_.position() < end) {
    const int64_t f = s_.position(), n = std::min<int64_t>(B_, end - f);
    s_.forward({doc_.data() + f, size_t(n)});
  }
}

int64_t DocSession::pending() const {
  return std::max<int64_t>(0, int64_t(doc_.size()) - 1 - done_ * B_) * !ended_;
}

std::vector<float> DocSession::feed(std::span<const int32_t> ids, const std::function<bool()>& stop) {
  if (ended_) throw Error("Session.feed: flush() ended the document; reset() starts another");
  check_token_ids(ids, vocab_, "Session.feed ids");
  doc_.insert(doc_.end(), ids.begin(), ids.end());
  if (!ids.empty()) fresh_ = false;
  const int64_t B = B_, n = int64_t(doc_.size());
  while ((done_ + 1) * B <= n - 1) {
    const int64_t c0 = done_ * B;
    const std::span<const int32_t> in{doc_.data() + c0, size_t(B)}, tg{doc_.data() + c0 + 1, size_t(B)};
    const size_t at = out_.size();
    out_.resize(at + size_t(B));
    if (s_.position() == c0) {  // never forwarded: the very calls of Session::evaluate
      s_.step(in, tg, std::span<float>(out_).subspan(at));
    } else {  // forwarded in pieces by logits(): finish it, then replay it with activations kept
      forward_upto(c0 + B);
      s_.replay(in, tg);
      const std::vector<float>& nll = s_.sync();
      std::copy(nll.begin(), nll.end(), out_.begin() + long(at));
    }
    ++done_;
    if (stop && stop()) break;
  }
  return std::exchange(out_, {});
}

std::vector<float> DocSession::flush() {
  if (!ended_) {
    const int64_t c0 = done_ * B_, k = int64_t(doc_.size()) - 1 - c0;
    if (k > 0 && s_.position() == c0) {
      const size_t at = out_.size();
      out_.resize(at + size_t(k));
      s_.step({doc_.data() + c0, size_t(k)}, {doc_.data() + c0 + 1, size_t(k)}, std::span<float>(out_).subspan(at));
    } else if (k > 0) {
      // logits() forwarded the tail in pieces that kept no activations: the
      // tail is scored as evaluate scores it, from a fresh state (the same steps).
      const std::vector<float> all = s_.evaluate(doc_);
      out_.insert(out_.end(), all.begin() + long(c0), all.end());
    }
    ended_ = true;
    fresh_ = false;
  }
  return std::exchange(out_, {});
}

const std::vector<float>& DocSession::logits() {
  if (doc_.empty()) throw Error("Session.logits: no token fed yet (feed a document first)");
  if (fresh_) return logits_;
  const int64_t n = int64_t(doc_.size());
  if (s_.position() >= n) {
    // Only after flush()'s evaluate, which forwarded every input but the last token.
    throw Error("Session.logits: the document's end was forwarded without its logits; reset() and feed it again");
  }
  forward_upto(n);
  logits_ = s_.logits(s_.forward_tokens() - 1);
  fresh_ = true;
  return logits_;
}

Decoder::Saved DocSession::save() const {
  if (ended_) throw Error("Session.save: flush() ended the document; save before flush(), or reset() and start another");
  Decoder::Saved out{doc_, done_, s_.ttt() ? done_ : 0, s_.state()};
  // position is in done_ * B .. size <= (done_ + 1) * B: moving back to done_ * B is at most B (Session::restore).
  out.session.position = done_ * B_;
  return out;
}

void DocSession::load(const Decoder::Saved& saved) {
  reset();
  const int64_t B = B_, n = int64_t(saved.tokens.size()), pos = saved.session.position;
  // Without test-time training a Decoder forwards whole mini-batches without scoring them (done stays 0):
  // those up to pos count as scored here, so that the next mini-batch is forwarded and scored in one step.
  const int64_t done = s_.ttt() ? saved.done : std::max<int64_t>(saved.done, pos / std::max<int64_t>(B, 1));
  if (n > 0 && (done + 1) * B <= n - 1)
    throw Error(fmt::format("a saved document of {} tokens with {} mini-batches scored leaves more than one "
                            "mini-batch unscored (mini-batch {})",
                            n, done, B));
  check_token_ids(saved.tokens, vocab_, "the saved session's tokens");
  const Decoder restore(s_, saved);  // checks the position against the mini-batches and restores s_
  doc_ = saved.tokens;
  done_ = done;
}

void DocSession::reset() {
  s_.reset();
  doc_.clear();
  out_.clear();
  logits_.clear();
  done_ = 0;
  ended_ = fresh_ = false;
}

}  // namespace ttt::py
