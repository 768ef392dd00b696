// Attention for a single query (decode, T = 1) over the same ring of keys and
// values as attention.cl (see there), split across work-items or work-groups.
// ttt-include: attention_head

#ifndef ATT_DH
#define ATT_DH 1  // heads, for the decode kernel (set by the host)
#endif

// Decode: one query (T = 1) at position pos0 against its window, split into
// nparts contiguous runs of `per` keys (flash-decoding), since a lone query
// leaves all but one work-item of attention_fwd idle. Work-item i takes run i
// for all ATT_DH heads at once, so it streams whole key and value rows,
// contiguously, and keeps one online softmax per head; it writes one partial
// {m, l, acc[E]} (unnormalised) per (head, run). attention_decode_merge folds
// the runs of a head in order: deterministic, no atomics, no local memory.
// A key row's ATT_DH scores are computed first (independent sums, two chains
// each), then its value row is added in; exponentials are of non-positive
// numbers (exp_nonpos, common.cl: no library call).
// The vectors of this kernel: 16 floats where the head dimension allows (64, 80, 128: a CPU runs
// a quarter of the instructions of 4-wide ones, which decides the speed once keys and values are
// f16 and widened as read), else the head vectors.
#if ATT_E % 16 == 0
#define DW 16
typedef float16 dvec;
#define dload(p) vload16(0, (p))
#define dstore(x, p) vstore16((x), 0, (p))
#define KVLOADD(p) KVLOAD16(p)
inline float dsum(float16 v) {
  const float8 a = v.lo + v.hi;
  const float4 b = a.lo + a.hi;
  return (b.s0 + b.s1) + (b.s2 + b.s3);
}
#else
#define DW VW
typedef floatv dvec;
#define dload(p) vloadv(0, (p))
#define dstore(x, p) vstorev((x), (p))
#define KVLOADD(p) KVLOADV(p)
#define dsum(x) hsum(x)
#endif
#define DEV (ATT_E / DW)

__kernel void attention_decode_split(__global float* part, __global const float* q, __global const kv_t* kc,
                                     __global const kv_t* vc, int C, long pos0, int W, int per, int nparts,
                                     float scale) {
  const int i = get_global_id(0);
  if (i >= nparts) return;
  const int D = ATT_DH * ATT_E;
  const long k_lo = max(0L, pos0 - W + 1);
  const long b0 = k_lo + (long)i * per, b1 = min(pos0 + 1, b0 + per);
  dvec acc[ATT_DH * DEV];
  float m[ATT_DH], l[ATT_DH], sc[ATT_DH];
  for (int h = 0; h < ATT_DH; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
    for (int e = 0; e < DEV; ++e) acc[h * DEV + e] = 0.0f;
  }
  long r = b0 % C;  // ring row of key j, advanced with j
  for (long j = b0; j < b1; ++j) {
    __global const kv_t* kr = kc + r * D;
    __global const kv_t* vr = vc + r * D;
    for (int h = 0; h < ATT_DH; ++h) {
      dvec s0 = 0.0f, s1 = 0.0f;
      int e = 0;
      for (; e + 2 <= DEV; e += 2) {
        s0 = mad(dload(q + h * ATT_E + e * DW), KVLOADD(kr + h * ATT_E + e * DW), s0);
        s1 = mad(dload(q + h * ATT_E + (e + 1) * DW), KVLOADD(kr + h * ATT_E + (e + 1) * DW), s1);
      }
      if (e < DEV) s0 = mad(dload(q + h * ATT_E + e * DW), KVLOADD(kr + h * ATT_E + e * DW), s0);
      sc[h] = dsum(s0 + s1) * scale;
    }
    for (int h = 0; h < ATT_DH; ++h) {
      if (sc[h] > m[h]) {  // rescale only when the maximum grows
        const float c = exp_nonpos(m[h] - sc[h]);  // first key (m = -inf): 2^-126 times l = 0 and acc = 0
        l[h] *= c;
        for (int e = 0; e < DEV; ++e) acc[h * DEV + e] *= c;
        m[h] = sc[h];
      }
      const float p = exp_nonpos(sc[h] - m[h]);
      l[h] += p;
      for (int e = 0; e < DEV; ++e) acc[h * DEV + e] = mad(p, KVLOADD(vr + h * ATT_E + e * DW), acc[h * DEV + e]);
    }
    if (++r == C) r = 0;
  }
  for (int h = 0; h < ATT_DH; ++h) {
    __global float* out = part + ((long)h * nparts + i) * (ATT_E + 2);
    out[0] = m[h];
    out[1] = l[h];
    for (int e = 0; e < DEV; ++e) dstore(acc[h * DEV + e], out + 2 + e * DW);
  }
}

