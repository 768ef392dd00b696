// The device's arithmetic peak, measured: cl/peak.cl's FMA loop timed on
// every compute unit (ttt-bench peak, and beside prefill's achieved GFLOP/s).
#pragma once

#include "host/device.hpp"

#include <nlohmann/json.hpp>

namespace ttt::bench {

// {"fma_peak_gflops", "fma_peak_items", "fma_peak_iters", "fma_peak_seconds"}:
// the best of `reps` timed calls after one untimed one (the build), at an
// iteration count that makes a call last at least min_seconds.
nlohmann::json fma_peak(host::Context& ctx, int reps = 3, double min_seconds = 0.05);

// ttt-bench peak: the probe alone, as JSON.
int peak(int argc, char** argv);

}  // namespace ttt::bench
