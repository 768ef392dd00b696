// What the launchers of every family share: the work-group size of row
// reductions, and prepare_kernels, which builds each family's program (and
// CLBlast's GEMM kernels) before the first mini-batch.
#include "lib/ops/ops.hpp"

#include "host/gemm.hpp"
#include "host/program.hpp"
#include "host/tuning.hpp"

#include "ttt/error.hpp"
#include "ttt/safetensors.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace ttt::ops {

using host::Kernel;

const char* weight_option(DType t) {
  switch (t) {
    case DType::F16: return "-DWEIGHT_F16";
    case DType::BF16: return "-DWEIGHT_BF16";
    default: return "";
  }
}

const char* kv_option(DType t) {
  switch (t) {
    case DType::F32: return "";
    case DType::F16: return " -DKV_F16";
    default: throw Error(fmt::format("keys and values stored as {}: give f32 or f16", dtype_name(t)));
  }
}

size_t reduce_wg(const Context& ctx, const Kernel& k, int n) {
  // A CPU runs a work-group's items in a loop and every barrier of the tree
  // reduction splits that loop: there 4 items, each a contiguous run of the row.
  const size_t cap = host::cpu_forms(ctx.device()) ? 4 : 256;
  const size_t limit = k.fit(cap);
  size_t wg = 1;
  while (wg < size_t(n) && wg * 2 <= limit) wg *= 2;
  return wg;
}

void prepare_kernels(Context& ctx, const KernelPlan& plan) {
  std::vector<std::function<void()>> steps;
  auto program = [&](const char* family, const char* name, std::string options = {}) {
    steps.push_back([&ctx, family, name, options] { Kernel(ctx, family, name, options); });
  };
  for (auto [family, name] : {std::pair{"embedding", "embedding_fwd"}, {"rmsnorm", "rmsnorm_fwd"}, {"rope", "rope_fwd"},
                              {"swiglu", "swiglu_fwd"}, {"xent", "xent_fwd_tile"}, {"sgd", "sgd_update"}})
    program(family, name);
  program("matvec", "matvec_cols");
  for (DType t : plan.weights) {  // a 16-bit weight is read as stored: embedded, widened, the head's rows and products
    if (t == DType::F32) continue;
    program("embedding", "embedding_fwd", weight_option(t));
    program("convert", "convert_widen", weight_option(t));
    program("xent", "xent_bwd_final", weight_option(t));
    program("matvec", "matvec_rows", weight_option(t));
  }
  if (plan.kv != DType::F32) program("convert", "convert_narrow_f16");  // keys and values into f16 rings
  for (auto& step : attention_programs(ctx, plan.head_dim, plan.heads, plan.kv)) steps.push_back(std::move(step));
  // CLBlast builds its GEMM programs inside their first call: the direct kernel
  // (small products) at 1 x 1 x 1 and, with a tuning record (the file's or the
  // built-in one, whose indirect threshold is 64), the indirect one that
  // model-sized products run, at 64 x 64 x 64.
  steps.push_back([&ctx] {
    ctx.programs().external("clblast", [&] {
      const bool indirect = host::tuning_state(ctx).source != host::TuningState::None;
      const size_t n = indirect ? 64 : 1;
      Buffer a(ctx, n * n * 4, "warm-up"), b(ctx, n * n * 4, "warm-up"), c(ctx, n * n * 4, "warm-up");
      a.zero(n * n * 4);
      b.zero(n * n * 4);
      host::gemm(ctx, host::Trans::N, host::Trans::N, 1, 1, 1, 1.f, a, 0, 1, b, 0, 1, 0.f, c, 0, 1, "warm-up");
      if (indirect) host::gemm(ctx, host::Trans::N, host::Trans::N, n, n, n, 1.f, a, 0, n, b, 0, n, 0.f, c, 0, n, "warm-up");
      ctx.finish();
    });
  });
  // One batch for the compile progress ("3/12 attention"), a number a step.
  ctx.programs().begin_batch(int(steps.size()));
  struct EndBatch {
    Context& ctx;
    ~EndBatch() { ctx.programs().end_batch(); }  // also when a build throws: the progress line is closed
  } end_batch{ctx};
  for (auto& step : steps) {
    ctx.programs().next_in_batch();
    step();
  }
}

}  // namespace ttt::ops