// The same partials shaped for a GPU. attention_decode_split gives each
// work-item all heads' softmax state (H*E floats, private): a CPU keeps that in
// cache, a GPU spills it and runs a few hundred items (18 ms a token for the
// 125m preset on an H100). Here work-group (i, h) of ATT_DT items takes run i
// of head h in tiles of ATT_DT keys: item t scores key t of the tile, the
// scores meet in local memory, and item t accumulates output dimensions
// t, t + ATT_DT, ... (value rows read coalesced). Same partial layout.
#ifndef ATT_DT
#define ATT_DT 64
#endif
#define ATT_EPI ((ATT_E + ATT_DT - 1) / ATT_DT)

__kernel __attribute__((reqd_work_group_size(ATT_DT, 1, 1))) void attention_decode_split_wg(
    __global float* part, __global const float* q, __global const kv_t* kc, __global const kv_t* vc, int H, int C,
    long pos0, int W, int per, int nparts, float scale) {
  __local float qs[ATT_E];
  __local float ps[ATT_DT];
  const int t = get_local_id(0), i = get_group_id(0), h = get_group_id(1);
  const int D = H * ATT_E;
  const long k_lo = max(0L, pos0 - W + 1);
  const long b0 = k_lo + (long)i * per, b1 = min(pos0 + 1, b0 + per);
  for (int e = t; e < ATT_E; e += ATT_DT) qs[e] = q[h * ATT_E + e];
  barrier(CLK_LOCAL_MEM_FENCE);
  float m = -INFINITY, l = 0.0f, acc[ATT_EPI];
  for (int u = 0; u < ATT_EPI; ++u) acc[u] = 0.0f;
  for (long j0 = b0; j0 < b1; j0 += ATT_DT) {
    const int n = (int)min((long)ATT_DT, b1 - j0);
    float sc = -INFINITY;
    if (t < n) {
      __global const kv_t* kr = kc + ((j0 + t) % C) * D + h * ATT_E;
      float s = 0.0f;
      for (int e = 0; e < ATT_E; ++e) s = mad(qs[e], KVLOAD(e, kr), s);
      sc = s * scale;
    }
    ps[t] = sc;
    barrier(CLK_LOCAL_MEM_FENCE);
    float mt = m;
    for (int j = 0; j < n; ++j) mt = fmax(mt, ps[j]);
    const float c = exp(m - mt);  // 0 on the first tile (m = -inf)
    l *= c;
    for (int u = 0; u < ATT_EPI; ++u) acc[u] *= c;
    for (int j = 0; j < n; ++j) {
      const float p = exp(ps[j] - mt);
      l += p;
      __global const kv_t* vr = vc + ((j0 + j) % C) * D + h * ATT_E;
      for (int u = 0; u < ATT_EPI; ++u) {
        const int e = t + u * ATT_DT;
        if (e < ATT_E) acc[u] = mad(p, KVLOAD(e, vr), acc[u]);
      }
    }
    m = mt;
    barrier(CLK_LOCAL_MEM_FENCE);  // ps is rewritten by the next tile
  }
  __global float* out = part + ((long)h * nparts + i) * (ATT_E + 2);
  if (t == 0) {
    out[0] = m;
    out[1] = l;
  }
  for (int u = 0; u < ATT_EPI; ++u) {
    const int e = t + u * ATT_DT;
    if (e < ATT_E) out[2 + e] = acc[u];
  }
}

// out (1, H*E) and lse (1, H) of the decode query from the nparts partials of
// each head: work-item h folds head h's runs in order, one weight per run.
__kernel void attention_decode_merge(__global float* out, __global float* lse, __global const float* part, int H,
                                     int nparts) {
  const int h = get_global_id(0);
  if (h >= H) return;
  __global const float* p = part + (long)h * nparts * (ATT_E + 2);
  float M = -INFINITY;
  for (int s = 0; s < nparts; ++s) M = fmax(M, p[s * (ATT_E + 2)]);
  float L = 0.0f;
  floatv a[EV];
  for (int e = 0; e < EV; ++e) a[e] = 0.0f;
  for (int s = 0; s < nparts; ++s) {
    __global const float* ps = p + s * (ATT_E + 2);
    const float c = ps[0] > -INFINITY ? exp(ps[0] - M) : 0.0f;
    L = mad(c, ps[1], L);
    for (int e = 0; e < EV; ++e) a[e] = mad(c, vloadv(0, ps + 2 + e * VW), a[e]);
  }
  for (int e = 0; e < EV; ++e) vstorev(a[e] / L, out + h * ATT_E + e * VW);
  lse[h] = M + log(L);
}
