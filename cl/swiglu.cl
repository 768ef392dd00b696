// SwiGLU gate. h (T, 2I) holds [a | b] with a = x W1 and b = x W3 (the two
// up-projections fused in one GEMM); g (T, I) = silu(a) * b.

__kernel void swiglu_fwd(__global float* g, __global const float* h, int T, int I) {
  const int i = get_global_id(0), t = get_global_id(1);
  if (i >= I || t >= T) return;
  const float a = h[(long)t * 2 * I + i], b = h[(long)t * 2 * I + I + i];
  g[(long)t * I + i] = a * sigmoidf(a) * b;
}

// dg/da = b s (1 + a (1 - s)), dg/db = a s with s = sigmoid(a).
__kernel void swiglu_bwd(__global float* dh, __global const float* dg, __global const float* h, int T, int I) {
  const int i = get_global_id(0), t = get_global_id(1);
  if (i >= I || t >= T) return;
  const float a = h[(long)t * 2 * I + i], b = h[(long)t * 2 * I + I + i];
  const float s = sigmoidf(a), d = dg[(long)t * I + i];
  dh[(long)t * 2 * I + i] = d * b * s * (1.0f + a * (1.0f - s));
  dh[(long)t * 2 * I + I + i] = d * a * s;
}

// Tangents (forward-over-reverse) for the device meta gradient
// (lib/engine/meta_gradient.cpp): a tangent, suffix d (xd, dyd), is the derivative
// of a value along one direction nu of the prime weights, d/de of it at W + e nu.
// Rows are contiguous: h, hd, dhd (T, 2I); g, gd, dg, dgd (T, I).

// g = silu(a) * b (swiglu_fwd) along (ad, bd): gd = silu'(a) ad b + silu(a) bd.
__kernel void swiglu_jvp(__global float* gd, __global const float* h, __global const float* hd, int T, int I) {
  const int i = get_global_id(0), t = get_global_id(1);
  if (i >= I || t >= T) return;
  const long r = (long)t * 2 * I;
  const float a = h[r + i], b = h[r + I + i], ad = hd[r + i], bd = hd[r + I + i];
  const float s = sigmoidf(a);
  gd[(long)t * I + i] = s * (1.0f + a * (1.0f - s)) * ad * b + a * s * bd;
}

// The tangent of swiglu_bwd (da = dg b silu'(a), db = dg silu(a)) when h moves
// along hd and dg along dgd; silu''(a) = s (1 - s) (2 + a (1 - 2 s)).
__kernel void swiglu_bwd_tangent(__global float* dhd, __global const float* dg, __global const float* dgd,
                                 __global const float* h, __global const float* hd, int T, int I) {
  const int i = get_global_id(0), t = get_global_id(1);
  if (i >= I || t >= T) return;
  const long r = (long)t * 2 * I, k = (long)t * I + i;
  const float a = h[r + i], b = h[r + I + i], ad = hd[r + i], bd = hd[r + I + i];
  const float s = sigmoidf(a), d = dg[k], dd = dgd[k];
  const float silu = a * s, silu1 = s * (1.0f + a * (1.0f - s)), silu2 = s * (1.0f - s) * (2.0f + a * (1.0f - 2.0f * s));
  dhd[r + i] = dd * b * silu1 + d * bd * silu1 + d * b * silu2 * ad;
  dhd[r + I + i] = dd * silu + d * silu1 * ad;
}
