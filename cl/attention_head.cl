// Shared by the attention families (attention.cl, attention_decode.cl), which
// pull it in with a "ttt-include" line: the head dimension and the head-vector type.

#ifndef ATT_E
#define ATT_E 64  // head dimension (set by the host)
#endif

// Head vectors are processed VW floats at a time: explicit vectors make the
// dot products SIMD on CPUs (a scalar float reduction may not be reordered, so
// compilers leave it scalar). head_dim is even, so float2 always fits.
#if ATT_E % 4 == 0
#define VW 4
typedef float4 floatv;
#define vloadv vload4
#define vstorev(x, p) vstore4((x), 0, (p))
#define hsum(x) ((x).s0 + (x).s1 + (x).s2 + (x).s3)
#else
#define VW 2
typedef float2 floatv;
#define vloadv vload2
#define vstorev(x, p) vstore2((x), 0, (p))
#define hsum(x) ((x).s0 + (x).s1)
#endif
#define EV (ATT_E / VW)

// Keys and values (the rings, and a chunk's own rows) are read only through
// these, so that their storage type is decided here once: f32, or f16 with
// -DKV_F16 (EngineOptions::kv_dtype), widened as read. A pointer to half needs
// no cl_khr_fp16; vload_half(N) is core OpenCL and needs only 2-byte alignment.
#ifdef KV_F16
#define kv_t half
#define KVLOAD(i, p) vload_half((i), (p))  // one element, as float
#define KVLOAD16(p) vload_half16(0, (p))   // 16 elements from p, as float16
#if VW == 4
#define KVLOADV(p) vload_half4(0, (p))  // VW elements from p, as floatv
#else
#define KVLOADV(p) vload_half2(0, (p))
#endif
#else
#define kv_t float
#define KVLOAD(i, p) (p)[i]     // one element
#define KVLOAD16(p) vload16(0, p)
#define KVLOADV(p) vloadv(0, p)  // VW elements from p
#endif
