// Launchers of the element-wise and row-wise families: embedding, rmsnorm,
// rope, swiglu.
#include "lib/ops/ops.hpp"

#include "host/program.hpp"

#include "host/gemm.hpp"

#include <cmath>

namespace ttt::ops {

using host::Kernel;
using host::Local;
using host::round_up;

size_t reduce_wg(const Context& ctx, int n) {
  // A CPU runs a work-group's items in a loop and every barrier of the tree
  // reduction splits that loop: there 4 items, each a contiguous run of the row.
  const size_t cap = host::cpu_forms(ctx.device()) ? 4 : 256;
  size_t limit = std::min<size_t>(cap, ctx.device().max_work_group);
  size_t wg = 1;
  while (wg < size_t(n) && wg * 2 <= limit) wg *= 2;
  return wg;
}

void prepare_kernels(Context& ctx, int head_dim) {
  const std::pair<const char*, const char*> kernels[] = {
      {"embedding", "embedding_fwd"}, {"rmsnorm", "rmsnorm_fwd"}, {"rope", "rope_fwd"}, {"swiglu", "swiglu_fwd"},
      {"xent", "xent_fwd_tile"},      {"sgd", "sgd_update"}};
  for (auto [family, name] : kernels) Kernel(ctx, family, name);
  attention_prepare(ctx, head_dim);
  matvec_prepare(ctx);
  Buffer a(ctx, 4, "warm-up"), b(ctx, 4, "warm-up"), c(ctx, 4, "warm-up");
  a.zero();
  b.zero();
  host::gemm(ctx, host::Trans::N, host::Trans::N, 1, 1, 1, 1.f, a, 0, 1, b, 0, 1, 0.f, c, 0, 1, "warm-up");
  ctx.finish();
}

void embedding_fwd(Context& ctx, Buffer& out, const Buffer& ids, const Buffer& wte, int T, int D) {
  Kernel k(ctx, "embedding", "embedding_fwd");
  k.args(out, ids, wte, T, D);
  k.launch({round_up(size_t(D), 64), size_t(T)}, {64, 1});
}

void embedding_bwd(Context& ctx, Buffer& dwte, const Buffer& dx, const Buffer& ids, int T, int D) {
  Kernel k(ctx, "embedding", "embedding_bwd");
  k.args(dwte, dx, ids, T, D);
  k.launch({round_up(size_t(D), 64)}, {64});
}

void rmsnorm_fwd(Context& ctx, Mat out, Buffer& rstd, Mat x, const Buffer& g, const Mat* res, int T, int H, int N,
                 float eps, bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_fwd");
  const size_t wg = reduce_wg(ctx, N);
  const Mat r = res ? *res : x;  // unused when use_res = 0, but must be a valid buffer
  k.args(*out.buf, out.off, out.ld, rstd, *x.buf, x.off, x.ld, g, *r.buf, r.off, r.ld, int32_t(res != nullptr), H, N,
         eps, int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(T) * H * wg}, {wg});
}

void rmsnorm_bwd(Context& ctx, Mat dx, bool accumulate, Mat dy, Mat x, const Buffer& g, const Buffer& rstd, int T,
                 int H, int N, bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_bwd");
  const size_t wg = reduce_wg(ctx, N);
  k.args(*dx.buf, dx.off, dx.ld, int32_t(accumulate), *dy.buf, dy.off, dy.ld, *x.buf, x.off, x.ld, g, rstd, H, N,
         int32_t(normalize), Local{wg * sizeof(float)});
  k.launch({size_t(T) * H * wg}, {wg});
}

void rmsnorm_wgrad(Context& ctx, Buffer& dg, bool accumulate, Mat dy, Mat x, const Buffer& rstd, int T, int H, int N,
                   bool normalize) {
  Kernel k(ctx, "rmsnorm", "rmsnorm_wgrad");
  k.args(dg, int32_t(accumulate), *dy.buf, dy.off, dy.ld, *x.buf, x.off, x.ld, rstd, T, H, N, int32_t(normalize));
  k.launch({round_up(size_t(N), 64)}, {64});
}

std::vector<float> rope_table(int64_t pos0, int T, int E, double theta) {
  std::vector<float> cs(size_t(T) * E);
  for (int j = 0; j < E / 2; ++j) {
    const double freq = std::pow(theta, -2.0 * j / E);
    for (int t = 0; t < T; ++t) {
      const double ang = double(pos0 + t) * freq;
      cs[(size_t(t) * (E / 2) + j) * 2] = float(std::cos(ang));
      cs[(size_t(t) * (E / 2) + j) * 2 + 1] = float(std::sin(ang));
    }
  }
  return cs;
}

static void rope(Context& ctx, const char* name, Mat out, Mat x, const Buffer& cs, int T, int H, int E) {
  Kernel k(ctx, "rope", name);
  k.args(*out.buf, out.off, out.ld, *x.buf, x.off, x.ld, cs, T, H, E);
  const size_t lx = std::min<size_t>(round_up(size_t(E / 2), 8), 64);
  k.launch({round_up(size_t(E / 2), lx), size_t(H), size_t(T)}, {lx, 1, 1});
}

void rope_fwd(Context& ctx, Mat out, Mat x, const Buffer& cs, int T, int H, int E) {
  rope(ctx, "rope_fwd", out, x, cs, T, H, E);
}

void rope_bwd(Context& ctx, Mat dx, Mat dy, const Buffer& cs, int T, int H, int E) {
  rope(ctx, "rope_bwd", dx, dy, cs, T, H, E);
}

void swiglu_fwd(Context& ctx, Buffer& g, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_fwd");
  k.args(g, h, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

void swiglu_bwd(Context& ctx, Buffer& dh, const Buffer& dg, const Buffer& h, int T, int I) {
  Kernel k(ctx, "swiglu", "swiglu_bwd");
  k.args(dh, dg, h, T, I);
  k.launch({round_up(size_t(I), 64), size_t(T)}, {64, 1});
}

}  // namespace ttt::ops
