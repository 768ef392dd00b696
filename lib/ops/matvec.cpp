// Launchers of the matvec family (single-token projections and logits).
#include "lib/ops/ops.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ttt::ops {

// The weight's storage type (one program per type).
std::string options(DType at) { return weight_option(at); }


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

// Slabs of whole rows (matvec.cl): about kSlabsPerCore one-item work-groups per compute unit, so that
// every core streams and a core that falls behind on a shared machine is helped by the others, and at
// least kSlabRows rows a slab (the partial rows, S x N floats, stay a small part of the bytes read).
// Columns in blocks of at most kSlabCols (a 16 KB partial row, in L1: the 125m products are one block,
// an untied head of 128K columns is 32).
constexpr int kSlabsPerCore = 8, kSlabRows = 16, kSlabCols = 4096;

void matvec_cols_serial(Context& ctx, Buffer& y, const Buffer& x, size_t x_off, const Buffer& A, int K, int N,
                        int lda, DType at) {
  const int cus = int(std::max<cl_uint>(1, ctx.device().compute_units));
  const int want = std::max(1, std::min(kSlabsPerCore * cus, K / kSlabRows));
  const int ks = (K + want - 1) / want, S = (K + ks - 1) / ks;
  const int nb = std::min(N, kSlabCols), blocks = (N + nb - 1) / nb;
  host::Kernel k(ctx, "matvec", "matvec_cols", options(at));
  if (S == 1) {  // one slab: it writes y
    k.args(y, x, int32_t(x_off), A, K, N, lda, ks, nb);
    k.launch({1, size_t(blocks)}, {1, 1});
    return;
  }
  size_t floats = 1024;
  while (floats < size_t(S) * size_t(N)) floats *= 2;
  const Buffer& part = ctx.memo<Buffer>(fmt::format("matvec partial rows {}", floats), [&] {
    return Buffer(ctx, floats * sizeof(float), "matvec partial rows");
  });
  k.args(part, x, int32_t(x_off), A, K, N, lda, ks, nb);
  k.launch({size_t(S), size_t(blocks)}, {1, 1});
  host::Kernel sum(ctx, "matvec", "matvec_cols_sum", options(DType::F32));
  sum.args(y, part, N, S);
  const size_t items = size_t((N + 15) / 16), wg = sum.fit(std::min<size_t>(16, items));
  sum.launch({host::round_up(items, wg)}, {wg});
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
  // A CPU: one-item work-groups of rb rows (a multiple of MV_RR = 4), about 64 per core. Elsewhere: an item per 4 rows.
  host::Kernel k(ctx, "matvec", "matvec_rows", options(at));
  const bool cpu = ctx.device().type & CL_DEVICE_TYPE_CPU;
  const int cus = int(std::max<cl_uint>(1, ctx.device().compute_units));
  const int rb = cpu ? std::max(4, (M + 64 * cus - 1) / (64 * cus) + 3) / 4 * 4 : 4;
  k.args(y, A, x, int32_t(x_off), M, K, lda, rb);
  const size_t items = size_t((M + rb - 1) / rb), wg = cpu ? 1 : k.fit(std::min<size_t>(64, items));
  k.launch({host::round_up(items, wg)}, {wg});
}

}  // namespace ttt::ops
