// Launchers of cl/rmsnorm.cl: RMSNorm's forward (with the residual), backward
// and gain gradient, one work-group per row, and the tangents of the three for
// the device meta gradient (lib/engine/meta_gradient.cpp).
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

void rmsnorm_fwd(Context& ctx, Mat out, Buffer& rstd, Mat x, const Buffer& g, const Mat* res, int T, int H, int N,
                 float eps, bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_fwd");
  const size_t wg = reduce_wg(ctx, k, N);
  const Mat r = res ? *res : x;  // unused when use_res = 0, but must be a valid buffer
  k.args(*out.buf, out.off, out.ld, rstd, *x.buf, x.off, x.ld, g, *r.buf, r.off, r.ld, int32_t(res != nullptr), H, N,
         eps, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(T) * H * wg}, {wg});
}

void rmsnorm_bwd(Context& ctx, Mat dx, bool accumulate, Mat dy, Mat x, const Buffer& g, const Buffer& rstd, int T,
                 int H, int N, bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_bwd");
  const size_t wg = reduce_wg(ctx, k, N);
  k.args(*dx.buf, dx.off, dx.ld, int32_t(accumulate), *dy.buf, dy.off, dy.ld, *x.buf, x.off, x.ld, g, rstd, H, N,
         int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(T) * H * wg}, {wg});
}

void rmsnorm_wgrad(Context& ctx, Buffer& dg, bool accumulate, Mat dy, Mat x, const Buffer& rstd, int T, int H, int N,
                   bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_wgrad");
  k.args(dg, int32_t(accumulate), *dy.buf, dy.off, dy.ld, *x.buf, x.off, x.ld, rstd, T, H, N, int32_t(normalize));
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(N), wg)}, {wg});
}

// The tangents: contiguous rows of N floats.
void rmsnorm_jvp(Context& ctx, Buffer& yd, Buffer& xdot, const Buffer& x, const Buffer& xd, const Buffer& g,
                 const Buffer& rstd, int R, int N, bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "rmsnorm", "rmsnorm_jvp");
  const size_t wg = reduce_wg(ctx, k, N);
  k.args(yd, xdot, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_bwd_tangent(Context& ctx, Buffer& dxd, bool accumulate, const Buffer& dy, const Buffer& dyd,
                         const Buffer& x, const Buffer& xd, const Buffer& g, const Buffer& rstd, int R, int N,
                         bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "rmsnorm", "rmsnorm_bwd_tangent");
  const size_t wg = reduce_wg(ctx, k, N);
  k.args(dxd, int32_t(accumulate), dy, dyd, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_wgrad_tangent(Context& ctx, Buffer& dgd, const Buffer& dy, const Buffer& dyd, const Buffer& x,
                           const Buffer& xd, const Buffer& rstd, const Buffer& xdot, int R, int N, bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_wgrad_tangent");
  k.args(dgd, dy, dyd, x, xd, rstd, xdot, R, N, int32_t(normalize));
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(N), wg)}, {wg});
}

}  // namespace ttt::ops
