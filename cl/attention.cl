// Sliding-window causal attention over a ring buffer of keys and values.
// Queries of the current chunk (T, H*E) sit at positions pos0..pos0+T-1; keys
// and values of position p live in row p % C of kc / vc (C >= W + T - 1, so the
// chunk's own rows never overwrite a key an earlier query of it still sees).
// The query at position p sees keys p-W+1..p. Flash-style: keys stream
// through local memory in tiles of ATT_BK with an online softmax, so memory is
// O(T) beyond the ring: the forward saves only lse (T, H); the backward
// recomputes the probabilities from it. One work-item per (query, head) in the
// forward and dq kernels, per (key, head) in the dk/dv kernel; a work-group of
// ATT_BQ items shares every tile it loads. The CPU forward (ATT_CPU) differs:
// a work-group of one work-item owns a block of queries of one head.

// ttt-include: attention_head

#ifndef ATT_BQ
#define ATT_BQ 64  // work-items per group (queries, or keys in bwd_dkv)
#endif
#ifndef ATT_BK
#define ATT_BK 32  // keys (or queries in bwd_dkv) per local-memory tile
#endif
#ifndef ATT_CPU
#define ATT_CPU 0  // 1: the forward written for CPU devices (see attention_fwd_body)
#endif

// Loads rows first..first+n-1 (positions, mapped through the ring of C rows
// when C > 0, else chunk-relative rows) of head h into dst (n, EV).
inline void load_tile(__local floatv* dst, __global const float* src, long first, int n, int C, int ld, int h) {
  for (int i = get_local_id(0); i < n * EV; i += ATT_BQ) {
    const int j = i / EV, e = i % EV;
    const long row = C > 0 ? (first + j) % C : first + j;
    dst[i] = vloadv(0, src + row * ld + h * ATT_E + e * VW);
  }
}
// The same for keys and values (kv_t, attention_head.cl).
inline void load_tile_kv(__local floatv* dst, __global const kv_t* src, long first, int n, int C, int ld, int h) {
  for (int i = get_local_id(0); i < n * EV; i += ATT_BQ) {
    const int j = i / EV, e = i % EV;
    const long row = C > 0 ? (first + j) % C : first + j;
    dst[i] = KVLOADV(src + row * ld + h * ATT_E + e * VW);
  }
}

// The window rule in one place. Keys any query of the group starting at
// chunk row t0 sees (uniform across the group, as its barriers need):
// positions [*k_lo, *k_hi].
inline void group_keys(long pos0, int t0, int T, int W, long* k_lo, long* k_hi) {
  *k_lo = max(0L, pos0 + t0 - W + 1);
  *k_hi = pos0 + min(t0 + ATT_BQ, T) - 1;
}
// Of the tile of nk keys from position kb, those the query at position p
// sees (p-W < key <= p): indices [*j_lo, *j_hi).
inline void visible_keys(long p, long kb, int nk, int W, int* j_lo, int* j_hi) {
  *j_lo = (int)max(0L, p - W + 1 - kb);
  *j_hi = (int)min((long)nk, p - kb + 1);
}

inline float dotv(const floatv* a, __local const floatv* b) {
  floatv s = 0.0f;
  for (int e = 0; e < EV; ++e) s = mad(a[e], b[e], s);
  return hsum(s);
}

#if ATT_CPU
// The backward for CPU devices (PoCL runs a work-group as a loop over its
// work-items, and LLVM vectorises only innermost loops): every inner loop is a
// fixed-length, contiguous, reduction-free sweep. The key tile is stored
// transposed (E, BK) so that a query's BK scores accumulate as one axpy per head
// element, and keys a query does not see are masked rather than skipped.
// A work-item per row, the ring's modulo once per row: transposed (E, BK)
// when `transpose`, else (BK, E).
inline void load_rows(__local float* dst, __global const float* src, long first, int n, int C, int ld, int h,
                      bool transpose) {
  for (int j = get_local_id(0); j < n; j += ATT_BQ) {
    const long row = C > 0 ? (first + j) % C : first + j;
    __global const float* r = src + row * ld + h * ATT_E;
    if (transpose)
      for (int e = 0; e < ATT_E; ++e) dst[e * ATT_BK + j] = r[e];
    else
      for (int e = 0; e < ATT_E; ++e) dst[j * ATT_E + e] = r[e];
  }
}
// The same for keys and values (kv_t, attention_head.cl).
inline void load_rows_kv(__local float* dst, __global const kv_t* src, long first, int n, int C, int ld, int h,
                         bool transpose) {
  for (int j = get_local_id(0); j < n; j += ATT_BQ) {
    const long row = C > 0 ? (first + j) % C : first + j;
    __global const kv_t* r = src + row * ld + h * ATT_E;
    if (transpose)
      for (int e = 0; e < ATT_E; ++e) dst[e * ATT_BK + j] = KVLOAD(e, r);
    else
      for (int e = 0; e < ATT_E; ++e) dst[j * ATT_E + e] = KVLOAD(e, r);
  }
}

