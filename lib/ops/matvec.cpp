// Launchers of the matvec family (single-token projections and logits).
#include "lib/ops/ops.hpp"

#include <fmt/format.h>

namespace ttt::ops {

constexpr int kCols = 16;  // MV_NC: columns per work-item of matvec_cols (16: 51 ms vs 74 ms at 4 for the 125m blocks on PoCL)
const std::string& options() {
  static const std::string o = fmt::format("-DMV_NC={}", kCols);
  return o;
}

void matvec_prepare(Context& ctx) { host::Kernel(ctx, "matvec", "matvec_cols", options()); }

void matvec_cols(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N, int lda) {
  host::Kernel k(ctx, "matvec", "matvec_cols", options());
  k.args(y, x, int32_t(x_off), A, K, N, lda);
  k.launch({host::round_up(size_t((N + kCols - 1) / kCols), 64)}, {64});
}

void matvec_rows(Context& ctx, Buffer& y, const Buffer& A, const Buffer& x, size_t x_off, int M, int K, int lda) {
  host::Kernel k(ctx, "matvec", "matvec_rows", options());
  k.args(y, A, x, int32_t(x_off), M, K, lda);
  k.launch({host::round_up(size_t(M), 64)}, {64});
}

}  // namespace ttt::ops
