// The prefill roofline: CLBlast's SGEMM on the model's own shapes (the GEMM
// ceiling, measured in the same process), the analytic FLOPs per token, MFU,
// and the profile split into GEMM and everything else, with median and spread
// over repeated runs.
#pragma once

#include "ttt/config.hpp"
#include "host/runtime.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace ttt::bench {

struct PrefillRuns {
  std::vector<double> seconds;               // one per timed repetition
  std::map<std::string, double> kernel_ms;   // profile of the last repetition (empty without profiling)
};

// GFLOP/s of CLBlast on one mini-batch's GEMMs: every distinct shape timed
// once (after an untimed call), weighted by how often the engine runs it.
double gemm_ceiling_gflops(host::Context& ctx, const Config& c, bool ttt, nlohmann::json* per_shape = nullptr);

// {"median": .., "min": .., "max": .., "spread": (max-min)/median, "n": ..}
nlohmann::json summary(const std::vector<double>& v);

// Adds the roofline keys to a prefill report: flops_per_token (forward, TTT
// backward and update), achieved GFLOP/s, gemm_ceiling_gflops, mfu, the
// GEMM / non-GEMM split of the profile, median and spread of the runs.
void add_roofline(nlohmann::json& j, host::Context& ctx, const Config& c, int64_t n_inputs, const PrefillRuns* no_ttt,
                  const PrefillRuns* ttt, bool measure_ceiling);

// A profile (kernel or GEMM label -> ms) as {gemm_ms, other_ms, gemm_share,
// non_gemm_share, largest_ms: the 8 largest}; GEMM labels start with "gemm".
nlohmann::json profile_split(const std::map<std::string, double>& ms);

// ttt-bench roofline: the analytic per-kernel table (docs/performance.md).
int roofline_table(int argc, char** argv);

}  // namespace ttt::bench
