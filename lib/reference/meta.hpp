// Training objectives of TTT-E2E in double precision, with their exact
// gradients: the oracle for every trainer (issue 12). Plain C++, no OpenCL.
//
//   pretrain  mean next-token NLL of the document with sliding-window
//             attention and the prime MLPs as loaded (no test-time step);
//   meta      TTT-E2E's objective: the document is read in mini-batches of B;
//             mini-batch c is scored with the prime weights after c clipped SGD
//             steps (inner_lr, inner_clip_gradient), the loss is the mean over
//             the scored tokens, and the gradient flows through the inner
//             updates (second-order terms, the clip, and the carried key/value
//             window) to every parameter;
//   meta_fo   the same loss, its gradient with every inner update held constant
//             (first-order: W_c = W_0 + const).
#pragma once

#include "ttt/model.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ttt::ref {

enum class Objective { pretrain, meta, meta_fo };
const char* to_string(Objective o);
Objective parse_objective(const std::string& s);  // "pretrain", "meta", "meta-fo"; ttt::Error otherwise

struct ObjectiveResult {
  double loss = 0;       // the objective (mean NLL over the scored targets)
  size_t scored = 0;     // targets that count (not BOS)
  // d loss / d parameter, one vector per entry of param_table(m.config).params, same order and size.
  std::vector<std::vector<double>> grads;
};

// The objective on one document (tokens[0..T): inputs tokens[0..T-1), targets
// tokens[1..T)) and, when want_grads, its gradient. inner_lr overrides the
// config's inner_lr (the official inner learning-rate warm-up changes it per step).
ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, Objective o, double inner_lr,
                          bool want_grads = true);

}  // namespace ttt::ref
