// Launchers of the matvec family (single-token projections and logits).
#include "lib/ops/ops.hpp"

#include <fmt/format.h>

namespace ttt::ops {

constexpr int kCols = 16;  // MV_NC: columns per work-item of matvec_cols (16: 51 ms vs 74 ms at 4 for the 125m blocks on PoCL)
// -DMV_NC, and the weight's storage type (one program per type).
std::string options(DType at) {
  const std::string w = weight_option(at);
  return fmt::format("-DMV_NC={}", kCols) + (w.empty() ? "" : " " + w);
}

void matvec_prepare(Context& ctx) { host::Kernel(ctx, "matvec", "matvec_cols", options(DType::F32)); }

constexpr int kSplitCols = 32, kSplitK = 8;  // MVS_C, MVS_K of matvec_cols_split (a 256-item work-group)

void matvec_cols_split(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                       int lda, DType at) {
  host::Kernel k(ctx, "matvec", "matvec_cols_split", options(at));
  k.args(y, x, int32_t(x_off), A, K, N, lda);
  k.launch({host::round_up(size_t(N), kSplitCols), size_t(kSplitK)}, {size_t(kSplitCols), size_t(kSplitK)});
}

void matvec_cols_serial(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                        int lda, DType at) {
  host::Kernel k(ctx, "matvec", "matvec_cols", options(at));
  k.args(y, x, int32_t(x_off), A, K, N, lda);
  k.launch({host::round_up(size_t((N + kCols - 1) / kCols), 64)}, {64});
}

void matvec_cols(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N, int lda,
                 DType at) {
  // A CPU runs a few work-items at a time: one long serial loop each is what it wants. Anything
  // else (GPUs, accelerators) needs the k-split shape to fill its lanes.
  if (ctx.device().type & CL_DEVICE_TYPE_CPU)
    matvec_cols_serial(ctx, y, x, x_off, A, K, N, lda, at);
  else
    matvec_cols_split(ctx, y, x, x_off, A, K, N, lda, at);
}

void matvec_rows(Context& ctx, Buffer& y, const Buffer& A, const Buffer& x, size_t x_off, int M, int K, int lda,
                 DType at) {
  host::Kernel k(ctx, "matvec", "matvec_rows", options(at));
  k.args(y, A, x, int32_t(x_off), M, K, lda);
  k.launch({host::round_up(size_t(M), 64)}, {64});
}

}  // namespace ttt::ops
