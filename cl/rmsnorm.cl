// RMSNorm forward (with an optional residual added to the output) and backward.
// Rows are (t, h) pairs: row (t, h) of x starts at x_off + t * x_ld + h * N, so
// the same kernels normalise whole D-wide rows (H = 1) and per-head slices of
// a fused q|k|v matrix (qk-norm). One work-group per row; normalize = 0 makes
// the layer the identity (configs with pre_norm / post_norm off).

__kernel void rmsnorm_fwd(__global float* out, int out_off, int out_ld,
                          __global float* rstd,
                          __global const float* x, int x_off, int x_ld,
                          __global const float* g,
                          __global const float* res, int res_off, int res_ld, int use_res,
                          int H, int N, float eps, int normalize,
                          __local float* scratch) {
  const int row = get_group_id(0), t = row / H, h = row % H;
  const int lid = get_local_id(0), nl = get_local_size(0);
  __global const float* xr = x + x_off + (long)t * x_ld + h * N;
  __global float* yr = out + out_off + (long)t * out_ld + h * N;
  __global const float* rr = res + res_off + (long)t * res_ld + h * N;
  float ss = 0.0f;
  FOR_ITEMS(i, N, lid, nl) ss += xr[i] * xr[i];
  ss = wg_sum(ss, scratch);  // also a barrier: every read of xr precedes any write below
  const float r = normalize ? 1.0f / sqrt(ss / N + eps) : 1.0f;
  if (lid == 0) rstd[row] = r;
  FOR_ITEMS(i, N, lid, nl) {
    const float y = normalize ? xr[i] * r * g[i] : xr[i];
    yr[i] = use_res ? rr[i] + y : y;
  }
}

// dx (+)= r g dy - r^3 x / N * sum(dy g x)
__kernel void rmsnorm_bwd(__global float* dx, int dx_off, int dx_ld, int accumulate,
                          __global const float* dy, int dy_off, int dy_ld,
                          __global const float* x, int x_off, int x_ld,
                          __global const float* g, __global const float* rstd,
                          int H, int N, int normalize,
                          __local float* scratch) {
  const int row = get_group_id(0), t = row / H, h = row % H;
  const int lid = get_local_id(0), nl = get_local_size(0);
  __global const float* xr = x + x_off + (long)t * x_ld + h * N;
  __global const float* dyr = dy + dy_off + (long)t * dy_ld + h * N;
  __global float* dxr = dx + dx_off + (long)t * dx_ld + h * N;
  float dot = 0.0f;
  if (normalize)
    FOR_ITEMS(i, N, lid, nl) dot += dyr[i] * g[i] * xr[i];
  dot = wg_sum(dot, scratch);
  const float r = rstd[row];
  const float c = r * r * r * dot / N;
  FOR_ITEMS(i, N, lid, nl) {
    const float d = normalize ? r * g[i] * dyr[i] - c * xr[i] : dyr[i];
    dxr[i] = accumulate ? dxr[i] + d : d;
  }
}

// Gain gradient: dg[n] (+)= sum over rows (t, h) of dy * x * rstd (0 when
// normalize = 0: the identity has no gain). One work-item per column n, its
// rows summed in order, so the result does not depend on the launch shape.
__kernel void rmsnorm_wgrad(__global float* dg, int accumulate,
                            __global const float* dy, int dy_off, int dy_ld,
                            __global const float* x, int x_off, int x_ld,
                            __global const float* rstd, int T, int H, int N, int normalize) {
  const int n = get_global_id(0);
  if (n >= N) return;
  float acc = 0.0f;
  if (normalize)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        acc += dy[dy_off + (long)t * dy_ld + h * N + n] * x[x_off + (long)t * x_ld + h * N + n] * rstd[t * H + h];
  dg[n] = accumulate ? dg[n] + acc : acc;
}

// Tangents (forward-over-reverse) for the device meta gradient
// (lib/engine/meta_gradient.cpp): a tangent, suffix d (xd, dyd), is the derivative
// of a value along one direction nu of the prime weights, d/de of it at W + e nu.
// Rows are contiguous, N floats each (H = 1).

