// One pass over a corpus's documents: a Scheduler hands out the next document
// and takes each finished one (in one process, or one rank of an MPI job: see
// mpi_shard.hpp, whose World is the MPI kind of Workers); evaluate_pass scores
// them one at a time on the engine's own session, or `parallel` at a time on a
// BatchSession.
#pragma once

#include "lib/eval/documents.hpp"
#include "ttt/engine.hpp"

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ttt {

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // The next document to evaluate here, or nothing when the pass has no more.
  virtual std::optional<size_t> next() = 0;
  // A document evaluated here: its NLLs and its wall time.
  virtual void finished(size_t doc, std::vector<float> nll, double seconds) = 0;
  // Called after every mini-batch (rank 0 of an MPI job answers the others there).
  virtual void poll() {}
  // After this process's last document: returns once the whole pass is done.
  virtual void drain() {}
};

// Documents from a list, results to a callback: a single process.
class LocalScheduler : public Scheduler {
 public:
  // (document, NLLs, seconds, evaluated by another MPI rank)
  using Done = std::function<void(size_t, std::vector<float>, double, bool)>;
  LocalScheduler(std::vector<size_t> todo, Done done) : todo_(todo.begin(), todo.end()), done_(std::move(done)) {}
  std::optional<size_t> next() override;
  void finished(size_t doc, std::vector<float> nll, double seconds) override {
    done_(doc, std::move(nll), seconds, false);
  }

 private:
  std::deque<size_t> todo_;
  Done done_;
};

// The processes that share a corpus run. This base is one process alone;
// mpi::World (lib/eval/mpi_shard.hpp, ttt_eval_mpi) is one rank of an MPI job.
class Workers {
 public:
  virtual ~Workers() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  // The scheduler of one pass: rank 0 hands out todo and passes every finished
  // document, its own and the other ranks', to done. Here: a LocalScheduler.
  virtual std::unique_ptr<Scheduler> scheduler(std::vector<size_t> todo, LocalScheduler::Done done) const {
    return std::make_unique<LocalScheduler>(std::move(todo), std::move(done));
  }
  // Every rank waits here for the others (between passes).
  virtual void barrier() const {}
};

// How a pass ended: whole, or stopped by an interrupt. One at a time, the
// document the interrupt came in ends with its current mini-batch and its
// scored prefix comes back here (it is not handed to the scheduler, which
// takes finished documents only); batched, no new document starts and the
// ones in flight finish.
struct PassEnd {
  bool interrupted = false;
  struct Cut {
    size_t doc = 0;          // a document cut short
    std::vector<float> nll;  // its scored prefix
    double seconds = 0;
  };
  std::vector<Cut> cut;  // one at a time: the one being scored; in parallel: every one in flight
};

// Every predicted token's logits over the whole vocabulary: (document,
// position, target, logits). Analysis modes only (KL divergence): it reads a
// row per token, between each mini-batch's score and its test-time step, so
// the NLLs and the steps are those of a pass without it.
using LogitRows = std::function<void(size_t, size_t, int32_t, std::span<const float>)>;
// A document's session right after its last mini-batch (document, session):
// to keep its state (ttt-perplexity --save-session). One at a time only.
using DocumentEnd = std::function<void(size_t, Session&)>;
struct PassHooks {
  LogitRows rows;
  DocumentEnd document_end;
};

// Scores the documents sched hands out with a session of `opts` on engine
// (the engine's own session when opts are its defaults). progress(n): n more
// tokens scored here; stop() is asked after every mini-batch (in parallel:
// every step of the batch, which cuts every document in flight); hooks, when
// set, take every token's logits and each document's final session (one
// document at a time only: parallel 1).
PassEnd evaluate_pass(Engine& engine, SessionOptions opts, const std::vector<Document>& docs, int parallel,
                      Scheduler& sched, const std::function<void(size_t)>& progress,
                      const std::function<bool()>& stop = [] { return false; }, const PassHooks& hooks = {});

// One short untimed document: a mini-batch and two tokens, enough for every
// kernel of a document's path (the test-time step included) to launch once.
// After a cold kernel cache some drivers (PoCL) finish compiling each kernel
// at its first launch, which would otherwise be counted in the throughput of
// the first real document; the first-run cost is what it scores on top.
void warm_up(Engine& engine);

}  // namespace ttt
