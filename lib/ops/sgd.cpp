// Launchers of the global-norm clip and the fused SGD step.
#include "lib/ops/ops.hpp"

#include <algorithm>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

namespace {
constexpr int kGroupsPerParam = 64;  // fixed, so the reduction order never changes
}

int sgd_partials(int count) { return count * kGroupsPerParam; }

void global_norm(Context& ctx, const std::vector<std::pair<const Buffer*, int>>& bufs, Buffer& partial, Buffer& stats,
                 float clip) {
  Kernel sumsq(ctx, "sgd", "sgd_sumsq");
  Kernel norm(ctx, "sgd", "sgd_norm");
  const size_t wg = std::min(reduce_wg(ctx, sumsq, 256), reduce_wg(ctx, norm, 256));
  for (size_t i = 0; i < bufs.size(); ++i) {
    sumsq.args(partial, int32_t(i * kGroupsPerParam), *bufs[i].first, bufs[i].second, Local{wg * sizeof(float)});
    sumsq.launch({kGroupsPerParam * wg}, {wg});
  }
  norm.args(stats, partial, int32_t(sgd_partials(int(bufs.size()))), clip, Local{wg * sizeof(float)});
  norm.launch({wg}, {wg});
}

void sgd_update(Context& ctx, const std::vector<SgdParam>& params, const Buffer& stats, float lr) {
  Kernel update(ctx, "sgd", "sgd_update");
  for (const auto& p : params) {
    update.args(*p.w, *p.g, stats, lr, p.n);
    const size_t wg = update.fit(64);
    update.launch({round_up(size_t(p.n), wg)}, {wg});
  }
}

void sgd_step(Context& ctx, const std::vector<SgdParam>& params, Buffer& partial, Buffer& stats, float lr,
              float clip) {
  std::vector<std::pair<const Buffer*, int>> grads;
  for (const auto& p : params) grads.emplace_back(p.g, p.n);
  global_norm(ctx, grads, partial, stats, clip);
  sgd_update(ctx, params, stats, lr);
}

}  // namespace ttt::ops
