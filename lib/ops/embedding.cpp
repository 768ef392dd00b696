// Launchers of cl/embedding.cl: the token-embedding gather and its scatter-add backward.
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::round_up;

void embedding_fwd(Context& ctx, Buffer& out, const Buffer& ids, const Buffer& wte, int T, int D, DType wt) {
  Kernel k(ctx, "embedding", "embedding_fwd", weight_option(wt));
  k.args(out, ids, wte, T, D);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(D), wg), size_t(T)}, {wg, 1});
}

void embedding_bwd(Context& ctx, Buffer& dwte, const Buffer& dx, const Buffer& ids, int T, int D) {
  Kernel k(ctx, "embedding", "embedding_bwd");
  k.args(dwte, dx, ids, T, D);
  const size_t wg = k.fit(64);
  k.launch({round_up(size_t(D), wg)}, {wg});
}

}  // namespace ttt::ops
