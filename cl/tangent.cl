// Tangent (forward-over-reverse) kernels of the TTT-E2E meta gradient on the
// device (lib/engine/meta_gradient.cpp). A tangent, written with a trailing
// "d" (xd, dyd), is the derivative of a value along one direction of the prime
// weights: d/de of the value at W + e * nu. Running the forward and the
// backward of a mini-batch in tangents gives the Hessian-vector products of
// its inner loss. Rows are contiguous, N (or 2I, I) floats each.

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

// sigma[t] += sum over the tile of p zd, p = exp(logit - m) / s (after xent's
// sweep): the first pass of the logits gradient's tangent. One work-group per row.
__kernel void xent_sigma_tile(__global float* sigma, __global const float* logits, __global const float* zd, int ld,
                              int nv, __global const float* m_run, __global const float* s_run,
                              __local float* scratch) {
  const int t = get_group_id(0), lid = get_local_id(0), nl = get_local_size(0);
  const long o = (long)t * ld;
  const float m = m_run[t];
  float acc = 0.0f;
  FOR_ITEMS(v, nv, lid, nl) acc += exp_nonpos(logits[o + v] - m) * zd[o + v];
  acc = wg_sum(acc, scratch);
  if (lid == 0) sigma[t] += acc / s_run[t];
}

// In place: logits -> w_t (p - onehot) (xent_grad_tile) and zd -> its tangent
// w_t p (zd - sigma_t), with w_t = inv_count, or 0 where the target is bos.
__kernel void xent_tangent_tile(__global float* logits, __global float* zd, int ld, int nv, int v0,
                                __global const float* m_run, __global const float* s_run,
                                __global const float* sigma, __global const int* targets, int bos, float inv_count) {
  const int v = get_global_id(0), t = get_global_id(1);
  if (v >= nv) return;
  const int tg = targets[t];
  const float wt = tg == bos ? 0.0f : inv_count;
  const long k = (long)t * ld + v;
  const float p = exp_nonpos(logits[k] - m_run[t]) / s_run[t];
  logits[k] = wt * (p - (v0 + v == tg ? 1.0f : 0.0f));
  zd[k] = wt * p * (zd[k] - sigma[t]);
}

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
