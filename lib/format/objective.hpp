// The training objectives by name and what computing one gives (loss,
// gradient per parameter, inner-step norms): plain types shared by the
// reference oracle (lib/reference/meta.hpp), the device gradient
// (lib/engine/full_gradient.hpp) and the trainer, none of which need the others.
#pragma once

#include <cstddef>
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
  // Global norm of each test-time step's gradient, in order (meta, meta_fo).
  std::vector<double> inner_norms;
  // With ObjectiveOptions::record_increments: for each test-time step, the
  // change of every prime tensor (per suffix block w1, w3, w2, as RefModel::prime_params()).
  std::vector<std::vector<std::vector<double>>> increments;
};

}  // namespace ttt::ref
