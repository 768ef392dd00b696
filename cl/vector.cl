// Plain vector kernels over float buffers, for the host's bookkeeping of the
// device meta gradient (lib/engine/meta_gradient.cpp): y = a x + b y on a range,
// and a dot product as per-work-group partial sums the host adds in double.

// y[y_off + i] = a x[x_off + i] + b y[y_off + i], i < n (b = 0 ignores y, NaN included).
__kernel void axpby(__global float* y, long y_off, float a, __global const float* x, long x_off, float b, long n) {
  const long i = get_global_id(0);
  if (i >= n) return;
  const float ax = a * x[x_off + i];
  y[y_off + i] = b == 0.0f ? ax : ax + b * y[y_off + i];
}

// Work-group k of nk: partial[part_off + k] = sum of x[i] y[i] over its items' strided indices
// (the host sums the nk partials in double): a dot product without a 1 x 1 GEMM.
__kernel void dot_partial(__global float* partial, int part_off, __global const float* x, __global const float* y,
                          long n, __local float* scratch) {
  const int lid = get_local_id(0), nl = get_local_size(0), k = get_group_id(0), nk = get_num_groups(0);
  float acc = 0.0f;
  for (long i = (long)k * nl + lid; i < n; i += (long)nk * nl) acc += x[i] * y[i];
  acc = wg_sum(acc, scratch);
  if (lid == 0) partial[part_off + k] = acc;
}
