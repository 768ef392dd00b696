// Launchers of cl/embedding.cl: the token-embedding gather and its scatter-add backward.
#include "lib/ops/ops.hpp"

namespace ttt::ops {

using host::Kernel;
using host::round_up;

void embedding_fwd(Context& ctx, Buffer& out, const Buffer& ids, const Buffer& wte, int T, int D, DType wt) {
  Kernel k(ctx, "embedding", "embedding_fwd", weight_option(wt));
  k.args(out, ids, wte, T, D);
  k.launch({round_up(size_t(D), 64), size_t(T)}, {64, 1});
}

void embedding_bwd(Context& ctx, Buffer& dwte, const Buffer& dx, const Buffer& ids, int T, int D) {
  Kernel k(ctx, "embedding", "embedding_bwd");
  k.args(dwte, dx, ids, T, D);
  k.launch({round_up(size_t(D), 64)}, {64});
}

}  // namespace ttt::ops
