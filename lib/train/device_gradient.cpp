// ttt-train's --gradient device: the pretrain, meta and meta-fo gradients from
// the OpenCL engine (lib/engine/full_gradient.hpp), in float32. Its own target
// (ttt_train_device) so that the CPU-only training layer links no OpenCL.
#include "lib/engine/full_gradient.hpp"
#include "lib/train/trainer.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <memory>
#include <mutex>

namespace ttt::train {

std::string device_gradient_limit(ref::Objective mode, const Config& c) { return device_objective_limit(c, mode); }

GradientSource device_gradient(Runtime& rt, ref::Objective mode, const Config& c, int seq_len) {
  if (const std::string why = device_objective_limit(c, mode); !why.empty()) throw Error(why + ": use the reference gradient");
  auto fg = std::make_shared<FullGradient>(rt, c, seq_len);
  auto mu = std::make_shared<std::mutex>();  // one device queue: documents take turns
  return [fg, mu, mode](const Model& m, std::span<const int32_t> tokens, double inner_lr) {
    std::lock_guard<std::mutex> lock(*mu);
    return fg->objective(m, tokens, mode, inner_lr);
  };
}

}  // namespace ttt::train
