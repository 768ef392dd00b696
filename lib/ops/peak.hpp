// Launcher of cl/peak.cl: the FMA loop that ttt-bench times for the device's
// arithmetic peak (bench/peak.cpp). Twin: lib/reference/peak.hpp.
#pragma once

#include "host/buffer.hpp"

#include <cstddef>

namespace ttt::ops {

// out (items floats) = ref::fma_peak over `items` work-items; enqueues and returns.
void fma_peak(host::Context& ctx, host::Buffer& out, size_t items, float a, float b, int iters);

// FLOPs of one fma_peak call: 2 (multiply and add) x 16 lanes x 8 chains x iters per work-item.
inline double fma_peak_flops(size_t items, int iters) { return 2.0 * 16 * 8 * double(iters) * double(items); }

}  // namespace ttt::ops
