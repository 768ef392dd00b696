// Launchers of cl/swiglu.cl: the SwiGLU gate's forward and backward.
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::round_up;

void swiglu_fwd(Context& ctx, Buffer& g, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_fwd");
  k.args(g, h, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void swiglu_bwd(Context& ctx, Buffer& dh, const Buffer& dg, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_bwd");
  k.args(dh, dg, h, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

}  // namespace ttt::ops
