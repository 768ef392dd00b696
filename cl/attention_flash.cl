// The GPU forms of the prefill attention kernels (attention.cl holds the
// one-query-per-work-item tiles and the CPU sweeps; the math, the ring and the
// window rule are the same: see there). Flash-attention style: a work-group
// owns ATT_FQ rows (queries in the forward and dq, chunk keys in dk/dv) and
// streams the other side through local memory in tiles of ATT_FK rows. Its
// ATT_TR x ATT_TC work-items each hold a block of ATT_FQ/ATT_TR rows by
// ceil(ATT_FK/ATT_TC) tile columns of scores, and the same rows by
// ceil(ATT_E/ATT_TC) head elements of the outputs, in registers; a tile of
// scores goes through local memory between the two products (scores, then
// probabilities times values). Work-item (a, b) takes rows a + i*TR, columns
// and head elements b + j*TC: neighbours read neighbouring local words (rows
// are padded to E+1 and FK+1 words) while rows are broadcast. Keys and values
// are read only through kv_t / KVLOAD (attention_head.cl).

// ttt-include: attention_head

#ifndef ATT_FQ
#define ATT_FQ 64  // rows a work-group owns
#endif
#ifndef ATT_FK
#define ATT_FK 32  // rows of the streamed tile
#endif
#ifndef ATT_TR
#define ATT_TR 16  // work-items along the rows
#endif
#ifndef ATT_TC
#define ATT_TC 8  // work-items along the tile columns and head elements
#endif
#define FNT (ATT_TR * ATT_TC)              // work-items per group
#define FRR (ATT_FQ / ATT_TR)              // rows per work-item
#define FRC ((ATT_FK + ATT_TC - 1) / ATT_TC)  // tile columns per work-item
#define FRD ((ATT_E + ATT_TC - 1) / ATT_TC)   // head elements per work-item
#define FLE (ATT_E + 1)                    // padded row of a head-long tile
#define FLK (ATT_FK + 1)                   // padded row of a score tile
#define FOWN ((ATT_FQ + FNT - 1) / FNT)    // rows whose softmax state a work-item keeps

// The one tile loop of both loaders: element e of tile row j (< n) is
// READ(j, e) * mul, rows n..rows-1 are zeroed; rows padded to FLE.
#define FLASH_TILE(dst, rows, n, mul, READ)                          \
  for (int i = get_local_id(0); i < (rows) * ATT_E; i += FNT) {      \
    const int j = i / ATT_E, e = i % ATT_E;                          \
    (dst)[j * FLE + e] = j < (n) ? (READ) * (mul) : 0.0f;            \
  }

// Rows first..first+n-1 of head h of a (rows, ld) matrix into dst, times mul.
inline void flash_load(__local float* dst, int rows, __global const float* src, long first, int n, int ld, int h,
                       float mul) {
  FLASH_TILE(dst, rows, n, mul, src[(first + j) * ld + h * ATT_E + e])
}

// The same from a key/value ring of C rows (position p in row p % C).
inline void flash_load_kv(__local float* dst, int rows, __global const kv_t* src, long first, int n, int C, int ld,
                          int h, float mul) {
  FLASH_TILE(dst, rows, n, mul, KVLOAD(((first + j) % C) * ld + h * ATT_E + e, src))
}

// A query group's start: its accumulator zeroed and its (scaled) query rows
// t0..t0+nq-1 in qs, t0 = the group's first chunk row; returns nq.
inline int flash_query_group(float acc[FRR][FRD], __local float* qs, __global const float* q, int T, int D, int h,
                             float scale) {
  const int t0 = get_group_id(0) * ATT_FQ, nq = min(ATT_FQ, T - t0);
  for (int i = 0; i < FRR; ++i)
    for (int k = 0; k < FRD; ++k) acc[i][k] = 0.0f;
  flash_load(qs, ATT_FQ, q, t0, nq, D, h, scale);
  return nq;
}

