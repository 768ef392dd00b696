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
