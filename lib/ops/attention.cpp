// Launchers of the attention family. The head dimension and tile sizes are
// compile-time constants of the program (-DATT_E, -DATT_BQ, -DATT_BK); the
// tile is sized so that two tiles fit comfortably in local memory. Rings
// stored in f16 (AttnShape::kv) build the same kernels with -DKV_F16.
#include "lib/ops/ops.hpp"

#include "host/program.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>
#include <vector>

namespace ttt::ops {
namespace {

struct AttnConfig {
  int bq, bk;
  std::string options;  // without -DATT_CPU
  bool cpu;             // the CPU forms (host::cpu_forms): attention.cl's sweeps, else attention_flash.cl
  int cq;               // the CPU forward's query vectors (16 queries each) per work-item
  bool fma;             // fused multiply-adds in hardware (the CPU forward's products use fma, else mad)
  // The options of the CPU forms' program (attention.cl with -DATT_CPU=1).
  std::string cpu_options() const {
    return fmt::format("{} -DATT_CPU=1 -DATT_CQ={}{}", options, cq, fma ? " -DATT_FMA=1" : "");
  }
  int cpu_queries() const { return 16 * cq; }
};

// Work-items per group: 64, halved until every compiled kernel of the family
// accepts it; the key tile is halved until they all fit the device's local
// memory (a driver may count a program's __local arrays generously: Oclgrind's
// 32 KB took 33 KB for head_dim 64 with the first tile). host::fit_shape, the
// one mechanism every compile-time group shape goes through.
AttnConfig attn_config(Context& ctx, int E) {
  if (E < 2 || E > 256 || E % 2) throw Error(fmt::format("attention: head_dim {} is outside 2..256 or odd", E));
  // A CPU's "local memory" is cache and its forward (sweeps) gains from longer
  // tiles: 64 keys ran the 125m forward 1.4x faster than 32 on PoCL.
  // A device with a loop budget takes the flash forms, the only ones that split long windows.
  const bool cpu = host::cpu_forms(ctx.device()) && host::loop_budget(ctx.device()) == 0;
  // The CPU forward keeps a work-item's queries and outputs transposed, (E, 16 cq) each, in private
  // memory: 64 queries up to head_dim 64, fewer for wider heads (16 KB each at most).
  const int cq = E <= 64 ? 4 : E <= 128 ? 2 : 1;
  // PoCL defines no FP_FAST_FMAF on a CPU with FMA, and compiles mad as a multiply and an add.
  cl_device_fp_config fp = 0;
  clGetDeviceInfo(ctx.device().id, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, nullptr);
  const bool fma = (fp & CL_FP_FMA) && !(fp & CL_FP_SOFT_FLOAT);
  auto make = [&](int bq, int bk) {
    return AttnConfig{bq, bk, fmt::format("-DATT_E={} -DATT_BQ={} -DATT_BK={}", E, bq, bk), cpu, cq, fma};
  };
  return host::fit_shape(
      ctx, "attention", {"attention_bwd_dq", "attention_bwd_dkv"},
      make(64, E <= 64 ? (cpu ? 64 : 32) : E <= 128 ? 16 : 8),
      // The CPU form's program: its backward holds the most local memory and private state, so what
      // fits it fits the tiles form too, and either may be asked for (tests, ttt-bench). Its forward
      // runs one work-item per group, with no local memory: nothing to fit. A device with a loop
      // budget (llvmpipe) never takes the CPU forms, and its compiler spends minutes on their
      // register blocks: there the tiles form's program is the one fitted.
      [budget = host::loop_budget(ctx.device()) > 0](const AttnConfig& c) {
        return budget ? c.options : c.cpu_options();
      },
      [](const AttnConfig& c) { return c.bq; },
      [&](AttnConfig& c, const host::Probe& p) {
        if (p.local_mem > ctx.device().local_mem && c.bk > 1)
          c = make(c.bq, c.bk / 2);
        else if (p.work_group < size_t(c.bq) && c.bq > 1)
          c = make(c.bq / 2, c.bk);
        else
          return false;
        return true;
      });
}

// One config per (context, E): it depends on nothing else.
const AttnConfig& cached_config(Context& ctx, int E) {
  return ctx.memo<AttnConfig>(fmt::format("attention E={}", E), [&] { return attn_config(ctx, E); });
}

// The GPU forms (cl/attention_flash.cl), one program per kernel: a group owns
// fq rows and streams tiles of fk rows, with tr x tc work-items.
enum class Flash { fwd, dq, dkv };
struct FlashConfig {
  int fq, fk, tr, tc;
  std::string options;
};

// Local memory each kernel declares for a shape (its __local arrays, rows padded to E+1 and fk+1 floats).
size_t flash_local_bytes(Flash which, int E, int fq, int fk) {
  const size_t le = size_t(E) + 1, lk = size_t(fk) + 1, q = size_t(fq), k = size_t(fk);
  const size_t floats = which == Flash::fwd  ? q * le + k * le + q * lk + q
                        : which == Flash::dq ? 2 * q * le + 2 * k * le + q * lk + 2 * q
                                             : 2 * q * le + 2 * k * le + 2 * q * lk + 2 * k;
  return floats * sizeof(float);
}

// 128 work-items (16 x 8; 8 x 16 for head_dim > 64, whose per-item head
// elements would otherwise crowd the registers), 64 rows a group and 32 a tile
// (16 past head_dim 64); the tile, then the group's rows, are halved until the
// arrays fit the device's local memory with 1 KB to spare (a driver may count
// them generously), then host::fit_shape halves the work-items (rows first)
// until every kernel of the program takes them.
FlashConfig flash_config(Context& ctx, int E, Flash which) {
  const size_t budget = ctx.device().local_mem;
  int tc = E > 64 ? 16 : 8, tr = 128 / tc, fq = 64, fk = E <= 64 ? 32 : 16;
  while (flash_local_bytes(which, E, fq, fk) + 1024 > budget) {
    if (fk > 8)
      fk /= 2;
    else if (fq > 8)
      fq /= 2;
    else if (fk > 1)
      fk /= 2;
    else if (fq > 1)
      fq /= 2;
    else
      break;
  }
  while (tr > fq) tr /= 2;
  auto make = [&](int q, int k, int r, int c) {
    return FlashConfig{
        q, k, r, c, fmt::format("-DATT_E={} -DATT_FQ={} -DATT_FK={} -DATT_TR={} -DATT_TC={}", E, q, k, r, c)};
  };
  auto shrink = [&](FlashConfig& c, const host::Probe& p) {
    if (p.local_mem > ctx.device().local_mem && c.fk > 1)
      c = make(c.fq, c.fk / 2, c.tr, c.tc);
    else if (p.local_mem > ctx.device().local_mem && c.fq > 1)
      c = make(c.fq / 2, c.fk, std::min(c.tr, c.fq / 2), c.tc);
    else if (p.work_group < size_t(c.tr) * size_t(c.tc) && c.tr > 1 && c.tr >= c.tc)
      c = make(c.fq, c.fk, c.tr / 2, c.tc);
    else if (p.work_group < size_t(c.tr) * size_t(c.tc) && c.tc > 1)
      c = make(c.fq, c.fk, c.tr, c.tc / 2);
    else
      return false;
    return true;
  };
  auto options = [](const FlashConfig& c) { return c.options; };
  auto items = [](const FlashConfig& c) { return c.tr * c.tc; };
  const FlashConfig start = make(fq, fk, tr, tc);
  switch (which) {
    case Flash::fwd:
      return host::fit_shape(ctx, "attention_flash", {"attention_fwd_flash", "attention_fwd_flash_batched"}, start,
                             options, items, shrink);
    case Flash::dq:
      return host::fit_shape(ctx, "attention_flash", {"attention_bwd_dq_flash", "attention_bwd_dq_flash_batched"},
                             start, options, items, shrink);
    default:
      return host::fit_shape(ctx, "attention_flash", {"attention_bwd_dkv_flash", "attention_bwd_dkv_flash_batched"},
                             start, options, items, shrink);
  }
}

const FlashConfig& cached_flash(Context& ctx, int E, Flash which) {
  return ctx.memo<FlashConfig>(fmt::format("attention flash {} E={}", int(which), E),
                               [&] { return flash_config(ctx, E, which); });
}

// Lag ranges [lo, hi) of the passes a flash kernel takes the window of W keys
// in: one, unless the device ends long loops early (host::loop_budget), where
// each pass streams few enough tiles to go round its loops (counted as if
// none were unrolled) at most half the budget's times.
std::vector<std::pair<int, int>> flash_passes(Context& ctx, const FlashConfig& f, int E, int W) {
  const size_t budget = host::loop_budget(ctx.device());
  int span = W;
  if (budget) {
    const size_t nt = size_t(f.tr) * size_t(f.tc), fk = size_t(f.fk), own = (size_t(f.fq) + nt - 1) / nt;
    const size_t per_tile = size_t(E) + 4 * fk + 2 * ((fk * size_t(E) + nt - 1) / nt) + 2 * own * fk + 16;
    const size_t tiles = std::max<size_t>(1, budget / 2 / per_tile);
    span = int(std::clamp<int64_t>(int64_t(tiles * fk) - f.fq + 1, 1, W));
  }
  std::vector<std::pair<int, int>> passes;
  for (int lo = 0; lo < W; lo += span) passes.emplace_back(lo, std::min(W, lo + span));
  return passes;
}

// attention.cl's forms take the whole window in one pass: on a device with a
// loop budget, refuse (with the sizes named) what would run past it rather
// than return what the device left undone. A rough count: a head's worth
// (sweeps) or a vector's worth (tiles) of loop turns for every key a
// work-item visits.
void check_loop_budget(Context& ctx, const char* what, int E, int64_t keys, bool sweeps) {
  const size_t budget = host::loop_budget(ctx.device());
  const int64_t turns = keys * (sweeps ? E : std::max(1, E / 4));
  if (budget && turns > int64_t(budget))
    throw Error(fmt::format("attention: the {} kernel would go round its loops about {} times per work-item ({} keys, "
                            "head_dim {}), past the loop budget of {} on '{}' (its compiler ends longer loops early); "
                            "the flash form takes the window in passes",
                            what, turns, keys, E, budget, ctx.device().name));
}

ForwardKernel resolve(const AttnConfig& c, ForwardKernel kind) {
  return kind != ForwardKernel::automatic ? kind : c.cpu ? ForwardKernel::sweeps : ForwardKernel::flash;
}
BackwardKernel resolve(const AttnConfig& c, BackwardKernel kind) {
  return kind != BackwardKernel::automatic ? kind : c.cpu ? BackwardKernel::sweeps : BackwardKernel::flash;
}

// The options of attention.cl's forms: the CPU form is a compile-time switch of the same kernels.
std::string fwd_options(const AttnConfig& c, ForwardKernel kind) {
  return resolve(c, kind) == ForwardKernel::sweeps ? c.cpu_options() : c.options;
}
std::string bwd_options(const AttnConfig& c, BackwardKernel kind) {
  return resolve(c, kind) == BackwardKernel::sweeps ? c.cpu_options() : c.options;
}

void check_ring(const AttnShape& s) {
  if (s.C < s.W + s.T - 1)
    throw Error(fmt::format("attention: ring of {} rows is too small for window {} + chunk {} - 1", s.C, s.W, s.T));
}

// Launches a flash kernel (attention_flash.cl) over `rows` rows of `heads`
// heads (and `docs` documents when batched), once per pass of the window:
// its arguments are `lead...`, then the pass's distance range and the scale.
template <typename... Lead>
void flash_launch(Context& ctx, const char* kernel, Flash which, int E, int W, DType kv, size_t rows, size_t heads,
                  size_t docs, float scale, const Lead&... lead) {
  const FlashConfig& f = cached_flash(ctx, E, which);
  host::Kernel k(ctx, "attention_flash", kernel, f.options + kv_option(kv));
  const size_t items = size_t(f.tr) * size_t(f.tc), groups = (rows + size_t(f.fq) - 1) / size_t(f.fq);
  for (auto [lo, hi] : flash_passes(ctx, f, E, W)) {
    k.args(lead..., lo, hi, scale);
    if (docs)
      k.launch({groups * items, heads, docs}, {items, 1, 1});
    else
      k.launch({groups * items, heads}, {items, 1});
  }
}

}  // namespace

namespace {

DecodeKernel decode_kind(const Context& ctx, DecodeKernel kind) {
  if (kind != DecodeKernel::automatic) return kind;
  return ctx.device().type & CL_DEVICE_TYPE_CPU ? DecodeKernel::per_item : DecodeKernel::per_group;
}

// attention_decode's split kernel of `kind` (resolved) for E, H and the rings'
// type; per_group's ATT_DT (its required group size: 64, halved until the
// compiled kernel takes it) goes to *dt.
host::Kernel decode_split(Context& ctx, int E, int H, DType kv, DecodeKernel kind, int* dt = nullptr) {
  const std::string options = cached_config(ctx, E).options + kv_option(kv);
  if (kind == DecodeKernel::per_item)  // the heads are a compile-time constant (its per-head state is private)
    return host::Kernel(ctx, "attention_decode", "attention_decode_split", fmt::format("{} -DATT_DH={}", options, H));
  auto opts = [&](int n) { return n == 64 ? options : fmt::format("{} -DATT_DT={}", options, n); };
  const int n = ctx.memo<int>(fmt::format("attention decode E={}{}", E, kv_option(kv)), [&] {
    return host::fit_shape(
        ctx, "attention_decode", {"attention_decode_split_wg"}, 64, opts, [](int n) { return n; },
        [](int& n, const host::Probe&) { return n > 1 && (n /= 2, true); });
  });
  if (dt) *dt = n;
  return host::Kernel(ctx, "attention_decode", "attention_decode_split_wg", opts(n));
}

host::Kernel decode_merge(Context& ctx, int E) {
  return host::Kernel(ctx, "attention_decode", "attention_decode_merge", cached_config(ctx, E).options);  // reads no key or value
}

}  // namespace

std::vector<std::function<void()>> attention_programs(Context& ctx, int E, int H, DType kv) {
  std::vector<std::function<void()>> steps;
  steps.push_back([&ctx, E] { cached_config(ctx, E); });  // the "attention" program: the CPU forms, probed
  const bool cpu = host::cpu_forms(ctx.device()) && host::loop_budget(ctx.device()) == 0;  // as attn_config
  if (cpu && kv != DType::F32)
    steps.push_back([&ctx, E, kv] {
      host::Kernel(ctx, "attention", "attention_fwd", fwd_options(cached_config(ctx, E), ForwardKernel::sweeps) +
                                                          kv_option(kv));
    });
  if (!cpu)
    for (Flash f : {Flash::fwd, Flash::dq, Flash::dkv}) {
      steps.push_back([&ctx, E, f] { cached_flash(ctx, E, f); });
      if (kv != DType::F32)
        steps.push_back([&ctx, E, f, kv] {
          const char* name = f == Flash::fwd ? "attention_fwd_flash" : f == Flash::dq ? "attention_bwd_dq_flash"
                                                                                      : "attention_bwd_dkv_flash";
          host::Kernel(ctx, "attention_flash", name, cached_flash(ctx, E, f).options + kv_option(kv));
        });
    }
  steps.push_back([&ctx, E, H, kv] { decode_split(ctx, E, H, kv, decode_kind(ctx, DecodeKernel::automatic)); });
  steps.push_back([&ctx, E] { decode_merge(ctx, E); });
  return steps;
}

// A single query (decode) splits its keys into runs. On a CPU (per_item):
// runs of at least 64 keys, one work-item each with every head's state, and
// at most 32 runs per core (enough to balance the cores; the merge reads every run).
// Elsewhere (per_group): one work-group per (run, head), with enough runs for
// two work-groups per compute unit and at least 64 keys a run. The partials
// live in a scratch buffer of the context, one per size.
void attention_decode(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc, const Buffer& vc,
                      const AttnShape& s, DecodeKernel kind) {
  check_ring(s);
  if (s.T != 1) throw Error(fmt::format("attention_decode: {} queries, expected 1", s.T));
  kind = decode_kind(ctx, kind);
  const int64_t keys = std::min<int64_t>(s.W, s.pos0 + 1);
  const int64_t cus = int64_t(ctx.device().compute_units);
  const int nparts = kind == DecodeKernel::per_item
                         ? int(std::clamp<int64_t>(keys / 64, 1, std::max<int64_t>(1, 32 * cus)))
                         : int(std::clamp<int64_t>((2 * cus + s.H - 1) / s.H, 1, std::max<int64_t>(1, keys / 64)));
  const int per = int((keys + nparts - 1) / nparts);
  size_t floats = 1024;
  while (floats < size_t(s.H) * size_t(nparts) * size_t(s.E + 2)) floats *= 2;
  const Buffer& part = ctx.memo<Buffer>(fmt::format("attention decode partials {}", floats),
                                        [&] { return Buffer(ctx, floats * sizeof(float), "attention decode partials"); });
  const float scale = float(1.0 / std::sqrt(double(s.E)));
  int dt = 0;
  host::Kernel k = decode_split(ctx, s.E, s.H, s.kv, kind, &dt);
  if (kind == DecodeKernel::per_item) {
    k.args(part, q, kc, vc, s.C, int64_t(s.pos0), s.W, per, nparts, scale);
    const size_t wg = k.fit(8);
    k.launch({host::round_up(size_t(nparts), wg)}, {wg});
  } else {
    const size_t items = size_t(dt);
    k.args(part, q, kc, vc, s.H, s.C, int64_t(s.pos0), s.W, per, nparts, scale);
    k.launch({size_t(nparts) * items, size_t(s.H)}, {items, 1});
  }
  host::Kernel m = decode_merge(ctx, s.E);
  m.args(out, lse, part, s.H, nparts);
  m.launch({size_t(s.H)}, {1});  // a work-item per head
}

void attention_fwd(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc, const Buffer& vc,
                   const AttnShape& s, ForwardKernel kind) {
  check_ring(s);
  const AttnConfig& c = cached_config(ctx, s.E);
  if (s.T == 1) return attention_decode(ctx, out, lse, q, kc, vc, s, DecodeKernel::automatic);
  const float scale = float(1.0 / std::sqrt(double(s.E)));
  if (resolve(c, kind) == ForwardKernel::flash) {
    return flash_launch(ctx, "attention_fwd_flash", Flash::fwd, s.E, s.W, s.kv, size_t(s.T), size_t(s.H), 0, scale,
                        out, lse, q, kc, vc, s.T, s.H, s.C, int64_t(s.pos0));
  }
  const bool sweeps = resolve(c, kind) == ForwardKernel::sweeps;
  const int rows = sweeps ? c.cpu_queries() : c.bq;  // queries a work-group owns
  check_loop_budget(ctx, "attention_fwd", s.E, std::min<int64_t>(s.W + rows - 1, s.pos0 + s.T), sweeps);
  host::Kernel k(ctx, "attention", "attention_fwd", fwd_options(c, kind) + kv_option(s.kv));
  k.args(out, lse, q, kc, vc, s.T, s.H, s.C, int64_t(s.pos0), s.W, scale);
  const size_t groups = (size_t(s.T) + size_t(rows) - 1) / size_t(rows);
  if (sweeps)  // one work-item per group
    k.launch({groups, size_t(s.H)}, {1, 1});
  else
    k.launch({groups * size_t(c.bq), size_t(s.H)}, {size_t(c.bq), 1});
}

void attention_bwd(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout, const Buffer& out,
                   const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc, const AttnShape& s,
                   BackwardKernel kind) {
  check_ring(s);
  const AttnConfig& c = cached_config(ctx, s.E);
  const float scale = float(1.0 / std::sqrt(double(s.E)));
  if (resolve(c, kind) == BackwardKernel::flash) {
    flash_launch(ctx, "attention_bwd_dq_flash", Flash::dq, s.E, s.W, s.kv, size_t(s.T), size_t(s.H), 0, scale, dq,
                 dsum, dout, out, q, lse, kc, vc, s.T, s.H, s.C, int64_t(s.pos0));
    return flash_launch(ctx, "attention_bwd_dkv_flash", Flash::dkv, s.E, s.W, s.kv, size_t(s.T), size_t(s.H), 0,
                        scale, *dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc, vc, s.T, s.H,
                        s.C, int64_t(s.pos0));
  }
  check_loop_budget(ctx, "attention_bwd_dq", s.E, std::min<int64_t>(s.W + c.bq - 1, s.pos0 + s.T),
                    resolve(c, kind) == BackwardKernel::sweeps);
  check_loop_budget(ctx, "attention_bwd_dkv", s.E, std::min<int64_t>(s.W + c.bq - 1, s.T),
                    resolve(c, kind) == BackwardKernel::sweeps);
  const host::Range global{host::round_up(size_t(s.T), size_t(c.bq)), size_t(s.H)}, local{size_t(c.bq), 1};
  host::Kernel kq(ctx, "attention", "attention_bwd_dq", bwd_options(c, kind) + kv_option(s.kv));
  kq.args(dq, dsum, dout, out, q, lse, kc, vc, s.T, s.H, s.C, int64_t(s.pos0), s.W, scale);
  kq.launch(global, local);
  host::Kernel kkv(ctx, "attention", "attention_bwd_dkv", bwd_options(c, kind) + kv_option(s.kv));
  kkv.args(*dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc, vc, s.T, s.H, s.C,
           int64_t(s.pos0), s.W, scale);
  kkv.launch(global, local);
}

void attention_fwd_batched(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc,
                           const Buffer& vc, const Buffer& seg, const AttnBatch& b, ForwardKernel kind) {
  check_ring({b.R, b.H, b.E, b.C, b.W, 0});
  const AttnConfig& c = cached_config(ctx, b.E);
  const float scale = float(1.0 / std::sqrt(double(b.E)));
  if (resolve(c, kind) == ForwardKernel::flash) {
    return flash_launch(ctx, "attention_fwd_flash_batched", Flash::fwd, b.E, b.W, b.kv, size_t(b.R), size_t(b.H),
                        size_t(b.S), scale, out, lse, q, kc, vc, seg, b.R, b.H, b.C);
  }
  const bool sweeps = resolve(c, kind) == ForwardKernel::sweeps;
  const int rows = sweeps ? c.cpu_queries() : c.bq;
  check_loop_budget(ctx, "attention_fwd_batched", b.E, int64_t(b.W) + rows - 1, sweeps);
  host::Kernel k(ctx, "attention", "attention_fwd_batched", fwd_options(c, kind) + kv_option(b.kv));
  k.args(out, lse, q, kc, vc, seg, b.R, b.H, b.C, b.W, scale);
  const size_t groups = (size_t(b.R) + size_t(rows) - 1) / size_t(rows);
  if (sweeps)
    k.launch({groups, size_t(b.H), size_t(b.S)}, {1, 1, 1});
  else
    k.launch({groups * size_t(c.bq), size_t(b.H), size_t(b.S)}, {size_t(c.bq), 1, 1});
}

void attention_bwd_batched(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout,
                           const Buffer& out, const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc,
                           const Buffer& seg, const AttnBatch& b, BackwardKernel kind) {
  check_ring({b.R, b.H, b.E, b.C, b.W, 0});
  const AttnConfig& c = cached_config(ctx, b.E);
  const float scale = float(1.0 / std::sqrt(double(b.E)));
  if (resolve(c, kind) == BackwardKernel::flash) {
    flash_launch(ctx, "attention_bwd_dq_flash_batched", Flash::dq, b.E, b.W, b.kv, size_t(b.R), size_t(b.H),
                 size_t(b.S), scale, dq, dsum, dout, out, q, lse, kc, vc, seg, b.R, b.H, b.C);
    return flash_launch(ctx, "attention_bwd_dkv_flash_batched", Flash::dkv, b.E, b.W, b.kv, size_t(b.R), size_t(b.H),
                        size_t(b.S), scale, *dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc,
                        vc, seg, b.R, b.H, b.C);
  }
  check_loop_budget(ctx, "attention_bwd_batched", b.E, int64_t(b.W) + c.bq - 1,
                    resolve(c, kind) == BackwardKernel::sweeps);
  const host::Range global{host::round_up(size_t(b.R), size_t(c.bq)), size_t(b.H), size_t(b.S)},
      local{size_t(c.bq), 1, 1};
  host::Kernel kq(ctx, "attention", "attention_bwd_dq_batched", bwd_options(c, kind) + kv_option(b.kv));
  kq.args(dq, dsum, dout, out, q, lse, kc, vc, seg, b.R, b.H, b.C, b.W, scale);
  kq.launch(global, local);
  host::Kernel kkv(ctx, "attention", "attention_bwd_dkv_batched", bwd_options(c, kind) + kv_option(b.kv));
  kkv.args(*dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc, vc, seg, b.R, b.H, b.C, b.W, scale);
  kkv.launch(global, local);
}

}  // namespace ttt::ops