// s[i][j] = A[row i] . B[col j] for this work-item's rows a + i*TR and columns
// b + j*TC (< nc); u likewise with A2, B2 when two (the backward's dout . v).
inline void flash_dots(float s[FRR][FRC], __local const float* A, __local const float* B, float u[FRR][FRC],
                       __local const float* A2, __local const float* B2, bool two, int nc) {
  const int a = get_local_id(0) / ATT_TC, b = get_local_id(0) % ATT_TC;
  for (int i = 0; i < FRR; ++i)
    for (int j = 0; j < FRC; ++j) s[i][j] = u[i][j] = 0.0f;
  for (int e = 0; e < ATT_E; ++e) {
    float x[FRR], y[FRC];
    for (int i = 0; i < FRR; ++i) x[i] = A[(a + i * ATT_TR) * FLE + e];
    for (int j = 0; j < FRC; ++j) y[j] = b + j * ATT_TC < nc ? B[(b + j * ATT_TC) * FLE + e] : 0.0f;
    for (int i = 0; i < FRR; ++i)
      for (int j = 0; j < FRC; ++j) s[i][j] = mad(x[i], y[j], s[i][j]);
    if (two) {
      for (int i = 0; i < FRR; ++i) x[i] = A2[(a + i * ATT_TR) * FLE + e];
      for (int j = 0; j < FRC; ++j) y[j] = b + j * ATT_TC < nc ? B2[(b + j * ATT_TC) * FLE + e] : 0.0f;
      for (int i = 0; i < FRR; ++i)
        for (int j = 0; j < FRC; ++j) u[i][j] = mad(x[i], y[j], u[i][j]);
    }
  }
}

// acc[i][k] += sum_{c < nc} P[row a+i*TR][c] * V[c][b + k*TC] (P padded to FLK, V to FLE).
inline void flash_pv(float acc[FRR][FRD], __local const float* P, __local const float* V, int nc) {
  const int a = get_local_id(0) / ATT_TC, b = get_local_id(0) % ATT_TC;
  for (int c = 0; c < nc; ++c) {
    float p[FRR], v[FRD];
    for (int i = 0; i < FRR; ++i) p[i] = P[(a + i * ATT_TR) * FLK + c];
    for (int k = 0; k < FRD; ++k) v[k] = b + k * ATT_TC < ATT_E ? V[c * FLE + b + k * ATT_TC] : 0.0f;
    for (int i = 0; i < FRR; ++i)
      for (int k = 0; k < FRD; ++k) acc[i][k] = mad(p[i], v[k], acc[i][k]);
  }
}

// Out rows (t0 + row) of head h: acc times mul[row] (or 1) times scale, for
// rows < n; plus what was there times old[row] when old, or plainly when add.
inline void flash_store(__global float* dst, long off, int ld, int h, float acc[FRR][FRD], int n,
                        __local const float* mul, float scale, __local const float* old, bool add) {
  const int a = get_local_id(0) / ATT_TC, b = get_local_id(0) % ATT_TC;
  for (int i = 0; i < FRR; ++i) {
    const int r = a + i * ATT_TR;
    if (r >= n) continue;
    const float f = mul ? mul[r] * scale : scale, g = old ? old[r] : 1.0f;
    for (int k = 0; k < FRD; ++k) {
      const int d = b + k * ATT_TC;
      if (d >= ATT_E) continue;
      const long at = off + (long)r * ld + h * ATT_E + d;
      dst[at] = old || add ? mad(dst[at], g, acc[i][k] * f) : acc[i][k] * f;
    }
  }
}

// A pass covers the keys at lags [lo, hi) behind each query (the query at
// position p, key at k: lo <= p - k < hi); one pass of lags [0, W) is the
// whole window. A device that ends long loops early (llvmpipe: host
// loop_budget) gets the window in several passes, each merged into (the
// forward) or added to (the backward) what the earlier ones wrote.
// Of the tile of nk keys from position kb, those the query at position p
// sees in this pass: indices [*j_lo, *j_hi).
inline void flash_visible_keys(long p, long kb, int nk, int lo, int hi, int* j_lo, int* j_hi) {
  *j_lo = (int)max(0L, p - hi + 1 - kb);
  *j_hi = (int)min((long)nk, p - lo - kb + 1);
}

