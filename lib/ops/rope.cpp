// Launchers of cl/rope.cl, and the cos/sin table they read (computed on the
// host in double, so every device rotates by the same angles).
#include "lib/ops/ops.hpp"

#include <algorithm>
#include <cmath>

namespace ttt::ops {

using host::Kernel;
using host::round_up;

std::vector<float> rope_table(int64_t pos0, int T, int E, double theta) {
  std::vector<float> cs(size_t(T) * E);
  for (int j = 0; j < E / 2; ++j) {
    const double freq = std::pow(theta, -2.0 * j / E);
    for (int t = 0; t < T; ++t) {
      const double ang = double(pos0 + t) * freq;
      cs[(size_t(t) * (E / 2) + j) * 2] = float(std::cos(ang));
      cs[(size_t(t) * (E / 2) + j) * 2 + 1] = float(std::sin(ang));
    }
  }
  return cs;
}

static void rope(Context& ctx, const char* name, Mat out, Mat x, const Buffer& cs, int T, int H, int E) {
  Kernel k(ctx, "rope", name);
  k.args(*out.buf, out.off, out.ld, *x.buf, x.off, x.ld, cs, T, H, E);
  const size_t lx = k.fit(std::min<size_t>(round_up(size_t(E / 2), 8), 64));
  k.launch({round_up(size_t(E / 2), lx), size_t(H), size_t(T)}, {lx, 1, 1});
}

void rope_fwd(Context& ctx, Mat out, Mat x, const Buffer& cs, int T, int H, int E) {
  rope(ctx, "rope_fwd", out, x, cs, T, H, E);
}

void rope_bwd(Context& ctx, Mat dx, Mat dy, const Buffer& cs, int T, int H, int E) {
  rope(ctx, "rope_bwd", dx, dy, cs, T, H, E);
}

}  // namespace ttt::ops
