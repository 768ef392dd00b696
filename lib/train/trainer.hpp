// The outer training loop of TTT-E2E: documents from a ByteCorpus, the
// gradient of the objective from one GradientSource call per document (the
// double-precision reference, ref::objective, in ttt-train; an analytic
// objective in the tests), their mean, and an AdamW update of every tensor of
// the parameter table. Checkpoints are a format-v1 model directory plus the
// optimiser state beside it, and resume bit-exactly.
#pragma once

#include "lib/format/objective.hpp"
#include "lib/train/adamw.hpp"
#include "lib/train/data.hpp"
#include "ttt/model.hpp"

namespace ttt {
class Runtime;
}

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ttt::train {

// Everything that decides the numbers of a run; a checkpoint keeps it and a
// resumed run takes it from there.
struct Settings {
  ref::Objective mode = ref::Objective::pretrain;
  int64_t steps = 0;     // the schedule's length (AdamW::decay_steps)
  int batch = 8;         // documents per step
  int seq_len = 0;       // tokens per document, plus one target
  uint64_t seed = 0;     // model initialisation and document order
  AdamW opt;
  double ilr_init = 0.1;   // inner learning rate at step 0 (meta modes)
  int64_t ilr_warmup = 0;  // steps until the config's inner_lr is reached (0: from the start)
  std::vector<std::string> data;  // training files, as given
  uint64_t data_fingerprint = 0;
  // Held-out evaluation: not part of the numbers, but kept so that --resume
  // evaluates as the run did (a later --eval-data / --eval-every replaces them).
  std::vector<std::string> eval_data;
  int64_t eval_every = 0;  // 0: at the end only

  nlohmann::json to_json() const;
  static Settings from_json(const nlohmann::json& j, const std::string& origin);
};

// d objective / d parameter on one document, for the model as it is.
using GradientSource =
    std::function<ref::ObjectiveResult(const Model&, std::span<const int32_t> tokens, double inner_lr)>;

// The real one: ref::objective(model, tokens, mode, inner_lr) (gradient.cpp).
GradientSource reference_gradient(ref::Objective mode);
// The pretrain, meta or meta-fo gradient on an OpenCL device, float32, documents of
// seq_len + 1 tokens (device_gradient.cpp, target ttt_train_device); a mode the
// device does not cover for c throws with device_gradient_limit's reason.
GradientSource device_gradient(Runtime& rt, ref::Objective mode, const Config& c, int seq_len);
// Empty when device_gradient covers mode for c; else why not (meta with more than one prime block).
std::string device_gradient_limit(ref::Objective mode, const Config& c);

struct Checkpoint {
  Model model;
  Settings settings;
  AdamWState opt;             // moments in parameter-table order, opt.step = steps taken
  uint64_t documents_dealt = 0;  // the sampler's position
};

// dir/config.json + model.safetensors (Model::save), dir/optimizer.safetensors
// (m.NAME, v.NAME in F32) and, last, dir/trainer.json (step, sampler position,
// settings and FNV-1a hashes of both safetensors files). Each file is written
// atomically; the hashes make load_checkpoint refuse a set torn between files.
void save_checkpoint(const std::string& dir, const Checkpoint& c);
// Errors (ttt::Error) name the file and what is wrong with it.
Checkpoint load_checkpoint(const std::string& dir);

struct StepResult {
  int64_t step = 0;       // 1-based index of the step just taken
  double loss = 0;        // mean over the batch's documents of their objective
  size_t scored = 0;      // targets scored in the batch
  double inner_lr = 0;    // inner learning rate the objective used
  UpdateInfo update;      // outer lr, gradient norm, clip factor
};

// Calls fn(i) for i in [0, n) on up to `threads` threads; the first exception is rethrown.
void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn);

class Trainer {
 public:
  // A run from c (fresh: opt empty and step 0, or loaded by load_checkpoint);
  // corpus must hold c.settings' documents.
  Trainer(Checkpoint c, const ByteCorpus& corpus);

  // One outer step: the next `batch` documents, their gradients (in parallel
  // on `threads` threads, summed in document order so any thread count gives
  // the same bits), and the AdamW update.
  StepResult step(const GradientSource& grad, int threads = 1);

  const Checkpoint& state() const { return c_; }
  int64_t steps_taken() const { return c_.opt.step; }
  void save(const std::string& dir) const { save_checkpoint(dir, c_); }

 private:
  Checkpoint c_;
  const ByteCorpus& corpus_;
  Sampler sampler_;
  std::vector<bool> decays_;
};

}  // namespace ttt::train
