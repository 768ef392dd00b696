// Objective names (lib/format/objective.hpp).
#include "lib/format/objective.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ref {

const char* to_string(Objective o) {
  switch (o) {
    case Objective::pretrain: return "pretrain";
    case Objective::meta: return "meta";
    case Objective::meta_fo: return "meta-fo";
  }
  return "?";
}

Objective parse_objective(const std::string& s) {
  if (s == "pretrain") return Objective::pretrain;
  if (s == "meta") return Objective::meta;
  if (s == "meta-fo" || s == "meta_fo") return Objective::meta_fo;
  throw Error(fmt::format("unknown objective '{}'; objectives: pretrain, meta, meta-fo", s));
}

}  // namespace ttt::ref
