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
//
// Weighting: by default the loss is the mean NLL over every scored (non-BOS)
// target of the document, so that it equals the mean of RefModel::evaluate's
// NLLs over those targets. The official JAX code (ttt/model/transformer.py,
// loss_for_sequence) takes the mean over mini-batches of each mini-batch's
// mean (metrics[loss].mean() over the scan), with the sequence a multiple of
// B; the two agree when every mini-batch scores the same number of targets
// (no BOS targets, no partial mini-batch). ObjectiveOptions::
// mean_over_mini_batches selects the official weighting for every objective
// (pretrain too, as the official pretrain mode; a partial last mini-batch
// counts as one, one without scored targets adds 0 but still counts).
//
// Computed by a reverse-mode autodiff (autodiff.hpp) over one graph per
// document: each inner gradient is built with create_graph (meta) or as a
// constant (meta_fo); the outer gradient differentiates the whole graph. The
// inner gradient holds the carried keys/values constant (as the official
// inner value_and_grad does); the outer gradient flows through them.
#pragma once

#include "lib/format/objective.hpp"
#include "ttt/model.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ttt::ref {

// Objective and ObjectiveResult: lib/format/objective.hpp.

struct ObjectiveOptions {
  bool mean_over_mini_batches = false;  // the official weighting (see above)
  bool record_increments = false;
  // When set (meta / meta_fo): the test-time steps add these constants
  // instead of taking SGD steps, so W_c = W_0 + sum of the first c. The loss
  // is then a plain function of the parameters whose exact gradient equals
  // meta_fo's at the increments meta_fo took: a finite-difference check of it.
  const std::vector<std::vector<std::vector<double>>>* frozen_increments = nullptr;
};

// The objective on one document (tokens[0..T): inputs tokens[0..T-1), targets
// tokens[1..T)) and, when want_grads, its gradient. inner_lr overrides the
// config's inner_lr (the official inner learning-rate warm-up changes it per step).
ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, Objective o, double inner_lr,
                          bool want_grads = true);
ObjectiveResult objective(const Model& m, std::span<const int32_t> tokens, Objective o, double inner_lr,
                          bool want_grads, const ObjectiveOptions& opt);

// How far gradient a is from gradient b: the largest, over tensors, of the
// largest |a - b| over the largest |b| of that tensor (tensors of b that are all
// zero are skipped). Checks the device gradients against this oracle.
double max_relative_difference(const ObjectiveResult& a, const ObjectiveResult& b);

}  // namespace ttt::ref
