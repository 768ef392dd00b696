// The TTT-E2E engine: streams a document through the model in mini-batches
// of B tokens on one OpenCL device. Every block keeps a ring of the last
// W + B - 1 keys/values, so memory does not grow with the document. With
// test-time training on, every full mini-batch is followed by one clipped SGD
// step on the prime MLPs of the suffix blocks.
#pragma once

#include "ttt/device.hpp"
#include "ttt/model.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ttt {

struct EngineOptions {
  bool ttt = true;                // test-time training; false = plain sliding-window Transformer
  std::optional<float> inner_lr;  // overrides config.inner_lr
  int vocab_tile = 8192;          // columns of logits held at once
};

// Figures of the last mini-batch, for progress displays and diagnostics.
struct StepInfo {
  int64_t chunk = 0;        // mini-batch index in the document
  bool updated = false;     // whether it took a test-time update
  float grad_norm = 0;      // global gradient norm before clipping (updated chunks)
  float weight_norm = 0;    // global norm of the prime weights after the update
};

class Engine {
 public:
  Engine(host::Context& ctx, const Model& model, EngineOptions opts = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Config& config() const;
  bool ttt() const;
  float inner_lr() const;

  // Fresh document: position 0, empty key/value windows, prime weights as loaded.
  void reset();
  int64_t position() const;

  // Scores the next n <= B tokens: inputs[i] predicts targets[i]; writes n
  // NLLs. A full mini-batch with test-time training on then takes its update.
  // Throws ttt::Error naming the mini-batch on a non-finite loss, gradient or
  // weight (the weights are then left as they were before the step).
  void step(const int32_t* inputs, const int32_t* targets, int n, float* nll);

  // A whole document from a fresh state: T tokens give T-1 NLLs. progress is
  // called after each mini-batch with (tokens scored, total).
  std::vector<float> evaluate(std::span<const int32_t> tokens,
                              const std::function<void(size_t, size_t)>& progress = {});

  const StepInfo& last_step() const;
  // Writes the current (adapted) prime weights into m's prime MLPs.
  void download_prime(Model& m) const;
  // Bytes of device memory this engine holds.
  size_t device_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Throws ttt::Error naming `origin`, the index and the value of the first id outside [0, vocab).
void check_token_ids(std::span<const int32_t> ids, int vocab, const std::string& origin);

}  // namespace ttt
