// Reference interleaved RoPE; angles computed in double so that large
// positions stay exact (the device uses the same host-built table).
#include "lib/reference/ops.hpp"

#include <cmath>

namespace ttt::ref {
namespace {

template <typename F>
void rotate(F* x, int64_t pos0, int T, int H, int E, double theta, double sign) {
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < E / 2; ++j) {
      const double ang = double(pos0 + t) * std::pow(theta, -2.0 * j / E);
      const double c = std::cos(ang), s = sign * std::sin(ang);
      for (int h = 0; h < H; ++h) {
        F* p = x + (size_t(t) * H + h) * E + 2 * j;
        const double a = p[0], b = p[1];
        p[0] = F(a * c - b * s);
        p[1] = F(a * s + b * c);
      }
    }
}

}  // namespace

template <typename F>
void rope_fwd(F* x, int64_t pos0, int T, int H, int E, double theta) {
  rotate(x, pos0, T, H, E, theta, 1.0);
}

template <typename F>
void rope_bwd(F* dx, int64_t pos0, int T, int H, int E, double theta) {
  rotate(dx, pos0, T, H, E, theta, -1.0);
}

template void rope_fwd<float>(float*, int64_t, int, int, int, double);
template void rope_fwd<double>(double*, int64_t, int, int, int, double);
template void rope_bwd<float>(float*, int64_t, int, int, int, double);
template void rope_bwd<double>(double*, int64_t, int, int, int, double);

}  // namespace ttt::ref
