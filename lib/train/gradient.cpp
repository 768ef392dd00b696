// The training gradient of ttt-train: the double-precision reference
// objective (lib/reference/meta.hpp). Kept in its own file so that programs
// with another GradientSource (the optimiser tests) do not link it.
#include "lib/reference/meta.hpp"
#include "lib/train/trainer.hpp"

namespace ttt::train {

GradientSource reference_gradient(ref::Objective mode) {
  return [mode](const Model& m, std::span<const int32_t> tokens, double inner_lr) {
    return ref::objective(m, tokens, mode, inner_lr, true);
  };
}

}  // namespace ttt::train
