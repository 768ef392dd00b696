// Helpers shared by every kernel family; the host prepends this file to each
// family's source. Reductions are work-group tree reductions in local memory
// with a fixed order, so results are identical from run to run.

#ifndef INFINITY
#define INFINITY (1.0f / 0.0f)
#endif

// TTT_CPU is 1 on CPU devices (the host sets it). There PoCL runs a
// work-group as a loop over its work-items and LLVM vectorises the innermost
// loops of each, so a work-item's share of a row is best a contiguous run;
// on a GPU, neighbouring work-items read neighbouring elements (coalesced).
#ifndef TTT_CPU
#define TTT_CPU 0
#endif
#if TTT_CPU
#define FOR_ITEMS(i, n, lid, nl)                                                                  \
  for (int i##_per = ((n) + (nl) - 1) / (nl), i##_end = min((n), ((lid) + 1) * i##_per), i = (lid) * i##_per; \
       i < i##_end; ++i)
#else
#define FOR_ITEMS(i, n, lid, nl) for (int i = (lid); i < (n); i += (nl))
#endif

// e^x for x <= 0 without a library call, so that a loop of them vectorises:
// 2^(x log2 e) as 2^n times a degree-6 polynomial of the fraction (relative
// error 1.1e-7, fitted on [0, 1)). Below -87 the result is 2^-126, not 0:
// callers that need an exact 0 (a masked score) select it. Meant for x <= 88
// (beyond, 2^127-ish instead of inf). A NaN stays NaN: the clamp below -126 is
// a comparison, not fmax (which would drop it), and the exponent's integer
// comes from a value clamped with fmin/fmax (never converting a NaN to int).
inline float exp_nonpos(float x) {
  const float y0 = x * 1.44269504089f, y = y0 < -126.0f ? -126.0f : y0, n = floor(y), f = y - n;
  float p = 2.170165826100856e-4f;
  p = mad(p, f, 1.2439633719623089e-3f);
  p = mad(p, f, 9.678876958787441e-3f);
  p = mad(p, f, 5.548330396413803e-2f);
  p = mad(p, f, 2.4022984504699707e-1f);
  p = mad(p, f, 6.931470036506653e-1f);
  p = mad(p, f, 1.0f);
  return p * as_float(((int)fmin(fmax(n, -126.0f), 127.0f) + 127) << 23);
}

// The same, eight lanes at a time (explicit vectors: a float sum reduction
// is not reordered, so a scalar loop of them would not vectorise).
inline float8 exp_nonpos8(float8 x) {
  const float8 y0 = x * 1.44269504089f, y = y0 < (float8)(-126.0f) ? (float8)(-126.0f) : y0, n = floor(y),
               f = y - n;
  float8 p = (float8)(2.170165826100856e-4f);
  p = mad(p, f, (float8)(1.2439633719623089e-3f));
  p = mad(p, f, (float8)(9.678876958787441e-3f));
  p = mad(p, f, (float8)(5.548330396413803e-2f));
  p = mad(p, f, (float8)(2.4022984504699707e-1f));
  p = mad(p, f, (float8)(6.931470036506653e-1f));
  p = mad(p, f, (float8)(1.0f));
  return p * as_float8((convert_int8(fmin(fmax(n, (float8)(-126.0f)), (float8)(127.0f))) + 127) << 23);
}

// The same, sixteen lanes at a time (attention's CPU forward: a lane per query).
inline float16 exp_nonpos16(float16 x) {
  const float16 y0 = x * 1.44269504089f, y = y0 < (float16)(-126.0f) ? (float16)(-126.0f) : y0, n = floor(y),
                f = y - n;
  float16 p = (float16)(2.170165826100856e-4f);
  p = mad(p, f, (float16)(1.2439633719623089e-3f));
  p = mad(p, f, (float16)(9.678876958787441e-3f));
  p = mad(p, f, (float16)(5.548330396413803e-2f));
  p = mad(p, f, (float16)(2.4022984504699707e-1f));
  p = mad(p, f, (float16)(6.931470036506653e-1f));
  p = mad(p, f, (float16)(1.0f));
  return p * as_float16((convert_int16(fmin(fmax(n, (float16)(-126.0f)), (float16)(127.0f))) + 127) << 23);
}

// Sum of v over the work-group (1-D, power-of-two local size). Every
// work-item must call it; all receive the total. scratch holds local_size floats.
inline float wg_sum(float v, __local float* scratch) {
  const int lid = get_local_id(0), n = get_local_size(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);  // scratch may be reused right after
  return r;
}

inline float wg_max(float v, __local float* scratch) {
  const int lid = get_local_id(0), n = get_local_size(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp(-x)); }

// Weight storage (the parameter table's storage type of a device tensor): a
// family that reads weights directly is built with -DWEIGHT_BF16, -DWEIGHT_F16
// or neither (f32), and reads them through weight_t and the loads below, always
// into float. bf16 is the high half of an f32, so a shift widens it exactly;
// f16 uses vload_half, core OpenCL 1.2 (no cl_khr_fp16 needed).
#if defined(WEIGHT_BF16)
typedef ushort weight_t;
#define WLOAD(i, p) as_float((uint)(p)[i] << 16)
#define WLOADN(n, p) as_float##n(convert_uint##n(vload##n(0, p)) << 16)
#elif defined(WEIGHT_F16)
#define weight_t half  // a pointer's target only: half values need no cl_khr_fp16
#define WLOAD(i, p) vload_half(i, p)
#define WLOADN(n, p) vload_half##n(0, p)
#else
typedef float weight_t;
#define WLOAD(i, p) (p)[i]
#define WLOADN(n, p) vload##n(0, p)
#endif
