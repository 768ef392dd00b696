// Fused cross-entropy over vocabulary tiles. The host computes one tile of
// logits at a time (GEMM), then xent_fwd_tile folds it into running per-row
// statistics: max m, sum s of exp(logit - m), and the target's logit. For the
// backward the tile's logits become p = exp(logit - m) in place and the host
// accumulates U += p @ W_tile (GEMM); U is rescaled here whenever m grows, so
// at the end U / s = sum_v softmax_v W_v without a second pass over the
// vocabulary. Rows with no tile ever holding their max keep m = -inf.

// One work-group per row t of the tile (T, nv) whose row stride is ld.
__kernel void xent_fwd_tile(__global float* logits, int ld, int nv, int v0,
                            __global float* m_run, __global float* s_run, __global float* tgt_logit,
                            __global const int* targets,
                            int write_probs, __global float* U, int D,
                            __local float* scratch) {
  const int t = get_group_id(0), lid = get_local_id(0), nl = get_local_size(0);
  __global float* l = logits + (long)t * ld;
  const int tg = targets[t] - v0;
  // The target's logit is saved by the item that owns column tg, the same one
  // that overwrites it with p below: no other item touches l[tg].
  float mx = -INFINITY, s = 0.0f;
#if TTT_CPU
  // A contiguous run per item, eight lanes at a time.
  const int per = (nv + nl - 1) / nl, b = min(nv, lid * per), e = min(nv, b + per);
  if (tg >= b && tg < e) tgt_logit[t] = l[tg];
  float8 mx8 = (float8)(-INFINITY);
  int v = b;
  for (; v + 8 <= e; v += 8) mx8 = fmax(mx8, vload8(0, l + v));
  for (; v < e; ++v) mx = fmax(mx, l[v]);
  mx = fmax(mx, fmax(fmax(fmax(mx8.s0, mx8.s1), fmax(mx8.s2, mx8.s3)), fmax(fmax(mx8.s4, mx8.s5), fmax(mx8.s6, mx8.s7))));
#else
  if (tg >= 0 && tg < nv && tg % nl == lid) tgt_logit[t] = l[tg];
  for (int v = lid; v < nv; v += nl) mx = fmax(mx, l[v]);
#endif
  mx = wg_max(mx, scratch);
  const float m_old = m_run[t];
  const float m_new = fmax(m_old, mx);
  const float alpha = exp(m_old - m_new);  // 0 on the first tile (m_old = -inf)
#if TTT_CPU
  float8 s8 = 0.0f;
  for (v = b; v + 8 <= e; v += 8) {
    const float8 p = exp_nonpos8(vload8(0, l + v) - m_new);
    s8 += p;
    if (write_probs) vstore8(p, 0, l + v);
  }
  for (; v < e; ++v) {
    const float p = exp_nonpos(l[v] - m_new);
    s += p;
    if (write_probs) l[v] = p;
  }
  s += ((s8.s0 + s8.s1) + (s8.s2 + s8.s3)) + ((s8.s4 + s8.s5) + (s8.s6 + s8.s7));
#else
  for (int v = lid; v < nv; v += nl) {
    const float p = exp_nonpos(l[v] - m_new);
    s += p;
    if (write_probs) l[v] = p;
  }
#endif
  s = wg_sum(s, scratch);
  if (write_probs)
    for (int d = lid; d < D; d += nl) U[(long)t * D + d] *= alpha;
  // Every item has read m_run[t] above; item 0 may overwrite it only once
  // they all have, which takes a global fence (the reductions fence only local memory).
  barrier(CLK_GLOBAL_MEM_FENCE);
  if (lid == 0) {
    s_run[t] = s_run[t] * alpha + s;
    m_run[t] = m_new;
  }
}

// nll[t] = logsumexp - target logit.
__kernel void xent_fwd_final(__global float* nll, __global const float* m_run, __global const float* s_run,
                             __global const float* tgt_logit, int T) {
  const int t = get_global_id(0);
  if (t >= T) return;
  nll[t] = m_run[t] + log(s_run[t]) - tgt_logit[t];
}

// dh[t] = w_t (U[t] / s[t] - W[target_t]), w_t = inv_count if target_t != bos
// else 0. Row v of the output embedding is element (v, d) at
// v * w_vstride + d * w_dstride (tied wte: D, 1; lm_head [D, V]: 1, V).
__kernel void xent_bwd_final(__global float* dh, __global const float* U, __global const float* s_run,
                             __global const int* targets, __global const weight_t* w, long w_vstride, long w_dstride,
                             int T, int D, int bos, float inv_count) {
  const int d = get_global_id(0), t = get_global_id(1);
  if (d >= D || t >= T) return;
  const int tg = targets[t];
  const float wt = tg == bos ? 0.0f : inv_count;
  dh[(long)t * D + d] = wt * (U[(long)t * D + d] / s_run[t] - WLOAD((long)tg * w_vstride + (long)d * w_dstride, w));
}

// The logits gradient of one tile, in place, once xent_fwd_tile has swept the
// whole vocabulary (m_run, s_run final): l[t][v] = w_t (softmax - onehot), w_t as in
// xent_bwd_final. The host then forms dh and the output embedding's gradient by GEMMs.
__kernel void xent_grad_tile(__global float* logits, int ld, int nv, int v0, __global const float* m_run,
                             __global const float* s_run, __global const int* targets, int bos, float inv_count) {
  const int v = get_global_id(0), t = get_global_id(1);
  if (v >= nv) return;
  const int tg = targets[t];
  const float wt = tg == bos ? 0.0f : inv_count;
  __global float* l = logits + (long)t * ld + v;
  const float p = exp_nonpos(*l - m_run[t]) / s_run[t];
  *l = wt * (p - (v0 + v == tg ? 1.0f : 0.0f));
}

// Tangents (forward-over-reverse) for the device meta gradient
// (lib/engine/meta_gradient.cpp): a tangent, suffix d (xd, dyd), is the derivative
// of a value along one direction nu of the prime weights, d/de of it at W + e nu.
// Here the logits gradient's, in two vocabulary sweeps (ops::xent_tangent).

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