// s[j] = a . row j of a tile held transposed (E, BK): BK dot products as E
// axpys over j, a contiguous sweep with no reduction.
inline void tile_dots(float* s, const float* a, __local const float* t) {
  for (int j = 0; j < ATT_BK; ++j) s[j] = 0.0f;
  for (int e = 0; e < ATT_E; ++e) {
    const float ae = a[e];
    for (int j = 0; j < ATT_BK; ++j) s[j] = mad(ae, t[e * ATT_BK + j], s[j]);
  }
}

// Two at once, s[j] = a . row j of t and u[j] = b . row j of v, in one sweep
// (the backward's scores and dout . v: 20% faster than two sweeps on PoCL).
inline void tile_dots2(float* s, const float* a, __local const float* t, float* u, const float* b,
                       __local const float* v) {
  for (int j = 0; j < ATT_BK; ++j) s[j] = u[j] = 0.0f;
  for (int e = 0; e < ATT_E; ++e) {
    const float ae = a[e], be = b[e];
    for (int j = 0; j < ATT_BK; ++j) {
      s[j] = mad(ae, t[e * ATT_BK + j], s[j]);
      u[j] = mad(be, v[e * ATT_BK + j], u[j]);
    }
  }
}

// acc += w * r for a head-long row r (of a (BK, E) tile).
inline void row_axpy(float* acc, float w, __local const float* r) {
  for (int e = 0; e < ATT_E; ++e) acc[e] = mad(w, r[e], acc[e]);
}

// The forward for CPU devices: one work-item per work-group (no barrier, so
// PoCL keeps a work-item's arrays in place instead of spilling them at every
// barrier), each owning ATT_CQ vectors of 16 queries (CQB queries) of one head
// and streaming the keys in tiles of ATT_CK. The two products are small GEMMs
// written as register blocks LLVM keeps in vector registers: scores S^T (CK,
// CQB) += four keys' elements (broadcast) times the query vectors, and
// O^T (E, CQB) += four head elements of a value row (broadcast) times the
// probability vectors. The softmax runs along the query lanes; keys a query
// does not see are masked by position (in the tiles at the diagonal and the
// window's edge only), never by value, so a NaN score stays NaN.
// ttt-include: attention_cpu_fwd

