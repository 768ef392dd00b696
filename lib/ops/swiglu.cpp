// Launchers of cl/swiglu.cl: the SwiGLU gate's forward and backward, and their
// tangents for the device meta gradient (lib/engine/meta_gradient.cpp).
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::round_up;

void swiglu_fwd(Context& ctx, Buffer& g, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_fwd");
  k.args(g, h, T, I);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(I), wg), size_t(T)}, {wg, 1});
}

void swiglu_bwd(Context& ctx, Buffer& dh, const Buffer& dg, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_bwd");
  k.args(dh, dg, h, T, I);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(I), wg), size_t(T)}, {wg, 1});
}

void swiglu_jvp(Context& ctx, Buffer& gd, const Buffer& h, const Buffer& hd, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_jvp");
  k.args(gd, h, hd, T, I);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(I), wg), size_t(T)}, {wg, 1});
}

void swiglu_bwd_tangent(Context& ctx, Buffer& dhd, const Buffer& dg, const Buffer& dgd, const Buffer& h,
                        const Buffer& hd, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_bwd_tangent");
  k.args(dhd, dg, dgd, h, hd, T, I);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(I), wg), size_t(T)}, {wg, 1});
}

}  // namespace ttt::ops
