// Reference widening of 16-bit storage (f16, bf16) to float: the twin of
// cl/convert.cl, and with it of every kernel that reads a 16-bit weight (the
// kernel on stored data equals the f32 kernel's twin on the widened data).
#include "lib/reference/ops.hpp"

#include "ttt/error.hpp"

namespace ttt::ref {

void widen(float* out, const uint16_t* in, size_t n, DType t) {
  if (t == DType::F32) throw Error("ref::widen: f32 is not a 16-bit type");
  for (size_t i = 0; i < n; ++i) out[i] = t == DType::BF16 ? bf16_to_f32(in[i]) : f16_to_f32(in[i]);
}

std::vector<uint16_t> narrow(const std::vector<float>& in, DType t) {
  if (t == DType::F32) throw Error("ref::narrow: f32 is not a 16-bit type");
  std::vector<uint16_t> out(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = t == DType::BF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
  return out;
}

void narrow_rows_f16(uint16_t* out, size_t ldo, const float* in, size_t ldi, size_t R, size_t C) {
  for (size_t r = 0; r < R; ++r)
    for (size_t c = 0; c < C; ++c) out[r * ldo + c] = f32_to_f16(in[r * ldi + c]);
}

}  // namespace ttt::ref
