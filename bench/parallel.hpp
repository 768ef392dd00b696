// ttt-bench prefill --parallel N[,N...]: the same synthetic documents scored
// one at a time (the engine's session) and N at a time (a BatchSession), as
// tokens per second per N (and per-kernel device time when profiling).
#pragma once

#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/model.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ttt::bench {

// docs documents of `tokens` tokens each (seeded); ttt: test-time training on; storage: the weights' and
// the rings' storage types (EngineOptions::weight_dtype, kv_dtype), as the prefill it is compared with.
nlohmann::json prefill_parallel(Runtime& rt, const Model& m, size_t tokens, size_t docs,
                                const std::vector<int>& parallel, bool ttt, uint64_t seed, bool profile,
                                const EngineOptions& storage);

std::vector<int> parse_list(const std::string& s);

}  // namespace ttt::bench
