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

// Documents in parallel on `threads` threads; stop() is asked before each
// document, and the documents already started finish.
EvalResult evaluate_heldout(const Model& m, const std::vector<std::vector<int32_t>>& docs, int threads,
                            const std::function<bool()>& stop = [] { return false; });

}  // namespace ttt::train
