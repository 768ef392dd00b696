// Matrix-vector products of single-token decoding: the model's weights are
// streamed once per token, so these are bound by memory bandwidth and are
// written to read each weight exactly once, contiguously.
//   matvec_cols: y (N) = x (K) @ A (K, N), A row-major with leading dimension lda
//                (every projection x @ W). Work-item n owns MV_NC consecutive columns.
//   matvec_cols_split: the same product shaped for a GPU. matvec_cols gives a
//                device only N / MV_NC work-items, each with a K-long serial
//                loop: fine for a CPU's few cores, but a few hundred threads on a
//                GPU with tens of thousands of lanes (59 ms a token for the 125m
//                preset on an H100). Here a work-group of MVS_C x MVS_K items owns
//                MVS_C consecutive columns; item (c, s) sums k = s, s + MVS_K, ...
//                (loads coalesced across c), and the MVS_K partial sums are added
//                in local memory in a fixed order.
//   matvec_rows: y (M) = A (M, K) @ x (K) (logits against a tied embedding
//                wte (V, D)). Work-item m owns one row and reads it with vectors.
// A (the weight) is read in its storage type (weight_t, common.cl: f32, f16 or
// bf16) and every sum is accumulated in float.
// The CPU twin is ref::matmul with M = 1 (cols) or tb = true (rows), on A widened
// by ref::widen (lib/reference/convert.cpp).

#ifndef MV_NC
#define MV_NC 16  // columns per work-item of matvec_cols (1, 2, 4, 8 or 16; the host sets it)
#endif

#if MV_NC == 16
typedef float16 floatc;
#define wloadc(p) WLOADN(16, p)
#define vstorec vstore16
#elif MV_NC == 8
typedef float8 floatc;
#define wloadc(p) WLOADN(8, p)
#define vstorec vstore8
#elif MV_NC == 4
typedef float4 floatc;
#define wloadc(p) WLOADN(4, p)
#define vstorec vstore4
#elif MV_NC == 2
typedef float2 floatc;
#define wloadc(p) WLOADN(2, p)
#define vstorec vstore2
#else
typedef float floatc;
#define wloadc(p) WLOAD(0, p)
#define vstorec(x, i, p) ((p)[i] = (x))
#endif

__kernel void matvec_cols(__global float* y, __global const float* x, int x_off, __global const weight_t* A, int K,
                          int N, int lda) {
  x += x_off;
  const int n0 = get_global_id(0) * MV_NC;
  if (n0 >= N) return;
  if (n0 + MV_NC <= N) {
    floatc acc = 0.0f;
    for (int k = 0; k < K; ++k) acc = mad((floatc)x[k], wloadc(A + (long)k * lda + n0), acc);
    vstorec(acc, 0, y + n0);
  } else {  // the last, partial group of columns
    for (int n = n0; n < N; ++n) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) acc = mad(x[k], WLOAD((long)k * lda + n, A), acc);
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

__kernel void matvec_rows(__global float* y, __global const weight_t* A, __global const float* x, int x_off, int M,
                          int K, int lda) {
  x += x_off;
  const int m = get_global_id(0);
  if (m >= M) return;
  __global const weight_t* a = A + (long)m * lda;
  float4 acc = 0.0f;
  int k = 0;
  for (; k + 4 <= K; k += 4) acc = mad(WLOADN(4, a + k), vload4(0, x + k), acc);
  float s = (acc.s0 + acc.s1) + (acc.s2 + acc.s3);
  for (; k < K; ++k) s = mad(WLOAD(k, a), x[k], s);
  y[m] = s;
}
