// Token embedding lookup. ids (T), wte (V, D) -> out (T, D).

__kernel void embedding_fwd(__global float* out, __global const int* ids, __global const float* wte, int T, int D) {
  const int d = get_global_id(0), t = get_global_id(1);
  if (d >= D || t >= T) return;
  out[(long)t * D + d] = wte[(long)ids[t] * D + d];
}