// The queries of chunk rows t0..t0+FQ-1 (those < T) see keys at positions
// [*k_lo, *k_hi] in this pass: the same for every work-item, as the barriers need.
inline void flash_group_keys(long pos0, int t0, int T, int lo, int hi, long* k_lo, long* k_hi) {
  *k_lo = max(0L, pos0 + t0 - hi + 1);
  *k_hi = pos0 + min(t0 + ATT_FQ, T) - 1 - lo;
}

inline void attention_fwd_flash_body(__global float* out, __global float* lse, __global const float* q,
                                     __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C, long pos0,
                                     int lo, int hi, float scale, __local float* qs, __local float* kvs,
                                     __local float* ps, __local float* cs, __local float* os) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0), t0 = get_group_id(0) * ATT_FQ;
  float acc[FRR][FRD], s[FRR][FRC], u[FRR][FRC];
  const int nq = flash_query_group(acc, qs, q, T, D, h, scale);
  // The running maximum and sum of rows lid + n*FNT, kept by the work-item that updates them.
  float mrow[FOWN], lrow[FOWN];
  for (int n = 0; n < FOWN; ++n) {
    mrow[n] = -INFINITY;
    lrow[n] = 0.0f;
  }
  long k_lo, k_hi;
  flash_group_keys(pos0, t0, T, lo, hi, &k_lo, &k_hi);
  const int a = lid / ATT_TC, b = lid % ATT_TC;
  for (long kb = k_lo; kb <= k_hi; kb += ATT_FK) {
    const int nk = (int)min((long)ATT_FK, k_hi - kb + 1);
    flash_load_kv(kvs, ATT_FK, kc, kb, nk, C, D, h, 1.0f);
    barrier(CLK_LOCAL_MEM_FENCE);
    flash_dots(s, qs, kvs, u, qs, kvs, false, nk);
    for (int i = 0; i < FRR; ++i)
      for (int j = 0; j < FRC; ++j)
        if (b + j * ATT_TC < nk) ps[(a + i * ATT_TR) * FLK + b + j * ATT_TC] = s[i][j];
    barrier(CLK_LOCAL_MEM_FENCE);
    // The online softmax, a row per work-item; the value tile replaces the key tile meanwhile.
    for (int n = 0; n < FOWN; ++n) {
      const int r = lid + n * FNT;
      if (r >= ATT_FQ) break;
      int j_lo = 0, j_hi = 0;
      if (r < nq) flash_visible_keys(pos0 + t0 + r, kb, nk, lo, hi, &j_lo, &j_hi);
      float c = 1.0f;
      if (j_lo < j_hi) {  // by position: a row whose visible scores are all NaN must still pass the NaN on
        float mt = -INFINITY;
        for (int j = j_lo; j < j_hi; ++j) mt = fmax(mt, ps[r * FLK + j]);
        const float m = mrow[n], m_new = fmax(m, mt);
        c = exp(m - m_new);
        float l = lrow[n] * c;
        for (int j = 0; j < nk; ++j) {
          const float p = j >= j_lo && j < j_hi ? exp(ps[r * FLK + j] - m_new) : 0.0f;
          ps[r * FLK + j] = p;
          l += p;
        }
        mrow[n] = m_new;
        lrow[n] = l;
      } else {
        for (int j = 0; j < nk; ++j) ps[r * FLK + j] = 0.0f;
      }
      cs[r] = c;
    }
    flash_load_kv(kvs, ATT_FK, vc, kb, nk, C, D, h, 1.0f);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < FRR; ++i) {
      const float c = cs[a + i * ATT_TR];
      for (int k = 0; k < FRD; ++k) acc[i][k] *= c;
    }
    flash_pv(acc, ps, kvs, nk);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  // Each row's factor for acc goes to cs, and in a later pass, the one for the earlier passes' out to os:
  // with this pass's lse' = m + log(l) and the earlier lse0, lse = log(e^lse0 + e^lse'),
  // out = out0 e^(lse0 - lse) + acc e^(m - lse). A row this pass gave no key (l = 0, m = -inf) keeps its out.
  for (int n = 0; n < FOWN; ++n) {
    const int r = lid + n * FNT;
    if (r >= nq) break;
    const long at = (long)(t0 + r) * H + h;
    const float m = mrow[n], l = lrow[n];
    if (lo == 0) {
      cs[r] = 1.0f / l;
      lse[at] = m + log(l);
    } else {
      const float l0 = lse[at], lp = l == 0.0f ? -INFINITY : m + log(l), mx = fmax(l0, lp);
      const float ln = mx + log(exp(l0 - mx) + exp(lp - mx));
      os[r] = exp(l0 - ln);
      cs[r] = l == 0.0f ? 0.0f : exp(m - ln);
      lse[at] = ln;
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  flash_store(out, (long)t0 * D, D, h, acc, nq, cs, 1.0f, lo == 0 ? 0 : os, false);
}

// Local memory of the forward (floats): qs (FQ, E+1), kvs (FK, E+1), ps (FQ, FK+1), cs, os (FQ).
#define FWD_LOCALS \
  __local float qs[ATT_FQ * FLE], kvs[ATT_FK * FLE], ps[ATT_FQ * FLK], cs[ATT_FQ], os[ATT_FQ];

__kernel void attention_fwd_flash(
    __global float* out, __global float* lse, __global const float* q, __global const kv_t* kc,
    __global const kv_t* vc, int T, int H, int C, long pos0, int lo, int hi, float scale) {
  FWD_LOCALS
  attention_fwd_flash_body(out, lse, q, kc, vc, T, H, C, pos0, lo, hi, scale, qs, kvs, ps, cs, os);
}

// dq = scale * sum_j P_tj (dout_t . v_j - Dt) k_j with Dt = dout_t . out_t (saved in dsum).
inline void attention_bwd_dq_flash_body(__global float* dq, __global float* dsum, __global const float* dout,
                                        __global const float* out, __global const float* q,
                                        __global const float* lse, __global const kv_t* kc, __global const kv_t* vc,
                                        int T, int H, int C, long pos0, int lo, int hi, float scale, __local float* qs,
                                        __local float* dos, __local float* ks, __local float* vs, __local float* ps,
                                        __local float* Ls, __local float* Ds) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0), t0 = get_group_id(0) * ATT_FQ;
  float acc[FRR][FRD], s[FRR][FRC], u[FRR][FRC];
  const int nq = flash_query_group(acc, qs, q, T, D, h, scale);
  flash_load(dos, ATT_FQ, dout, t0, nq, D, h, 1.0f);
  for (int r = lid; r < ATT_FQ; r += FNT) {
    float Dt = 0.0f, L = 0.0f;
    if (r < nq) {
      const long row = (long)(t0 + r) * D + h * ATT_E;
      for (int e = 0; e < ATT_E; ++e) Dt = mad(dout[row + e], out[row + e], Dt);
      L = lse[(long)(t0 + r) * H + h];
      dsum[(long)(t0 + r) * H + h] = Dt;
    }
    Ds[r] = Dt;
    Ls[r] = L;
  }
  long k_lo, k_hi;
  flash_group_keys(pos0, t0, T, lo, hi, &k_lo, &k_hi);
  const int a = lid / ATT_TC, b = lid % ATT_TC;
  for (long kb = k_lo; kb <= k_hi; kb += ATT_FK) {
    const int nk = (int)min((long)ATT_FK, k_hi - kb + 1);
    flash_load_kv(ks, ATT_FK, kc, kb, nk, C, D, h, 1.0f);
    flash_load_kv(vs, ATT_FK, vc, kb, nk, C, D, h, 1.0f);
    barrier(CLK_LOCAL_MEM_FENCE);
    flash_dots(s, qs, ks, u, dos, vs, true, nk);
    for (int i = 0; i < FRR; ++i) {
      const int r = a + i * ATT_TR;
      int j_lo = 0, j_hi = 0;
      if (r < nq) flash_visible_keys(pos0 + t0 + r, kb, nk, lo, hi, &j_lo, &j_hi);
      for (int j = 0; j < FRC; ++j) {
        const int c = b + j * ATT_TC;
        if (c < nk) ps[r * FLK + c] = c >= j_lo && c < j_hi ? exp(s[i][j] - Ls[r]) * (u[i][j] - Ds[r]) : 0.0f;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    flash_pv(acc, ps, ks, nk);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  flash_store(dq, (long)t0 * D, D, h, acc, nq, 0, scale, 0, lo > 0);
}

#define DQ_LOCALS                                                                                   \
  __local float qs[ATT_FQ * FLE], dos[ATT_FQ * FLE], ks[ATT_FK * FLE], vs[ATT_FK * FLE], \
      ps[ATT_FQ * FLK], Ls[ATT_FQ], Ds[ATT_FQ];

__kernel void attention_bwd_dq_flash(
    __global float* dq, __global float* dsum, __global const float* dout, __global const float* out,
    __global const float* q, __global const float* lse, __global const kv_t* kc, __global const kv_t* vc, int T,
    int H, int C, long pos0, int lo, int hi, float scale) {
  DQ_LOCALS
  attention_bwd_dq_flash_body(dq, dsum, dout, out, q, lse, kc, vc, T, H, C, pos0, lo, hi, scale, qs, dos, ks, vs, ps, Ls,
                              Ds);
}

// dk_j = scale * sum_t P_tj (dout_t . v_j - Dt) q_t,  dv_j = sum_t P_tj dout_t for the chunk's
// keys: the group owns keys j0..j0+FQ-1 and streams the queries that see them.
inline void attention_bwd_dkv_flash_body(__global float* dk, long dk_off, int dk_ld, __global float* dv, long dv_off,
                                         int dv_ld, __global const float* dout, __global const float* q,
                                         __global const float* lse, __global const float* dsum,
                                         __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C,
                                         long pos0, int lo, int hi, float scale, __local float* ks, __local float* vs,
                                         __local float* qs, __local float* dos, __local float* ps, __local float* dss,
                                         __local float* Ls, __local float* Ds) {
  const int D = H * ATT_E, h = get_group_id(1), lid = get_local_id(0);
  const int j0 = get_group_id(0) * ATT_FQ, nkeys = min(ATT_FQ, T - j0);
  float dka[FRR][FRD], dva[FRR][FRD], s[FRR][FRC], u[FRR][FRC];
  for (int i = 0; i < FRR; ++i)
    for (int k = 0; k < FRD; ++k) dka[i][k] = dva[i][k] = 0.0f;
  flash_load_kv(ks, ATT_FQ, kc, pos0 + j0, nkeys, C, D, h, scale);
  flash_load_kv(vs, ATT_FQ, vc, pos0 + j0, nkeys, C, D, h, 1.0f);
  // Queries (chunk rows) any key of this group is seen by in this pass.
  const int q_lo = j0 + lo, q_hi = (int)min((long)T - 1, (long)j0 + ATT_FQ - 1 + hi - 1);
  const int a = lid / ATT_TC, b = lid % ATT_TC;
  for (int qb = q_lo; qb <= q_hi; qb += ATT_FK) {
    const int nq = min(ATT_FK, q_hi - qb + 1);
    flash_load(qs, ATT_FK, q, qb, nq, D, h, 1.0f);
    flash_load(dos, ATT_FK, dout, qb, nq, D, h, 1.0f);
    for (int i = lid; i < nq; i += FNT) {
      Ls[i] = lse[(long)(qb + i) * H + h];
      Ds[i] = dsum[(long)(qb + i) * H + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    flash_dots(s, ks, qs, u, vs, dos, true, nq);
    for (int i = 0; i < FRR; ++i) {
      const int r = a + i * ATT_TR, j = j0 + r;
      // Queries qb+c that see key j in this pass: j + lo <= qb+c < j + hi.
      const int c_lo = r < nkeys ? max(0, j + lo - qb) : 0, c_hi = r < nkeys ? min(nq, j + hi - qb) : 0;
      for (int jj = 0; jj < FRC; ++jj) {
        const int c = b + jj * ATT_TC;
        if (c >= nq) continue;
        const bool seen = c >= c_lo && c < c_hi;
        const float pt = seen ? exp(s[i][jj] - Ls[c]) : 0.0f;
        ps[r * FLK + c] = pt;
        dss[r * FLK + c] = seen ? pt * (u[i][jj] - Ds[c]) : 0.0f;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    flash_pv(dva, ps, dos, nq);
    flash_pv(dka, dss, qs, nq);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  flash_store(dk, dk_off + (long)j0 * dk_ld, dk_ld, h, dka, nkeys, 0, scale, 0, lo > 0);
  flash_store(dv, dv_off + (long)j0 * dv_ld, dv_ld, h, dva, nkeys, 0, 1.0f, 0, lo > 0);
}

#define DKV_LOCALS                                                                                      \
  __local float ks[ATT_FQ * FLE], vs[ATT_FQ * FLE], qs[ATT_FK * FLE], dos[ATT_FK * FLE], ps[ATT_FQ * FLK], \
      dss[ATT_FQ * FLK], Ls[ATT_FK], Ds[ATT_FK];

__kernel void attention_bwd_dkv_flash(
    __global float* dk, int dk_off, int dk_ld, __global float* dv, int dv_off, int dv_ld, __global const float* dout,
    __global const float* q, __global const float* lse, __global const float* dsum, __global const kv_t* kc,
    __global const kv_t* vc, int T, int H, int C, long pos0, int lo, int hi, float scale) {
  DKV_LOCALS
  attention_bwd_dkv_flash_body(dk, dk_off, dk_ld, dv, dv_off, dv_ld, dout, q, lse, dsum, kc, vc, T, H, C, pos0, lo, hi,
                               scale, ks, vs, qs, dos, ps, dss, Ls, Ds);
}

// Batched variants (see attention.cl): segment s = get_group_id(2), {pos_s, n_s} in seg; a group
// past its segment's n_s returns at once (uniform across the group).
#define FLASH_SEGMENT_SETUP                                      \
  const int s = get_group_id(2), D = H * ATT_E;                  \
  const long pos0 = seg[2 * s], row0 = (long)s * R;              \
  const int T = (int)seg[2 * s + 1];                             \
  const long ring = (long)s * C * D;                             \
  if ((int)get_group_id(0) * ATT_FQ >= T) return;

__kernel void attention_fwd_flash_batched(
    __global float* out, __global float* lse, __global const float* q, __global const kv_t* kc,
    __global const kv_t* vc, __global const long* seg, int R, int H, int C, int lo, int hi, float scale) {
  FWD_LOCALS
  FLASH_SEGMENT_SETUP
  attention_fwd_flash_body(out + row0 * D, lse + row0 * H, q + row0 * D, kc + ring, vc + ring, T, H, C, pos0, lo, hi,
                           scale, qs, kvs, ps, cs, os);
}

__kernel void attention_bwd_dq_flash_batched(
    __global float* dq, __global float* dsum, __global const float* dout, __global const float* out,
    __global const float* q, __global const float* lse, __global const kv_t* kc, __global const kv_t* vc,
    __global const long* seg, int R, int H, int C, int lo, int hi, float scale) {
  DQ_LOCALS
  FLASH_SEGMENT_SETUP
  attention_bwd_dq_flash_body(dq + row0 * D, dsum + row0 * H, dout + row0 * D, out + row0 * D, q + row0 * D,
                              lse + row0 * H, kc + ring, vc + ring, T, H, C, pos0, lo, hi, scale, qs, dos, ks, vs, ps, Ls,
                              Ds);
}

__kernel void attention_bwd_dkv_flash_batched(
    __global float* dk, int dk_off, int dk_ld, __global float* dv, int dv_off, int dv_ld, __global const float* dout,
    __global const float* q, __global const float* lse, __global const float* dsum, __global const kv_t* kc,
    __global const kv_t* vc, __global const long* seg, int R, int H, int C, int lo, int hi, float scale) {
  DKV_LOCALS
  FLASH_SEGMENT_SETUP
  attention_bwd_dkv_flash_body(dk, dk_off + row0 * dk_ld, dk_ld, dv, dv_off + row0 * dv_ld, dv_ld, dout + row0 * D,
                               q + row0 * D, lse + row0 * H, dsum + row0 * H, kc + ring, vc + ring, T, H, C, pos0, lo, hi,
                               scale, ks, vs, qs, dos, ps, dss, Ls, Ds);
}
