// Launchers of the global-norm clip and the fused SGD step.
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

namespace {
constexpr int kGroupsPerParam = 64;  // fixed, so the reduction order never changes
}

int sgd_partials(int count) { return count * kGroupsPerParam; }

void sgd_step(Context& ctx, const std::vector<SgdParam>& params, Buffer& partial, Buffer& stats, float lr,
              float clip) {
  const size_t wg = reduce_wg(ctx, 256);
  Kernel sumsq(ctx, "sgd", "sgd_sumsq");
  for (size_t i = 0; i < params.size(); ++i) {
    sumsq.args(partial, int32_t(i * kGroupsPerParam), *params[i].g, params[i].n, Local{wg * sizeof(float)});
    sumsq.launch({kGroupsPerParam * wg}, {wg});
  }
  Kernel norm(ctx, "sgd", "sgd_norm");
  norm.args(stats, partial, int32_t(sgd_partials(int(params.size()))), clip, Local{wg * sizeof(float)});
  norm.launch({wg}, {wg});
  Kernel update(ctx, "sgd", "sgd_update");
  for (const auto& p : params) {
    update.args(*p.w, *p.g, stats, lr, p.n);
    update.launch({round_up(size_t(p.n), 64)}, {64});
  }
}

}  // namespace ttt::ops
