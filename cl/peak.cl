// The device's arithmetic peak (ttt-bench peak): every work-item runs
// PEAK_CHAINS independent chains of float16 fused multiply-adds, `iters` times
// each, and writes the sum of its chains so that nothing is optimised away.
// FLOPs: 2 x 16 x PEAK_CHAINS x iters per work-item. Eight chains hide an FMA
// unit's latency (4 cycles, 2 units) on a CPU; a GPU hides it with work-items.

#ifndef PEAK_CHAINS
#define PEAK_CHAINS 8
#endif

// out[i] = sum over lanes and chains of x after iters steps x = fma(x, a, b),
// starting from x = (i % 64) 1e-3 + chain 1e-2 + lane 1e-4.
__kernel void fma_peak(__global float* out, float a, float b, int iters) {
  const int i = get_global_id(0);
  const float16 lane = (float16)(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f, 11.f, 12.f, 13.f, 14.f, 15.f);
  float16 x[PEAK_CHAINS];
  for (int c = 0; c < PEAK_CHAINS; ++c) x[c] = (float16)((i % 64) * 1e-3f + c * 1e-2f) + lane * 1e-4f;
  for (int t = 0; t < iters; ++t) {
#pragma unroll
    for (int c = 0; c < PEAK_CHAINS; ++c) x[c] = fma(x[c], (float16)a, (float16)b);
  }
  float16 s = x[0];
  for (int c = 1; c < PEAK_CHAINS; ++c) s += x[c];
  const float8 h8 = s.lo + s.hi;
  const float4 h4 = h8.lo + h8.hi;
  const float2 h2 = h4.lo + h4.hi;
  out[i] = h2.x + h2.y;
}
