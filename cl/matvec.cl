// Matrix-vector products of single-token decoding: the model's weights are
// streamed once per token, so these are bound by memory bandwidth and are
// written to read each weight exactly once, contiguously.
//   matvec_cols: y (N) = x (K) @ A (K, N), A row-major with leading dimension lda
//                (every projection x @ W). Work-item n owns MV_NC consecutive columns.
//   matvec_rows: y (M) = A (M, K) @ x (K) (logits against a tied embedding
//                wte (V, D)). Work-item m owns one row and reads it with vectors.
// The CPU twin is ref::matmul with M = 1 (cols) or tb = true (rows).

#ifndef MV_NC
#define MV_NC 16  // columns per work-item of matvec_cols (1, 2, 4, 8 or 16; the host sets it)
#endif

#if MV_NC == 16
typedef float16 floatc;
#define vloadc vload16
#define vstorec vstore16
#elif MV_NC == 8
typedef float8 floatc;
#define vloadc vload8
#define vstorec vstore8
#elif MV_NC == 4
typedef float4 floatc;
#define vloadc vload4
#define vstorec vstore4
#elif MV_NC == 2
typedef float2 floatc;
#define vloadc vload2
#define vstorec vstore2
#else
typedef float floatc;
#define vloadc(i, p) ((p)[i])
#define vstorec(x, i, p) ((p)[i] = (x))
#endif

__kernel void matvec_cols(__global float* y, __global const float* x, int x_off, __global const float* A, int K,
                          int N, int lda) {
  x += x_off;
  const int n0 = get_global_id(0) * MV_NC;
  if (n0 >= N) return;
  if (n0 + MV_NC <= N) {
    floatc acc = 0.0f;
    for (int k = 0; k < K; ++k) acc = mad((floatc)x[k], vloadc(0, A + (long)k * lda + n0), acc);
    vstorec(acc, 0, y + n0);
  } else {  // the last, partial group of columns
    for (int n = n0; n < N; ++n) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) acc = mad(x[k], A[(long)k * lda + n], acc);
      y[n] = acc;
    }
  }
}

__kernel void matvec_rows(__global float* y, __global const float* A, __global const float* x, int x_off, int M,
                          int K, int lda) {
  x += x_off;
  const int m = get_global_id(0);
  if (m >= M) return;
  __global const float* a = A + (long)m * lda;
  float4 acc = 0.0f;
  int k = 0;
  for (; k + 4 <= K; k += 4) acc = mad(vload4(0, a + k), vload4(0, x + k), acc);
  float s = (acc.s0 + acc.s1) + (acc.s2 + acc.s3);
  for (; k < K; ++k) s = mad(a[k], x[k], s);
  y[m] = s;
}
