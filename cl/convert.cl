// Widening of 16-bit weights (weight_t, common.cl) to float: a GEMM that
// CLBlast runs only in f32 (the prefill's products, the vocabulary sweep's
// tiles) reads a panel of a 16-bit weight widened into a bounded scratch.
// The CPU twin is ref::widen (lib/reference/convert.cpp).
//   convert_widen: out (R, C), row stride ldo = in (R, C) at element in_off, row
//                  stride ldi. Exact: every f16 and bf16 value is an f32.

__kernel void convert_widen(__global float* out, int ldo, __global const weight_t* in, long in_off, int ldi, int R,
                            int C) {
  const int c = get_global_id(0), r = get_global_id(1);
  if (c >= C || r >= R) return;
  out[(long)r * ldo + c] = WLOAD(in_off + (long)r * ldi + c, in);
}

// Narrowing of float rows to f16, rounded to nearest even (vstore_half_rte,
// core OpenCL: no cl_khr_fp16), as keys and values enter f16 rings. The CPU
// twin is ref::narrow_rows_f16.
//   convert_narrow_f16: out (R, C) at element out_off, row stride ldo =
//                       in (R, C) at element in_off, row stride ldi.
__kernel void convert_narrow_f16(__global half* out, long out_off, int ldo, __global const float* in, long in_off,
                                 int ldi, int R, int C) {
  const int c = get_global_id(0), r = get_global_id(1);
  if (c >= C || r >= R) return;
  vstore_half_rte(in[in_off + (long)r * ldi + c], out_off + (long)r * ldo + c, out);
}
