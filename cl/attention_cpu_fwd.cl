// The CPU forward of attention.cl (with -DATT_CPU=1), pulled in there by a
// "ttt-include" line: one work-item per block of 16 * ATT_CQ queries of a head,
// scores and outputs as register blocks of float16 (see attention_fwd_cpu).

#ifndef ATT_CQ
#define ATT_CQ 4  // vectors of 16 queries a work-item owns
#endif
#ifndef ATT_CK
#define ATT_CK 32  // keys per tile (a multiple of 4)
#endif
#ifndef ATT_FMA
#define ATT_FMA 0
#endif
#define CQB (16 * ATT_CQ)  // queries a work-item owns
// One instruction, not a multiply and an add, where the device has fused
// multiply-adds in hardware (ATT_FMA: the host's reading of CL_DEVICE_SINGLE_FP_CONFIG;
// PoCL defines no FP_FAST_FMAF, and its mad is a multiply and an add).
#if defined(FP_FAST_FMAF) || ATT_FMA
#define CPU_FMA(a, b, c) fma((a), (b), (c))
#else
#define CPU_FMA(a, b, c) mad((a), (b), (c))
#endif
// Inlined whatever the call count, so that the register blocks' loops unroll with their sizes known.
#define CPU_INLINE inline __attribute__((always_inline))

// Rows kb..kb+nk-1 of head h of a ring (C rows) into t (CK, E), widened; rows
// nk.. are zeroed (a zero value times a masked weight adds nothing).
CPU_INLINE void cpu_tile(float* t, __global const kv_t* src, long kb, int nk, int C, int D, int h) {
  for (int j = 0; j < ATT_CK; ++j) {
    float* r = t + j * ATT_E;
    if (j < nk) {
      __global const kv_t* g = src + ((kb + j) % C) * D + h * ATT_E;
      int e = 0;
      for (; e + 16 <= ATT_E; e += 16) vstore16(KVLOAD16(g + e), 0, r + e);
      for (; e < ATT_E; ++e) r[e] = KVLOAD(e, g);
    } else {
      for (int e = 0; e < ATT_E; ++e) r[e] = 0.0f;
    }
  }
}

// S^T (CK, CQB) = K (CK, E) . Q^T (E, CQB): four keys at a time, 4 x ATT_CQ
// accumulators; per head element, ATT_CQ query vectors and four broadcasts.
CPU_INLINE void cpu_scores(float* s, const float* kt, const float* qt) {
  for (int j0 = 0; j0 < ATT_CK; j0 += 4) {
    float16 a[4][ATT_CQ];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) a[i][v] = 0.0f;
    for (int e = 0; e < ATT_E; ++e) {
      float16 qe[ATT_CQ];
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) qe[v] = vload16(0, qt + e * CQB + 16 * v);
      #pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float16 k = (float16)(kt[(j0 + i) * ATT_E + e]);
        #pragma unroll
        for (int v = 0; v < ATT_CQ; ++v) a[i][v] = CPU_FMA(k, qe[v], a[i][v]);
      }
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i)
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) vstore16(a[i][v], 0, s + (j0 + i) * CQB + 16 * v);
  }
}

// O^T rows e0..e0+n-1 (n <= 4) = c * O^T + V^T . P: n value elements
// (broadcast) times ATT_CQ probability vectors per key.
CPU_INLINE void cpu_pv(float* ot, const float* p, const float* vt, const float16* c, int e0, int n) {
  // Loops over i run to 4 and test i < n: a constant trip count unrolls even in the copy of this
  // function that is not inlined (where n is not known: "loop not unrolled" warnings otherwise), and
  // inlined with n = 4 or 1 the tests fold away.
  float16 a[4][ATT_CQ];
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v) a[i][v] = i < n ? vload16(0, ot + (e0 + i) * CQB + 16 * v) * c[v] : 0.0f;
  for (int j = 0; j < ATT_CK; ++j) {
    float16 pj[ATT_CQ];
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v) pj[v] = vload16(0, p + j * CQB + 16 * v);
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float16 x = (float16)(i < n ? vt[j * ATT_E + e0 + i] : 0.0f);
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) a[i][v] = CPU_FMA(x, pj[v], a[i][v]);
    }
  }
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v)
      if (i < n) vstore16(a[i][v], 0, ot + (e0 + i) * CQB + 16 * v);
}

