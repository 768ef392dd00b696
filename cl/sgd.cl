// Global-norm gradient clipping and the fused SGD step, with no host round
// trip: sgd_sumsq writes one partial sum of squares per work-group, sgd_norm
// reduces the partials in a fixed order into stats = {norm, scale, finite},
// and sgd_update applies w -= lr * scale * g only when the norm is finite, so
// a NaN gradient never reaches the weights (the host then stops the run).

// Work-group k of nk sums the squares of g[k*nl + lid + j*nk*nl]; partial[part_off + k].
__kernel void sgd_sumsq(__global float* partial, int part_off, __global const float* g, int n,
                        __local float* scratch) {
  const int lid = get_local_id(0), nl = get_local_size(0), k = get_group_id(0), nk = get_num_groups(0);
  float ss = 0.0f;
  for (long i = (long)k * nl + lid; i < n; i += (long)nk * nl) ss += g[i] * g[i];
  ss = wg_sum(ss, scratch);
  if (lid == 0) partial[part_off + k] = ss;
}

// One work-group. scale = clip / norm when clip > 0 and norm >= clip, else 1.
__kernel void sgd_norm(__global float* stats, __global const float* partial, int count, float clip,
                       __local float* scratch) {
  const int lid = get_local_id(0), nl = get_local_size(0);
  float ss = 0.0f;
  for (int i = lid; i < count; i += nl) ss += partial[i];
  ss = wg_sum(ss, scratch);
  if (lid == 0) {
    const float norm = sqrt(ss);
    const int finite = isfinite(norm);
    stats[0] = norm;
    stats[1] = finite ? (clip > 0.0f && norm >= clip ? clip / norm : 1.0f) : 0.0f;
    stats[2] = finite ? 1.0f : 0.0f;
  }
}

__kernel void sgd_update(__global float* w, __global const float* g, __global const float* stats, float lr, int n) {
  const int i = get_global_id(0);
  if (i >= n || stats[2] == 0.0f) return;
  w[i] -= lr * stats[1] * g[i];
}
