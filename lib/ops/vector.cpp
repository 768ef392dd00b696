// Launchers of cl/vector.cl: y = a x + b y on a range of a buffer, and dot
// products summed in double from per-work-group partials (the host's
// bookkeeping of the device meta gradient).
#include "lib/ops/ops.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

namespace {
constexpr int kDotGroups = 64;
}

int dot_partials(int pairs) { return pairs * kDotGroups; }

double dot(Context& ctx, const std::vector<std::pair<const Buffer*, const Buffer*>>& xy, const std::vector<size_t>& n,
           Buffer& partial) {
  if (xy.size() != n.size()) throw Error(fmt::format("ops::dot: {} pairs but {} sizes", xy.size(), n.size()));
  Kernel k(ctx, "vector", "dot_partial");
  const size_t wg = reduce_wg(ctx, k, 1 << 20);
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
  Kernel k(ctx, "vector", "axpby");
  k.args(y, int64_t(y_off), a, x, int64_t(x_off), b, int64_t(n));
  const size_t wg = k.fit(256);
  k.launch({round_up(n, wg)}, {wg});
}

}  // namespace ttt::ops
