// Matrix-vector products of single-token decoding: the model's weights are
// streamed once per token, so these are bound by memory bandwidth and are
// written to read each weight exactly once, contiguously.
//   matvec_cols: y (N) = x (K) @ A (K, N), A row-major with leading dimension lda
//                (every projection x @ W), shaped for a CPU. Work-item s takes a
//                slab of whole rows k0 .. k1-1 of A (at most nb = 4096 columns
//                of them), so it reads one contiguous run of memory (MV_RC = 8 rows
//                side by side, 16-wide loads: eight rows per pass over the partial
//                row, not four, made the bf16 products about 10% faster on a
//                2-core EPYC), and adds them into its own
//                partial row part[s] (N floats, resident in the core's cache). matvec_cols_sum adds
//                the partial rows of each column in order (deterministic); with
//                one slab the slab writes y itself. PoCL runs each work-group
//                as a loop over its items on one thread: the host gives
//                several one-item slabs per core, so that both stream at once.
//   matvec_cols_split: the same product shaped for a GPU. A slab per item
//                gives a device a few dozen threads; here a work-group of MVS_C x
//                MVS_K items owns MVS_C consecutive columns; item (c, s) sums
//                k = s, s + MVS_K, ... (loads coalesced across c), and the MVS_K
//                partial sums are added in local memory in a fixed order.
//   matvec_rows: y (M) = A (M, K) @ x (K) (logits against a tied embedding
//                wte (V, D)). Work-item i owns rb consecutive rows (one long run
//                of memory) and reads them MV_RR at a time side by side, 16
//                elements a load, sharing each load of x. On a CPU rb is large
//                (a one-item work-group streams about M / (64 cores) rows); on a
//                GPU rb = MV_RR, one work-item per four rows.
// A (the weight) is read in its storage type (weight_t, common.cl: f32, f16 or
// bf16) and every sum is accumulated in float.
// The CPU twin is ref::matmul with M = 1 (cols) or tb = true (rows), on A widened
// by ref::widen (lib/reference/convert.cpp).

#define MV_RC 8  // rows of A a slab of matvec_cols reads side by side
#define MV_RR 4  // rows of A per work-item of matvec_rows

// A fused multiply-add where the device has one (a CPU with FMA: one instruction, not a multiply and
// an add), else mad.
#ifdef FP_FAST_FMAF
#define MV_FMA(a, b, c) fma((a), (b), (c))
#else
#define MV_FMA(a, b, c) mad((a), (b), (c))
#endif

inline float hsum16(float16 v) {
  const float8 a = v.lo + v.hi;
  const float4 b = a.lo + a.hi;
  return (b.s0 + b.s1) + (b.s2 + b.s3);
}

// p[0..N) = (init ? 0 : p) + sum over the rows k0..k1-1 of x[k] A[k, :].
inline void slab_rows(__global float* p, __global const float* x, __global const weight_t* A, int k0, int k1, int N,
                      int lda) {
  for (int n = 0; n < N; ++n) p[n] = 0.0f;
  int k = k0;
  for (; k + MV_RC <= k1; k += MV_RC) {
    __global const weight_t* a = A + (long)k * lda;
    float xs[MV_RC];
#pragma unroll
    for (int r = 0; r < MV_RC; ++r) xs[r] = x[k + r];
    int n = 0;
    for (; n + 16 <= N; n += 16) {
      float16 acc = vload16(0, p + n);
#pragma unroll
      for (int r = 0; r < MV_RC; ++r) acc = MV_FMA((float16)xs[r], WLOADN(16, a + (long)r * lda + n), acc);
      vstore16(acc, 0, p + n);
    }
    for (; n < N; ++n) {
      float acc = p[n];
      for (int r = 0; r < MV_RC; ++r) acc = mad(xs[r], WLOAD(n, a + (long)r * lda), acc);
      p[n] = acc;
    }
  }
  for (; k < k1; ++k) {
    __global const weight_t* a0 = A + (long)k * lda;
    const float x0 = x[k];
    int n = 0;
    for (; n + 16 <= N; n += 16) vstore16(mad((float16)x0, WLOADN(16, a0 + n), vload16(0, p + n)), 0, p + n);
    for (; n < N; ++n) p[n] = mad(x0, WLOAD(n, a0), p[n]);
  }
}

