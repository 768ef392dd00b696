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

// MVS_C x MVS_K of matvec_cols_split: 32 x 8 (a 256-item work-group), halved (k-slices first while they
// are more than a quarter of the columns) until the compiled kernel takes it.
struct SplitShape {
  int cols = 32, k = 8;
  std::string options(DType at = DType::F32) const {  // the defaults share the family's one program
    return cols == 32 && k == 8 ? ops::options(at)
                                : fmt::format("{} -DMVS_C={} -DMVS_K={}", ops::options(at), cols, k);
  }
};

const SplitShape& split_shape(Context& ctx) {
  return ctx.memo<SplitShape>("matvec split shape", [&] {
    return host::fit_shape(
        ctx, "matvec", {"matvec_cols_split"}, SplitShape{}, [](const SplitShape& s) { return s.options(); },
        [](const SplitShape& s) { return s.cols * s.k; },
        [](SplitShape& s, const host::Probe&) {
          if (s.cols * s.k == 1) return false;
          (s.k > 1 && s.k * 4 >= s.cols ? s.k : s.cols) /= 2;
          return true;
        });
  });
}

void matvec_cols_split(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                       int lda, DType at) {
  const SplitShape& s = split_shape(ctx);
  host::Kernel k(ctx, "matvec", "matvec_cols_split", s.options(at));
  k.args(y, x, int32_t(x_off), A, K, N, lda);
  k.launch({host::round_up(size_t(N), size_t(s.cols)), size_t(s.k)}, {size_t(s.cols), size_t(s.k)});
}

void matvec_cols_serial(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                        int lda, DType at) {
  host::Kernel k(ctx, "matvec", "matvec_cols", options(at));
  k.args(y, x, int32_t(x_off), A, K, N, lda);
  const size_t wg = k.fit(64);
  k.launch({host::round_up(size_t((N + kCols - 1) / kCols), wg)}, {wg});
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
  const size_t wg = k.fit(64);
  k.launch({host::round_up(size_t(M), wg)}, {wg});
}

}  // namespace ttt::ops
