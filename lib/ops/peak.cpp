// Launcher of cl/peak.cl (see lib/ops/peak.hpp).
#include "lib/ops/peak.hpp"

#include "host/kernel.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

namespace ttt::ops {

void fma_peak(host::Context& ctx, host::Buffer& out, size_t items, float a, float b, int iters) {
  if (items == 0) return;
  if (out.bytes() < items * sizeof(float))
    throw Error(fmt::format("ops::fma_peak: out holds {} bytes, {} items need {}", out.bytes(), items, items * 4));
  host::Kernel k(ctx, "peak", "fma_peak");
  k.args(out, a, b, int32_t(iters));
  const size_t wg = k.fit(64);
  if (items % wg) throw Error(fmt::format("ops::fma_peak: {} items is not a multiple of the work-group {}", items, wg));
  k.launch({items}, {wg});
}

}  // namespace ttt::ops