// Slab s = get_global_id(0) of ks rows, columns c0 = get_global_id(1) * nb .. c0 + nb - 1 (a wide
// product, an untied head, is cut into column blocks so that a partial row stays in L1); part holds
// one row of N floats per slab (y itself when there is one slab).
__kernel void matvec_cols(__global float* part, __global const float* x, int x_off, __global const weight_t* A,
                          int K, int N, int lda, int ks, int nb) {
  const int s = get_global_id(0), k0 = s * ks, c0 = get_global_id(1) * nb;
  if (k0 >= K || c0 >= N) return;
  slab_rows(part + (long)s * N + c0, x + x_off, A + c0, k0, min(K, k0 + ks), min(nb, N - c0), lda);
}

// y[n] = part[0][n] + part[1][n] + ... + part[S-1][n], 16 columns per work-item.
__kernel void matvec_cols_sum(__global float* y, __global const float* part, int N, int S) {
  const int n0 = get_global_id(0) * 16;
  if (n0 >= N) return;
  if (n0 + 16 <= N) {
    float16 acc = vload16(0, part + n0);
    for (int s = 1; s < S; ++s) acc += vload16(0, part + (long)s * N + n0);
    vstore16(acc, 0, y + n0);
  } else {
    for (int n = n0; n < N; ++n) {
      float acc = part[n];
      for (int s = 1; s < S; ++s) acc += part[(long)s * N + n];
      y[n] = acc;
    }
  }
}

#ifndef MVS_C
#define MVS_C 32  // columns per work-group of matvec_cols_split
#endif
#ifndef MVS_K
#define MVS_K 8  // k-slices per column (a power of two)
#endif

__kernel __attribute__((reqd_work_group_size(MVS_C, MVS_K, 1))) void matvec_cols_split(
    __global float* y, __global const float* x, int x_off, __global const weight_t* A, int K, int N, int lda) {
  __local float part[MVS_K][MVS_C];
  x += x_off;
  const int c = get_local_id(0), s = get_local_id(1);
  const int n = get_group_id(0) * MVS_C + c;
  float acc = 0.0f;
  if (n < N)
    for (int k = s; k < K; k += MVS_K) acc = mad(x[k], WLOAD((long)k * lda + n, A), acc);
  part[s][c] = acc;
  for (int step = MVS_K / 2; step > 0; step /= 2) {
    barrier(CLK_LOCAL_MEM_FENCE);
    if (s < step) part[s][c] += part[s + step][c];
  }
  if (s == 0 && n < N) y[n] = part[0][c];
}

// Rows m0 .. m1-1 of y = A x, MV_RR (4) side by side: four independent sums share each load of x.
__kernel void matvec_rows(__global float* y, __global const weight_t* A, __global const float* x, int x_off, int M,
                          int K, int lda, int rb) {
  x += x_off;
  const int i = get_global_id(0), m1 = min(M, (i + 1) * rb);
  int m = i * rb;
  for (; m + MV_RR <= m1; m += MV_RR) {
    __global const weight_t* a0 = A + (long)m * lda;
    __global const weight_t* a1 = a0 + lda;
    __global const weight_t* a2 = a1 + lda;
    __global const weight_t* a3 = a2 + lda;
    float16 c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
      const float16 xv = vload16(0, x + k);
      c0 = MV_FMA(WLOADN(16, a0 + k), xv, c0);
      c1 = MV_FMA(WLOADN(16, a1 + k), xv, c1);
      c2 = MV_FMA(WLOADN(16, a2 + k), xv, c2);
      c3 = MV_FMA(WLOADN(16, a3 + k), xv, c3);
    }
    float s0 = hsum16(c0), s1 = hsum16(c1), s2 = hsum16(c2), s3 = hsum16(c3);
    for (; k < K; ++k) {
      const float xk = x[k];
      s0 = mad(WLOAD(k, a0), xk, s0);
      s1 = mad(WLOAD(k, a1), xk, s1);
      s2 = mad(WLOAD(k, a2), xk, s2);
      s3 = mad(WLOAD(k, a3), xk, s3);
    }
    y[m] = s0;
    y[m + 1] = s1;
    y[m + 2] = s2;
    y[m + 3] = s3;
  }
  for (; m < m1; ++m) {  // the last rows, fewer than MV_RR
    __global const weight_t* a = A + (long)m * lda;
    float16 c = 0.0f;
    int k = 0;
    for (; k + 16 <= K; k += 16) c = mad(WLOADN(16, a + k), vload16(0, x + k), c);
    float s = hsum16(c);
    for (; k < K; ++k) s = mad(WLOAD(k, a), x[k], s);
    y[m] = s;
  }
}
