// Helpers shared by every kernel family; the host prepends this file to each
// family's source. Reductions are work-group tree reductions in local memory
// with a fixed order, so results are identical from run to run.

#ifndef INFINITY
#define INFINITY (1.0f / 0.0f)
#endif

// Sum of v over the work-group (1-D, power-of-two local size). Every
// work-item must call it; all receive the total. scratch holds local_size floats.
inline float wg_sum(float v, __local float* scratch) {
  const int lid = get_local_id(0), n = get_local_size(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);  // scratch may be reused right after
  return r;
}

inline float wg_max(float v, __local float* scratch) {
  const int lid = get_local_id(0), n = get_local_size(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp(-x)); }
