// The outer optimiser of TTT-E2E training: AdamW with global-norm clipping,
// a linear warm-up + cosine learning-rate schedule and the inner learning-rate
// warm-up, as the official code configures them (optax clip_by_global_norm +
// adamw, warmup_cosine_decay_schedule). Plain C++: the twin of a future device kernel.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ttt::train {

// Hyper-parameters. Defaults: the official AdamWOptimizerConfig and the
// 125M-8K pretraining recipe (configs/training/125m/pretrain-8K.yaml).
struct AdamW {
  double lr = 3e-3;         // peak learning rate
  double init_lr = 0;       // at step 0, rising linearly to lr over warmup steps
  double end_lr = 1e-5;     // floor of the cosine decay (absolute, not a fraction of lr)
  int64_t warmup = 0;       // linear warm-up steps
  int64_t decay_steps = 1;  // warm-up + cosine together span this many steps (the run's total)
  double b1 = 0.9, b2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;  // decoupled, scaled by the learning rate, where the table says `decays`
  double clip = 1.0;          // global gradient norm clip (0: none)
};

// Learning rate of the update made at `step` (0-based: the first update is step 0).
double learning_rate(const AdamW& h, int64_t step);

// Inner (test-time) learning rate during outer step `step`: ilr_init rising
// linearly to inner_lr, reached at step ilr_warmup - 1; inner_lr throughout when ilr_warmup is 0.
double inner_learning_rate(double ilr_init, double inner_lr, int64_t ilr_warmup, int64_t step);

// Moments follow the parameter table: one vector per tensor, float32 as the
// official state (mu_dtype float32).
struct AdamWState {
  int64_t step = 0;  // updates taken
  std::vector<std::vector<float>> m, v;
  void init(const std::vector<int64_t>& sizes);  // zeros
};

struct UpdateInfo {
  double lr = 0;         // learning rate used
  double grad_norm = 0;  // global norm before clipping
  double scale = 1;      // clip factor applied to the gradient (1: not clipped)
};

// One AdamW update of every tensor in place:
//   g = grad * min(1, clip / ||grad||)     (global norm over all tensors)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr(step) * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd p [decays])   t = step + 1
// in double, moments and parameters rounded to float. A non-finite gradient
// norm throws ttt::Error and leaves everything as it was.
UpdateInfo adamw_update(std::vector<std::span<float>> params, AdamWState& s,
                        const std::vector<std::vector<double>>& grads, const std::vector<bool>& decays,
                        const AdamW& h);

}  // namespace ttt::train