// y = x r g (rmsnorm_fwd, r = rstd) along xd: yd = g (r xd - r^3 q / N x),
// q = x . xd, which xdot[row] keeps for rmsnorm_wgrad_tangent. normalize = 0:
// the identity (yd = xd, q = 0). One work-group per row.
__kernel void rmsnorm_jvp(__global float* yd, __global float* xdot, __global const float* x,
                          __global const float* xd, __global const float* g, __global const float* rstd, int N,
                          int normalize, __local float* scratch) {
  const int row = get_group_id(0), lid = get_local_id(0), nl = get_local_size(0);
  __global const float* xr = x + (long)row * N;
  __global const float* xdr = xd + (long)row * N;
  __global float* ydr = yd + (long)row * N;
  float q = 0.0f;
  if (normalize)
    FOR_ITEMS(i, N, lid, nl) q += xr[i] * xdr[i];
  q = wg_sum(q, scratch);
  const float r = rstd[row], c = r * r * r * q / N;
  if (lid == 0) xdot[row] = q;
  FOR_ITEMS(i, N, lid, nl) ydr[i] = normalize ? g[i] * (r * xdr[i] - c * xr[i]) : xdr[i];
}

// The tangent of rmsnorm_bwd (dx = r u - r^3 s / N x, u = g dy, s = x . u) when
// x moves along xd and dy along dyd (g fixed):
//   dxd = r ud - r^3 q / N u - (r^3 sd / N - 3 r^5 q s / N^2) x - r^3 s / N xd
// with ud = g dyd, q = x . xd, sd = xd . u + x . ud. normalize = 0: dxd = dyd.
__kernel void rmsnorm_bwd_tangent(__global float* dxd, int accumulate, __global const float* dy,
                                  __global const float* dyd, __global const float* x, __global const float* xd,
                                  __global const float* g, __global const float* rstd, int N, int normalize,
                                  __local float* scratch) {
  const int row = get_group_id(0), lid = get_local_id(0), nl = get_local_size(0);
  const long o = (long)row * N;
  float q = 0.0f, s = 0.0f, sd = 0.0f;
  if (normalize)
    FOR_ITEMS(i, N, lid, nl) {
      const float u = g[i] * dy[o + i], ud = g[i] * dyd[o + i];
      q += x[o + i] * xd[o + i];
      s += x[o + i] * u;
      sd += xd[o + i] * u + x[o + i] * ud;
    }
  q = wg_sum(q, scratch);
  s = wg_sum(s, scratch);
  sd = wg_sum(sd, scratch);
  const float r = rstd[row], r3 = r * r * r / N;
  const float cu = r3 * q, cx = r3 * sd - 3.0f * r3 * r * r * q * s / N, cxd = r3 * s;
  FOR_ITEMS(i, N, lid, nl) {
    const float v = normalize ? r * g[i] * dyd[o + i] - cu * g[i] * dy[o + i] - cx * x[o + i] - cxd * xd[o + i]
                              : dyd[o + i];
    dxd[o + i] = accumulate ? dxd[o + i] + v : v;
  }
}

// The tangent of rmsnorm_wgrad (dgain = sum over rows of dy x r), added to dgd:
// sum of dyd x r + dy xd r - dy x r^3 q / N, q = xdot[row] from rmsnorm_jvp.
// One work-item per column, rows in order.
__kernel void rmsnorm_wgrad_tangent(__global float* dgd, __global const float* dy, __global const float* dyd,
                                    __global const float* x, __global const float* xd, __global const float* rstd,
                                    __global const float* xdot, int T, int N, int normalize) {
  const int n = get_global_id(0);
  if (n >= N || !normalize) return;
  float acc = 0.0f;
  for (int t = 0; t < T; ++t) {
    const long k = (long)t * N + n;
    const float r = rstd[t];
    acc += r * (dyd[k] * x[k] + dy[k] * xd[k] - dy[k] * x[k] * r * r * xdot[t] / N);
  }
  dgd[n] += acc;
}
