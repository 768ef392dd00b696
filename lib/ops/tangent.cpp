// Launchers of cl/tangent.cl (the logits gradient's tangent, xent_tangent, is
// in xent.cpp beside the sweeps it follows).
#include "lib/ops/ops.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

void swiglu_jvp(Context& ctx, Buffer& gd, const Buffer& h, const Buffer& hd, int T, int I) {
  Kernel k(ctx, "tangent", "swiglu_jvp");
  k.args(gd, h, hd, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void swiglu_bwd_tangent(Context& ctx, Buffer& dhd, const Buffer& dg, const Buffer& dgd, const Buffer& h,
                        const Buffer& hd, int T, int I) {
  Kernel k(ctx, "tangent", "swiglu_bwd_tangent");
  k.args(dhd, dg, dgd, h, hd, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void rmsnorm_jvp(Context& ctx, Buffer& yd, Buffer& xdot, const Buffer& x, const Buffer& xd, const Buffer& g,
                 const Buffer& rstd, int R, int N, bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "tangent", "rmsnorm_jvp");
  const size_t wg = reduce_wg(ctx, N);
  k.args(yd, xdot, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_bwd_tangent(Context& ctx, Buffer& dxd, bool accumulate, const Buffer& dy, const Buffer& dyd,
                         const Buffer& x, const Buffer& xd, const Buffer& g, const Buffer& rstd, int R, int N,
                         bool normalize) {
  if (R == 0) return;
  Kernel k(ctx, "tangent", "rmsnorm_bwd_tangent");
  const size_t wg = reduce_wg(ctx, N);
  k.args(dxd, int32_t(accumulate), dy, dyd, x, xd, g, rstd, N, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(R) * wg}, {wg});
}

void rmsnorm_wgrad_tangent(Context& ctx, Buffer& dgd, const Buffer& dy, const Buffer& dyd, const Buffer& x,
                           const Buffer& xd, const Buffer& rstd, const Buffer& xdot, int R, int N, bool normalize) {
  Kernel k(ctx, "tangent", "rmsnorm_wgrad_tangent");
  k.args(dgd, dy, dyd, x, xd, rstd, xdot, R, N, int32_t(normalize));
  k.launch({round_up(size_t(N), 64)}, {64});
}

namespace {
constexpr int kDotGroups = 64;
}

int dot_partials(int pairs) { return pairs * kDotGroups; }

double dot(Context& ctx, const std::vector<std::pair<const Buffer*, const Buffer*>>& xy, const std::vector<size_t>& n,
           Buffer& partial) {
  if (xy.size() != n.size()) throw Error(fmt::format("ops::dot: {} pairs but {} sizes", xy.size(), n.size()));
  Kernel k(ctx, "tangent", "dot_partial");
  const size_t wg = reduce_wg(ctx, 1 << 20);
  for (size_t p = 0; p < xy.size(); ++p) {
    k.args(partial, int32_t(p * kDotGroups), *xy[p].first, *xy[p].second, int64_t(n[p]), Local{wg * sizeof(float)});
    k.launch({kDotGroups * wg}, {wg});
  }
  std::vector<float> parts(xy.size() * kDotGroups);
  partial.read(parts.data(), parts.size() * sizeof(float), 0, true);
  double sum = 0;
  for (float v : parts) sum += double(v);
  return sum;
}

void axpby(Context& ctx, Buffer& y, size_t y_off, float a, const Buffer& x, size_t x_off, float b, size_t n) {
  if (n == 0) return;
  Kernel k(ctx, "tangent", "axpby");
  k.args(y, int64_t(y_off), a, x, int64_t(x_off), b, int64_t(n));
  k.launch({round_up(n, 256)}, {256});
}

}  // namespace ttt::ops
