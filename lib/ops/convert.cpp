// Launchers of cl/convert.cl: a panel of a 16-bit weight widened to float for
// the GEMMs that CLBlast runs only in f32; rows of keys and values narrowed to f16 for f16 rings.
#include "lib/ops/ops.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ops {

void convert_widen(Context& ctx, Buffer& out, int ldo, const Buffer& in, DType it, size_t in_off, int ldi, int R,
                   int C) {
  if (it == DType::F32) throw Error("convert_widen: the input is already f32 (a copy, not a widening)");
  if (R == 0 || C == 0) return;
  host::Kernel k(ctx, "convert", "convert_widen", weight_option(it));
  k.args(out, ldo, in, int64_t(in_off), ldi, R, C);
  const size_t wg = k.fit(64);
  k.launch({host::round_up(size_t(C), wg), size_t(R)}, {wg, 1});
}

void convert_narrow_f16(Context& ctx, Buffer& out, size_t out_off, int ldo, const Buffer& in, size_t in_off, int ldi,
                        int R, int C) {
  if (R == 0 || C == 0) return;
  host::Kernel k(ctx, "convert", "convert_narrow_f16");
  k.args(out, int64_t(out_off), ldo, in, int64_t(in_off), ldi, R, C);
  const size_t wg = k.fit(64);
  k.launch({host::round_up(size_t(C), wg), size_t(R)}, {wg, 1});
}

}  // namespace ttt::ops