__kernel void attention_fwd(__global float* out, __global float* lse, __global const float* q,
                            __global const kv_t* kc, __global const kv_t* vc,
                            int T, int H, int C, long pos0, int W, float scale) {
  attention_fwd_cpu(out, lse, q, kc, vc, T, H, C, pos0, W, scale, get_group_id(0) * CQB, get_group_id(1));
}
#else
inline void attention_fwd_body(__global float* out, __global float* lse, __global const float* q,
                               __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C, long pos0,
                               int W, float scale, __local floatv* ks, __local floatv* vs) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int t0 = get_group_id(0) * ATT_BQ, t = t0 + lid;
  const bool active = t < T;
  const long p = pos0 + t;
  floatv qv[EV], acc[EV];
  float sc[ATT_BK];
  for (int e = 0; e < EV; ++e) {
    qv[e] = active ? vloadv(0, q + (long)t * D + h * ATT_E + e * VW) * scale : (floatv)0.0f;
    acc[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  long k_lo, k_hi;
  group_keys(pos0, t0, T, W, &k_lo, &k_hi);
  for (long kb = k_lo; kb <= k_hi; kb += ATT_BK) {
    const int nk = (int)min((long)ATT_BK, k_hi - kb + 1);
    load_tile_kv(ks, kc, kb, nk, C, D, h);
    load_tile_kv(vs, vc, kb, nk, C, D, h);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      int j_lo, j_hi;
      visible_keys(p, kb, nk, W, &j_lo, &j_hi);
      float mt = -INFINITY;
      for (int j = j_lo; j < j_hi; ++j) {
        sc[j] = dotv(qv, ks + j * EV);
        mt = fmax(mt, sc[j]);
      }
      if (j_lo < j_hi) {
        const float m_new = fmax(m, mt), c = exp(m - m_new);
        l *= c;
        for (int e = 0; e < EV; ++e) acc[e] *= c;
        for (int j = j_lo; j < j_hi; ++j) {
          const float pj = exp(sc[j] - m_new);
          l += pj;
          for (int e = 0; e < EV; ++e) acc[e] = mad(pj, vs[j * EV + e], acc[e]);
        }
        m = m_new;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (active) {
    const float inv = 1.0f / l;
    for (int e = 0; e < EV; ++e) vstorev(acc[e] * inv, out + (long)t * D + h * ATT_E + e * VW);
    lse[(long)t * H + h] = m + log(l);
  }
}


__kernel void attention_fwd(__global float* out, __global float* lse, __global const float* q,
                            __global const kv_t* kc, __global const kv_t* vc,
                            int T, int H, int C, long pos0, int W, float scale) {
  __local floatv ks[ATT_BK * EV], vs[ATT_BK * EV];
  attention_fwd_body(out, lse, q, kc, vc, T, H, C, pos0, W, scale, ks, vs);
}
#endif

// dq = scale * sum_j P_tj (dout_t . v_j - Dt) k_j with Dt = dout_t . out_t;
// Dt is saved in dsum (T, H) for attention_bwd_dkv.
#if ATT_CPU
// The CPU form (see load_rows): ks holds the key tile twice, transposed
// (E, BK) for the scores and as rows (BK, E) for dq; vs the value tile transposed.
inline void attention_bwd_dq_body(__global float* dq, __global float* dsum, __global const float* dout,
                                  __global const float* out, __global const float* q, __global const float* lse,
                                  __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C, long pos0,
                                  int W, float scale, __local floatv* ks4, __local floatv* vs4) {
  __local float* kt = (__local float*)ks4;
  __local float* kr = kt + ATT_E * ATT_BK;
  __local float* vt = (__local float*)vs4;
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int t0 = get_group_id(0) * ATT_BQ, t = t0 + lid;
  const bool active = t < T;
  const long p = pos0 + t;
  float qf[ATT_E], dof[ATT_E], acc[ATT_E], sc[ATT_BK], dp[ATT_BK];
  float Dt = 0.0f;
  for (int e = 0; e < ATT_E; ++e) {
    const long i = (long)t * D + h * ATT_E + e;
    qf[e] = active ? q[i] * scale : 0.0f;
    dof[e] = active ? dout[i] : 0.0f;
    Dt = active ? mad(dof[e], out[i], Dt) : Dt;
    acc[e] = 0.0f;
  }
  const float L = active ? lse[(long)t * H + h] : 0.0f;
  long k_lo, k_hi;
  group_keys(pos0, t0, T, W, &k_lo, &k_hi);
  for (long kb = k_lo; kb <= k_hi; kb += ATT_BK) {
    const int nk = (int)min((long)ATT_BK, k_hi - kb + 1);
    load_rows_kv(kt, kc, kb, nk, C, D, h, true);
    load_rows_kv(kr, kc, kb, nk, C, D, h, false);
    load_rows_kv(vt, vc, kb, nk, C, D, h, true);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      int j_lo, j_hi;
      visible_keys(p, kb, nk, W, &j_lo, &j_hi);
      tile_dots2(sc, qf, kt, dp, dof, vt);
      for (int j = 0; j < ATT_BK; ++j)  // beyond nk: stale or unwritten rows, masked
        sc[j] = j >= j_lo && j < j_hi ? exp_nonpos(sc[j] - L) * (dp[j] - Dt) : 0.0f;
      for (int j = j_lo; j < j_hi; ++j) row_axpy(acc, sc[j], kr + j * ATT_E);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (active) {
    for (int e = 0; e < ATT_E; ++e) dq[(long)t * D + h * ATT_E + e] = acc[e] * scale;
    dsum[(long)t * H + h] = Dt;
  }
}
#else
inline void attention_bwd_dq_body(__global float* dq, __global float* dsum, __global const float* dout,
                                  __global const float* out, __global const float* q, __global const float* lse,
                                  __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C, long pos0,
                                  int W, float scale, __local floatv* ks, __local floatv* vs) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int t0 = get_group_id(0) * ATT_BQ, t = t0 + lid;
  const bool active = t < T;
  const long p = pos0 + t;
  floatv qv[EV], dov[EV], acc[EV];
  floatv dt4 = 0.0f;
  for (int e = 0; e < EV; ++e) {
    const long i = (long)t * D + h * ATT_E + e * VW;
    qv[e] = active ? vloadv(0, q + i) * scale : (floatv)0.0f;
    dov[e] = active ? vloadv(0, dout + i) : (floatv)0.0f;
    dt4 = active ? mad(dov[e], vloadv(0, out + i), dt4) : dt4;
    acc[e] = 0.0f;
  }
  const float Dt = hsum(dt4);
  const float L = active ? lse[(long)t * H + h] : 0.0f;
  long k_lo, k_hi;
  group_keys(pos0, t0, T, W, &k_lo, &k_hi);
  for (long kb = k_lo; kb <= k_hi; kb += ATT_BK) {
    const int nk = (int)min((long)ATT_BK, k_hi - kb + 1);
    load_tile_kv(ks, kc, kb, nk, C, D, h);
    load_tile_kv(vs, vc, kb, nk, C, D, h);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      int j_lo, j_hi;
      visible_keys(p, kb, nk, W, &j_lo, &j_hi);
      for (int j = j_lo; j < j_hi; ++j) {
        const float s = dotv(qv, ks + j * EV), dp = dotv(dov, vs + j * EV);
        const float ds = exp(s - L) * (dp - Dt);
        for (int e = 0; e < EV; ++e) acc[e] = mad(ds, ks[j * EV + e], acc[e]);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (active) {
    for (int e = 0; e < EV; ++e) vstorev(acc[e] * scale, dq + (long)t * D + h * ATT_E + e * VW);
    dsum[(long)t * H + h] = Dt;
  }
}

#endif

__kernel void attention_bwd_dq(__global float* dq, __global float* dsum, __global const float* dout,
                               __global const float* out, __global const float* q, __global const float* lse,
                               __global const kv_t* kc, __global const kv_t* vc,
                               int T, int H, int C, long pos0, int W, float scale) {
  __local floatv ks[ATT_BK * EV * (1 + ATT_CPU)], vs[ATT_BK * EV];
  attention_bwd_dq_body(dq, dsum, dout, out, q, lse, kc, vc, T, H, C, pos0, W, scale, ks, vs);
}

// dk_j = scale * sum_t P_tj (dout_t . v_j - Dt) q_t,  dv_j = sum_t P_tj dout_t,
// for the keys of the current chunk only (carried keys are constants). The
// work-item of chunk key j loops over the chunk's queries j..j+W-1; dk and dv
// are written at (d_off + j * d_ld + h * E), so dv can land straight in the
// v-slice of a fused dq|dk|dv matrix.
#if ATT_CPU
// The CPU form: qs and dos hold their tiles twice, transposed (E, BK) for the
// scores and as rows (BK, E) for dk and dv.
inline void attention_bwd_dkv_body(__global float* dk, long dk_off, int dk_ld, __global float* dv, long dv_off,
                                   int dv_ld, __global const float* dout, __global const float* q,
                                   __global const float* lse, __global const float* dsum, __global const kv_t* kc,
                                   __global const kv_t* vc, int T, int H, int C, long pos0, int W, float scale,
                                   __local floatv* qs4, __local floatv* dos4, __local float* ls, __local float* dss) {
  __local float* qt = (__local float*)qs4;
  __local float* qr = qt + ATT_E * ATT_BK;
  __local float* dt = (__local float*)dos4;
  __local float* dr = dt + ATT_E * ATT_BK;
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int j0 = get_group_id(0) * ATT_BQ, j = j0 + lid;
  const bool active = j < T;
  float kf[ATT_E], vf[ATT_E], dka[ATT_E], dva[ATT_E], sc[ATT_BK], dp[ATT_BK];
  const long row = ((pos0 + j) % C) * D + h * ATT_E;
  for (int e = 0; e < ATT_E; ++e) {
    kf[e] = active ? KVLOAD(row + e, kc) * scale : 0.0f;
    vf[e] = active ? KVLOAD(row + e, vc) : 0.0f;
    dka[e] = dva[e] = 0.0f;
  }
  const int q_lo = j0, q_hi = (int)min((long)T - 1, (long)j0 + ATT_BQ - 1 + W - 1);
  for (int qb = q_lo; qb <= q_hi; qb += ATT_BK) {
    const int nq = min(ATT_BK, q_hi - qb + 1);
    load_rows(qt, q, qb, nq, 0, D, h, true);
    load_rows(qr, q, qb, nq, 0, D, h, false);
    load_rows(dt, dout, qb, nq, 0, D, h, true);
    load_rows(dr, dout, qb, nq, 0, D, h, false);
    for (int i = lid; i < nq; i += ATT_BQ) {
      ls[i] = lse[(long)(qb + i) * H + h];
      dss[i] = dsum[(long)(qb + i) * H + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      const int i_lo = max(0, j - qb), i_hi = min(nq, j + W - qb);
      tile_dots2(sc, kf, qt, dp, vf, dt);
      for (int i = 0; i < ATT_BK; ++i) {  // beyond nq: stale or unwritten rows, masked
        const bool seen = i >= i_lo && i < i_hi;
        const float pt = exp_nonpos(sc[i] - ls[i]);
        sc[i] = seen ? pt : 0.0f;
        dp[i] = seen ? pt * (dp[i] - dss[i]) : 0.0f;
      }
      for (int i = i_lo; i < i_hi; ++i) {
        row_axpy(dva, sc[i], dr + i * ATT_E);
        row_axpy(dka, dp[i], qr + i * ATT_E);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (active)
    for (int e = 0; e < ATT_E; ++e) {
      dk[dk_off + (long)j * dk_ld + h * ATT_E + e] = dka[e] * scale;
      dv[dv_off + (long)j * dv_ld + h * ATT_E + e] = dva[e];
    }
}
#else
inline void attention_bwd_dkv_body(__global float* dk, long dk_off, int dk_ld, __global float* dv, long dv_off,
                                   int dv_ld, __global const float* dout, __global const float* q,
                                   __global const float* lse, __global const float* dsum, __global const kv_t* kc,
                                   __global const kv_t* vc, int T, int H, int C, long pos0, int W, float scale,
                                   __local floatv* qs, __local floatv* dos, __local float* ls, __local float* dss) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int j0 = get_group_id(0) * ATT_BQ, j = j0 + lid;
  const bool active = j < T;
  floatv kv[EV], vv[EV], dka[EV], dva[EV];
  for (int e = 0; e < EV; ++e) {
    const long row = ((pos0 + j) % C) * D + h * ATT_E + e * VW;
    kv[e] = active ? KVLOADV(kc + row) * scale : (floatv)0.0f;
    vv[e] = active ? KVLOADV(vc + row) : (floatv)0.0f;
    dka[e] = 0.0f;
    dva[e] = 0.0f;
  }
  // Queries (chunk rows) any key of this group is seen by.
  const int q_lo = j0, q_hi = (int)min((long)T - 1, (long)j0 + ATT_BQ - 1 + W - 1);
  for (int qb = q_lo; qb <= q_hi; qb += ATT_BK) {
    const int nq = min(ATT_BK, q_hi - qb + 1);
    load_tile(qs, q, qb, nq, 0, D, h);
    load_tile(dos, dout, qb, nq, 0, D, h);
    for (int i = lid; i < nq; i += ATT_BQ) {
      ls[i] = lse[(long)(qb + i) * H + h];
      dss[i] = dsum[(long)(qb + i) * H + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      // Queries qb+i that see key j: j <= qb+i < j+W.
      const int i_lo = max(0, j - qb), i_hi = min(nq, j + W - qb);
      for (int i = i_lo; i < i_hi; ++i) {
        const float s = dotv(kv, qs + i * EV), dp = dotv(vv, dos + i * EV);
        const float pt = exp(s - ls[i]), ds = pt * (dp - dss[i]);
        for (int e = 0; e < EV; ++e) {
          dva[e] = mad(pt, dos[i * EV + e], dva[e]);
          dka[e] = mad(ds, qs[i * EV + e], dka[e]);
        }
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (active)
    for (int e = 0; e < EV; ++e) {
      vstorev(dka[e] * scale, dk + dk_off + (long)j * dk_ld + h * ATT_E + e * VW);
      vstorev(dva[e], dv + dv_off + (long)j * dv_ld + h * ATT_E + e * VW);
    }
}

#endif

__kernel void attention_bwd_dkv(__global float* dk, int dk_off, int dk_ld, __global float* dv, int dv_off, int dv_ld,
                                __global const float* dout, __global const float* q, __global const float* lse,
                                __global const float* dsum, __global const kv_t* kc, __global const kv_t* vc,
                                int T, int H, int C, long pos0, int W, float scale) {
  __local floatv qs[ATT_BK * EV * (1 + ATT_CPU)], dos[ATT_BK * EV * (1 + ATT_CPU)];
  __local float ls[ATT_BK], dss[ATT_BK];
  attention_bwd_dkv_body(dk, dk_off, dk_ld, dv, dv_off, dv_ld, dout, q, lse, dsum, kc, vc, T, H, C, pos0, W, scale, qs,
                         dos, ls, dss);
}

// Batched variants: S segments (documents) of one mini-batch, segment s in
// chunk rows s*R .. s*R + n_s - 1 (R rows per segment; rows past n_s are
// padding nobody reads), its queries at positions pos_s.., its keys and values
// in its own ring of C rows at kc/vc + s*C*D. seg holds {pos_s, n_s} per
// segment; the segment is the third dimension of the launch. A group past its
// segment's n_s returns at once (uniform across the group, so no barrier is split).
#define SEGMENT_SETUP(rows)                                      \
  const int s = get_group_id(2), D = H * ATT_E;                  \
  const long pos0 = seg[2 * s], row0 = (long)s * R;              \
  const int T = (int)seg[2 * s + 1];                             \
  const long ring = (long)s * C * D;                             \
  if ((int)get_group_id(0) * (rows) >= T) return;

__kernel void attention_fwd_batched(__global float* out, __global float* lse, __global const float* q,
                                    __global const kv_t* kc, __global const kv_t* vc, __global const long* seg,
                                    int R, int H, int C, int W, float scale) {
#if ATT_CPU
  SEGMENT_SETUP(CQB)
  attention_fwd_cpu(out + row0 * D, lse + row0 * H, q + row0 * D, kc + ring, vc + ring, T, H, C, pos0, W, scale,
                    get_group_id(0) * CQB, get_group_id(1));
#else
  __local floatv ks[ATT_BK * EV], vs[ATT_BK * EV];
  SEGMENT_SETUP(ATT_BQ)
  attention_fwd_body(out + row0 * D, lse + row0 * H, q + row0 * D, kc + ring, vc + ring, T, H, C, pos0, W, scale, ks,
                     vs);
#endif
}

__kernel void attention_bwd_dq_batched(__global float* dq, __global float* dsum, __global const float* dout,
                                       __global const float* out, __global const float* q, __global const float* lse,
                                       __global const kv_t* kc, __global const kv_t* vc, __global const long* seg,
                                       int R, int H, int C, int W, float scale) {
  __local floatv ks[ATT_BK * EV * (1 + ATT_CPU)], vs[ATT_BK * EV];
  SEGMENT_SETUP(ATT_BQ)
  attention_bwd_dq_body(dq + row0 * D, dsum + row0 * H, dout + row0 * D, out + row0 * D, q + row0 * D, lse + row0 * H,
                        kc + ring, vc + ring, T, H, C, pos0, W, scale, ks, vs);
}

__kernel void attention_bwd_dkv_batched(__global float* dk, int dk_off, int dk_ld, __global float* dv, int dv_off,
                                        int dv_ld, __global const float* dout, __global const float* q,
                                        __global const float* lse, __global const float* dsum,
                                        __global const kv_t* kc, __global const kv_t* vc, __global const long* seg,
                                        int R, int H, int C, int W, float scale) {
  __local floatv qs[ATT_BK * EV * (1 + ATT_CPU)], dos[ATT_BK * EV * (1 + ATT_CPU)];
  __local float ls[ATT_BK], dss[ATT_BK];
  SEGMENT_SETUP(ATT_BQ)
  attention_bwd_dkv_body(dk, dk_off + row0 * dk_ld, dk_ld, dv, dv_off + row0 * dv_ld, dv_ld, dout + row0 * D,
                         q + row0 * D, lse + row0 * H, dsum + row0 * H, kc + ring, vc + ring, T, H, C, pos0, W, scale,
                         qs, dos, ls, dss);
}
