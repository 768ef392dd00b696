// The gradient of the pretrain, meta and meta-fo objectives with respect to every
// parameter, on the device (issue 12): ttt-train's `--gradient device`. One document is read
// whole as one mini-batch of T rows (T = its length, so the sliding window
// sees every earlier key inside it and nothing is carried), the activations of
// every block are kept, and the backward visits every layer with its weight
// gradients: the head and the embedding (tied or not), every RMSNorm gain,
// the attention and MLP matrices, the prime MLPs as loaded. The loss is the
// mean NLL over the scored (non-BOS) targets, ref::objective's default
// weighting, which checks it (tests/test_full_gradient.cpp).
#pragma once

#include "lib/format/objective.hpp"
#include "ttt/device.hpp"
#include "ttt/model.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace ttt {

// Empty when FullGradient computes objective o for config c; else why it does
// not, in one sentence (meta with more than one prime block).
std::string device_objective_limit(const Config& c, ref::Objective o);

class FullGradient {
 public:
  // Device memory for documents of up to max_tokens inputs (max_tokens + 1 tokens).
  FullGradient(Runtime& rt, const Config& c, int max_tokens, int vocab_tile = 8192);
  ~FullGradient();
  FullGradient(const FullGradient&) = delete;
  FullGradient& operator=(const FullGradient&) = delete;

  // Loss and gradient (param_table(m.config).params order, as ref::objective)
  // of m on tokens[0..n): inputs tokens[0..n-1), targets tokens[1..n). m must
  // have the config given to the constructor; its weights are uploaded per call.
  ref::ObjectiveResult pretrain(const Model& m, std::span<const int32_t> tokens);
  // TTT-E2E's first-order meta objective (ref::Objective::meta_fo): the engine's
  // test-time steps (inner_lr, the config's clip) give the prime weights W_c of
  // every mini-batch c; the document is then read whole with mini-batch c's
  // rows through W_c, and the gradient holds W_c - W_0 constant (so the prime
  // tensors' gradient is the sum over c of d loss / d W_c). inner_norms as ref::objective.
  ref::ObjectiveResult meta_fo(const Model& m, std::span<const int32_t> tokens, double inner_lr);
  // Any objective by name. meta (second order, meta_gradient.cpp) reads the
  // document as meta_fo does, then sweeps its mini-batches backwards with a
  // forward-over-reverse pass of each; it covers configs with one prime block
  // (suffix_len 1: the prime MLP feeds no attention) and is a ttt::Error otherwise.
  ref::ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, ref::Objective o, double inner_lr);
  size_t device_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ttt
