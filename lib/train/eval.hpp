// Held-out evaluation during training: the mean NLL per token of documents
// with test-time training (the model's inner_lr) and without, computed by the
// double-precision reference model (no OpenCL device needed; the numbers are
// those ttt-perplexity gives on the device, to its float tolerance).
#pragma once

#include "ttt/model.hpp"

#include <cstdint>
#include <functional>
#include <vector>

namespace ttt::train {

struct EvalResult {
  double nll_ttt = 0, nll_no_ttt = 0;  // mean over every scored token
  size_t tokens = 0;                   // scored per pass
  size_t documents = 0;                // evaluated (all unless stopped)
};

// Targets scored by an evaluation of docs, both passes counted: progress's total.
size_t heldout_targets(const std::vector<std::vector<int32_t>>& docs);

// Documents in parallel on `threads` threads; stop() is asked before each
// document, and the documents already started finish. progress, if set, hears
// the targets scored so far (both passes) after each pass of a document, from
// one thread at a time.
EvalResult evaluate_heldout(const Model& m, const std::vector<std::vector<int32_t>>& docs, int threads,
                            const std::function<bool()>& stop = [] { return false; },
                            const std::function<void(size_t)>& progress = {});

// What an evaluation will take before one has run (an ETA from the first
// steps): one mini-batch of the first document scored both ways, timed...
struct HeldoutSample {
  double seconds = 0;     // for both passes of the sample
  size_t minibatches = 0;  // in the sample (1; 0 when there is no document to time)
};
HeldoutSample time_heldout_sample(const Model& m, const std::vector<std::vector<int32_t>>& docs);
// ... then every document's mini-batches at the sample's rate, handed to
// `threads` threads as evaluate_heldout hands them (each document, in order,
// to the first thread free): the seconds until the last one ends.
double heldout_seconds(const HeldoutSample& sample, const std::vector<std::vector<int32_t>>& docs, int mini_batch,
                       int threads);

}  // namespace ttt::train
