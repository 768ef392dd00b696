// Twin of cl/peak.cl: the FMA chains ttt-bench's peak probe runs, in plain C++.
#pragma once

#include <cstddef>

namespace ttt::ref {

// out[i], i < n: the sum of `chains` chains of 16 lanes after iters steps
// x = fma(x, a, b), x starting at (i % 64) 1e-3 + chain 1e-2 + lane 1e-4.
void fma_peak(float* out, size_t n, float a, float b, int iters, int chains = 8);

}  // namespace ttt::ref
