// Whole-model CPU reference of TTT-E2E: streaming forward over mini-batches
// with carried key/value windows, and the test-time update (backward to the
// prime MLPs, global-norm clip, SGD). Plain loops, no OpenCL: the oracle for
// the device engine and for finite-difference checks (instantiate with double).
#pragma once

#include "ttt/model.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace ttt::ref {

template <typename F>
class RefModel {
 public:
  explicit RefModel(const Model& m);
  ~RefModel();

  // Fresh document: position 0, empty windows, prime weights as loaded.
  void reset();
  int64_t position() const { return pos_; }

  // Scores inputs[0..n) (n <= B) against targets at the current position and
  // returns the per-token NLL. With ttt and n == B the prime weights then take
  // one clipped SGD step of size lr. Either way the window advances by n.
  std::vector<F> step(const int32_t* inputs, const int32_t* targets, int n, bool ttt, F lr);

  // A whole document of T tokens: T-1 NLLs, mini-batch by mini-batch.
  std::vector<F> evaluate(const std::vector<int32_t>& tokens, bool ttt);

  // Mean loss over the non-BOS targets of one chunk at the current state and
  // its gradient w.r.t. every prime weight (same order as prime_params()),
  // without advancing or updating anything.
  F chunk_loss(const int32_t* inputs, const int32_t* targets, int n, std::vector<std::vector<F>>* grads);

  // Pointers to the live prime weights: for each suffix block, w1, w3, w2.
  std::vector<std::vector<F>*> prime_params();
  // Global gradient norm of the last update taken by step().
  F last_grad_norm() const { return last_norm_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t pos_ = 0;
  F last_norm_ = 0;
};

extern template class RefModel<float>;
extern template class RefModel<double>;

}  // namespace ttt::ref