// Queries t0..t0+CQB-1 (those below T) of head h.
inline void attention_fwd_cpu(__global float* out, __global float* lse, __global const float* q,
                              __global const kv_t* kc, __global const kv_t* vc, int T, int H, int C, long pos0,
                              int W, float scale, int t0, int h) {
  if (t0 >= T) return;
  const int D = H * ATT_E, nq = min(CQB, T - t0);
  const long p0 = pos0 + t0;  // the first query's position; query t sits at p0 + t
  float qt[ATT_E * CQB], ot[ATT_E * CQB], s[ATT_CK * CQB], kv[ATT_CK * ATT_E];
  for (int t = 0; t < CQB; ++t)
    for (int e = 0; e < ATT_E; ++e) {
      qt[e * CQB + t] = t < nq ? q[(long)(t0 + t) * D + h * ATT_E + e] * scale : 0.0f;
      ot[e * CQB + t] = 0.0f;
    }
  float16 m[ATT_CQ], l[ATT_CQ];
  int16 tq[ATT_CQ];  // query index of each lane
  #pragma unroll
  for (int v = 0; v < ATT_CQ; ++v) {
    m[v] = -INFINITY;
    l[v] = 0.0f;
    tq[v] = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + 16 * v;
  }
  const long k_lo = max(0L, p0 - W + 1), k_hi = p0 + nq - 1;
  for (long kb = k_lo; kb <= k_hi; kb += ATT_CK) {
    const int nk = (int)min((long)ATT_CK, k_hi - kb + 1);
    // Every query sees every key of the tile (none masked) when the tile is
    // full, ends at or before the first query and starts inside the last one's window.
    const bool edge = nk < ATT_CK || kb + ATT_CK - 1 > p0 || kb < p0 + nq - W;
    const int rel = (int)(kb - p0);  // key j of the tile is seen by the queries t with 0 <= t - rel - j < W
    cpu_tile(kv, kc, kb, nk, C, D, h);
    cpu_scores(s, kv, qt);
    float16 mt[ATT_CQ];
    int16 seen[ATT_CQ];  // lanes that see a key of the tile
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v) {
      mt[v] = -INFINITY;
      seen[v] = edge ? 0 : -1;
    }
    for (int j = 0; j < ATT_CK; ++j)
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) {
        float16 x = vload16(0, s + j * CQB + 16 * v);
        if (edge) {
          const int16 d = tq[v] - (rel + j), vis = (d >= 0) & (d < W) & (int16)(j < nk ? -1 : 0);
          seen[v] |= vis;
          x = select((float16)(-INFINITY), x, vis);
        }
        mt[v] = fmax(mt[v], x);  // skips NaN: a NaN score passes on through its weight below
      }
    float16 mn[ATT_CQ], c[ATT_CQ], ls[ATT_CQ];
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v) {
      mn[v] = fmax(m[v], mt[v]);
      // A lane that sees no key keeps its state (m - m_new would be -inf - -inf there).
      c[v] = select((float16)(1.0f), exp_nonpos16(m[v] - mn[v]), seen[v]);
      m[v] = mn[v];
      ls[v] = 0.0f;
    }
    for (int j = 0; j < ATT_CK; ++j)
      #pragma unroll
      for (int v = 0; v < ATT_CQ; ++v) {
        float16 x = exp_nonpos16(vload16(0, s + j * CQB + 16 * v) - mn[v]);
        if (edge) {  // by position: the weight of a key a query does not see is exactly 0
          const int16 d = tq[v] - (rel + j), vis = (d >= 0) & (d < W) & (int16)(j < nk ? -1 : 0);
          x = select((float16)(0.0f), x, vis);
        }
        ls[v] += x;
        vstore16(x, 0, s + j * CQB + 16 * v);
      }
    #pragma unroll
    for (int v = 0; v < ATT_CQ; ++v) l[v] = mad(l[v], c[v], ls[v]);
    cpu_tile(kv, vc, kb, nk, C, D, h);
    int e0 = 0;
    for (; e0 + 4 <= ATT_E; e0 += 4) cpu_pv(ot, s, kv, c, e0, 4);
    for (; e0 < ATT_E; ++e0) cpu_pv(ot, s, kv, c, e0, 1);
  }
  float mf[CQB], lf[CQB];
  #pragma unroll
  for (int v = 0; v < ATT_CQ; ++v) {
    vstore16(m[v], 0, mf + 16 * v);
    vstore16(l[v], 0, lf + 16 * v);
  }
  for (int t = 0; t < nq; ++t) {
    const float inv = 1.0f / lf[t];
    for (int e = 0; e < ATT_E; ++e) out[(long)(t0 + t) * D + h * ATT_E + e] = ot[e * CQB + t] * inv;
    lse[(long)(t0 + t) * H + h] = mf[t] + log(lf[t]);
  }
}
