// Token embedding lookup. ids (T), wte (V, D) -> out (T, D); wte in its storage
// type (weight_t, common.cl), out in float.

__kernel void embedding_fwd(__global float* out, __global const int* ids, __global const weight_t* wte, int T,
                            int D) {
  const int d = get_global_id(0), t = get_global_id(1);
  if (d >= D || t >= T) return;
  out[(long)t * D + d] = WLOAD((long)ids[t] * D + d, wte);
}

// Its backward: dwte[ids[t]] += dx[t] for every t. One work-item per column d
// walks the tokens in order, so repeated ids never race.
__kernel void embedding_bwd(__global float* dwte, __global const float* dx, __global const int* ids, int T, int D) {
  const int d = get_global_id(0);
  if (d >= D) return;
  for (int t = 0; t < T; ++t) dwte[(long)ids[t] * D + d] += dx[(long)t * D + d];
}
