// FullGradient's internals, shared by full_gradient.cpp (the block
// description's forward and backward of the whole document, pretrain and meta-fo) and meta_gradient.cpp (the
// second-order terms of the meta objective). Not part of the public API.
#pragma once

#include "lib/engine/full_gradient.hpp"
#include "lib/engine/block.hpp"
#include "lib/engine/impl.hpp"

#include <memory>
#include <vector>

namespace ttt {

struct MetaTail;  // meta_gradient.cpp: one mini-batch's tail of the network, in values and tangents

struct FullGradient::Impl {
  Config c;  // as given (the engine's has the document as its mini-batch)
  int max_tokens;
  Model shape;  // a model of c: the engine's initial upload and the gradients' unpacking
  Engine engine;                  // the weights and the head's scratch; its mini-batch is the whole document
  std::unique_ptr<Engine> inner;  // meta's test-time steps: the model's own mini-batch, training on
  bool by_copy = false;           // meta: mini-batch c's rows multiply the prime weights' copy c
  std::vector<Buffer> copies;     // per device tensor: chunks x size (trainable ones only)
  std::vector<bool> updated;      // per mini-batch of the document: took a test-time step
  std::vector<float> step_norms;  // and its inner gradient's norm (as the step saw it)
  Engine::Impl& e;
  std::vector<Buffer> kc, vc;   // per block: the document's keys and values (a ring of C >= T rows)
  std::vector<BlockActs> acts;  // one per block
  std::vector<Buffer> x;        // residual stream: block l reads x[3l], writes x[3l+1..3l+3]
  std::vector<Buffer> grads;    // one per device tensor
  size_t bytes = 0;
  std::vector<int32_t> h_ids, h_targets;
  std::vector<float> h_cs, h_nll;

  // Second order (meta): the prime MLPs' gradients per copy (chunks x size,
  // like `copies`) instead of summed, and the reverse sweep's state.
  bool second_order = false;
  double inner_lr = 0;
  std::vector<Buffer> per_copy;
  std::shared_ptr<MetaTail> tail;

  Impl(Runtime& rt, const Config& cfg, int n, int vocab_tile);

  Buffer& g(int device) { return grads[size_t(device)]; }
  const Buffer& w(int device) const { return e.weights[size_t(device)]; }

  // The document's T rows as the block description takes them: every weight
  // and every gradient, the prime weights by copy under meta.
  block::Pass pass(int T);
  block::BlockIO io(int l);
  void inner_steps(const Model& m, std::span<const int32_t> tokens, double inner_lr, ref::ObjectiveResult& r);
  ref::ObjectiveResult run(const Model& m, std::span<const int32_t> tokens, ref::Objective o, double inner_lr);
  // meta_gradient.cpp: with d = dL/dx1 of the (only) prime block P, after its
  // prime MLP's backward filled per_copy: sweeps the mini-batches backwards,
  // adds the second-order terms to every gradient and to d, and sets the prime
  // tensors' gradients.
  void second_order_sweep(int l, Buffer& d, int T);
};

}  // namespace ttt
