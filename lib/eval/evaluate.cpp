// A pass over the documents a Scheduler hands out: sequential on the engine's
// session, or batched (BatchSession, `parallel` slots).
#include "lib/eval/evaluate.hpp"

#include "ttt/batch.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>

namespace ttt {

using Clock = std::chrono::steady_clock;

std::optional<size_t> LocalScheduler::next() {
  if (todo_.empty()) return std::nullopt;
  const size_t i = todo_.front();
  todo_.pop_front();
  return i;
}

PassEnd evaluate_pass(Engine& engine, SessionOptions opts, const std::vector<Document>& docs, int parallel,
                      Scheduler& sched, const std::function<void(size_t)>& progress, const std::function<bool()>& stop,
                      const PassHooks& hooks) {
  PassEnd end;
  const LogitRows& rows = hooks.rows;
  if ((rows || hooks.document_end) && parallel > 1)
    throw Error(fmt::format("every token's logits (KL divergence) and a document's final state are read one document "
                            "at a time, not with {} in parallel",
                            parallel));
  if (parallel <= 1) {
    const bool own = (!opts.ttt || *opts.ttt == engine.ttt()) && !opts.inner_lr;
    std::optional<Session> mine;
    if (!own) mine.emplace(engine, opts);
    Session& session = own ? engine.session() : *mine;
    const size_t B = size_t(engine.config().mini_batch_size);
    while (!end.interrupted) {
      const auto i = sched.next();
      if (!i) break;
      const auto t0 = Clock::now();
      const std::vector<int32_t>& tokens = docs[*i].tokens;
      const size_t n_pred = tokens.size() - 1;
      std::vector<float> nll(n_pred);
      session.reset();
      for (size_t s = 0; s < n_pred; s += B) {
        const size_t n = std::min(B, n_pred - s);
        const std::span<const int32_t> doc(tokens);
        if (!rows) {
          session.step(doc.subspan(s, n), doc.subspan(s + 1, n), std::span<float>(nll).subspan(s, n));
        } else {
          // step()'s phases with each row's logits read after the score, before the test-time step.
          session.forward(doc.subspan(s, n));
          session.score(doc.subspan(s + 1, n));
          for (size_t r = 0; r < n; ++r) rows(*i, s + r, tokens[s + r + 1], session.logits(int(r)));
          session.train();
          const std::vector<float>& out = session.sync();
          std::copy(out.begin(), out.end(), nll.begin() + std::ptrdiff_t(s));
        }
        progress(n);
        sched.poll();
        if (s + n < n_pred && stop()) {
          nll.resize(s + n);
          end.interrupted = true;
          end.cut.push_back({*i, std::move(nll), std::chrono::duration<double>(Clock::now() - t0).count()});
          break;
        }
      }
      if (end.interrupted) break;
      if (hooks.document_end) hooks.document_end(*i, session);
      sched.finished(*i, std::move(nll), std::chrono::duration<double>(Clock::now() - t0).count());
      end.interrupted = stop();
    }
  } else {
    // A step's wall time is shared among the documents in it by their tokens,
    // so the documents' seconds add up to the pass's time as they do one at a time.
    BatchSession batch(engine, parallel, opts);
    struct InFlight {
      size_t scored = 0;
      double seconds = 0;
    };
    std::map<size_t, InFlight> live;
    const size_t B = size_t(engine.config().mini_batch_size);
    auto t_step = Clock::now();
    bool stepped = false;  // as one at a time, the first step is scored whenever the stop came
    batch.run(
        [&]() -> std::optional<BatchDocument> {
          if (stepped && stop()) {
            end.interrupted = true;
            return std::nullopt;
          }
          const auto i = sched.next();
          if (!i) return std::nullopt;
          live[*i] = {};
          return BatchDocument{*i, docs[*i].tokens};
        },
        [&](size_t i, std::vector<float> nll) {
          // Called after the step's time was shared out (progress runs first for the step).
          const double s = live[i].seconds;
          live.erase(i);
          sched.finished(i, std::move(nll), s);
        },
        [&](size_t n) {
          const auto now = Clock::now();
          const double dt = std::chrono::duration<double>(now - t_step).count();
          for (auto& [i, f] : live) {
            const size_t k = std::min(B, docs[i].tokens.size() - 1 - f.scored);
            f.scored += k;
            f.seconds += n ? dt * double(k) / double(n) : 0.0;
          }
          progress(n);
          sched.poll();
          t_step = Clock::now();
          stepped = true;
        },
        [&] { return end.interrupted = end.interrupted || stop(); },
        [&](size_t i, std::vector<float> nll) {
          end.cut.push_back({i, std::move(nll), live[i].seconds});
          live.erase(i);
        });
  }
  sched.drain();
  return end;
}

void warm_up(Engine& engine) {
  const Config& cfg = engine.config();
  std::vector<int32_t> t(size_t(cfg.mini_batch_size + 2));
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t(i % size_t(cfg.vocab_size));
  engine.session().evaluate(t);
}

}  // namespace ttt
