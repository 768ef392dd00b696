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

namespace ttt::ops {
namespace {

struct AttnConfig {
  int bq, bk;
  std::string options;  // without -DATT_CPU
  bool cpu;             // the CPU forms (host::cpu_forms): the backward's, and the forward's by default
  std::string bwd_options() const { return cpu ? options + " -DATT_CPU=1" : options; }
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
  const bool cpu = host::cpu_forms(ctx.device());
  auto make = [&](int bq, int bk) {
    return AttnConfig{bq, bk, fmt::format("-DATT_E={} -DATT_BQ={} -DATT_BK={}", E, bq, bk), cpu};
  };
  return host::fit_shape(
      ctx, "attention", {"attention_fwd", "attention_bwd_dq", "attention_bwd_dkv"},
      make(64, E <= 64 ? (cpu ? 64 : 32) : E <= 128 ? 16 : 8), [](const AttnConfig& c) { return c.bwd_options(); },
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

// The forward program's options: the CPU form is a compile-time switch of the same kernels.
std::string fwd_options(const AttnConfig& c, ForwardKernel kind) {
  if (kind == ForwardKernel::automatic) kind = c.cpu ? ForwardKernel::sweeps : ForwardKernel::tiles;
  return kind == ForwardKernel::sweeps ? c.options + " -DATT_CPU=1" : c.options;
}

void check_ring(const AttnShape& s) {
  if (s.C < s.W + s.T - 1)
    throw Error(fmt::format("attention: ring of {} rows is too small for window {} + chunk {} - 1", s.C, s.W, s.T));
}

}  // namespace

void attention_prepare(Context& ctx, int E) { cached_config(ctx, E); }

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
  const AttnConfig& c = cached_config(ctx, s.E);
  const std::string options = c.options + kv_option(s.kv);
  if (kind == DecodeKernel::automatic)
    kind = ctx.device().type & CL_DEVICE_TYPE_CPU ? DecodeKernel::per_item : DecodeKernel::per_group;
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
  if (kind == DecodeKernel::per_item) {
    // The heads are a compile-time constant of this kernel (its per-head state is private).
    host::Kernel k(ctx, "attention_decode", "attention_decode_split", fmt::format("{} -DATT_DH={}", options, s.H));
    k.args(part, q, kc, vc, s.C, int64_t(s.pos0), s.W, per, nparts, scale);
    const size_t wg = k.fit(8);
    k.launch({host::round_up(size_t(nparts), wg)}, {wg});
  } else {
    // ATT_DT, the kernel's required group size: 64, halved until the compiled kernel takes it.
    auto opts = [&](int dt) { return dt == 64 ? options : fmt::format("{} -DATT_DT={}", options, dt); };
    const int dt = ctx.memo<int>(fmt::format("attention decode E={}{}", s.E, kv_option(s.kv)), [&] {
      return host::fit_shape(
          ctx, "attention_decode", {"attention_decode_split_wg"}, 64, opts, [](int n) { return n; },
          [](int& n, const host::Probe&) { return n > 1 && (n /= 2, true); });
    });
    host::Kernel k(ctx, "attention_decode", "attention_decode_split_wg", opts(dt));
    const size_t items = size_t(dt);
    k.args(part, q, kc, vc, s.H, s.C, int64_t(s.pos0), s.W, per, nparts, scale);
    k.launch({size_t(nparts) * items, size_t(s.H)}, {items, 1});
  }
  host::Kernel m(ctx, "attention_decode", "attention_decode_merge", c.options);  // reads no key or value
  m.args(out, lse, part, s.H, nparts);
  m.launch({size_t(s.H)}, {1});  // a work-item per head
}

void attention_fwd(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc, const Buffer& vc,
                   const AttnShape& s, ForwardKernel kind) {
  check_ring(s);
  const AttnConfig& c = cached_config(ctx, s.E);
  if (s.T == 1) return attention_decode(ctx, out, lse, q, kc, vc, s, DecodeKernel::automatic);
  host::Kernel k(ctx, "attention", "attention_fwd", fwd_options(c, kind) + kv_option(s.kv));
  k.args(out, lse, q, kc, vc, s.T, s.H, s.C, int64_t(s.pos0), s.W, float(1.0 / std::sqrt(double(s.E))));
  k.launch({host::round_up(size_t(s.T), size_t(c.bq)), size_t(s.H)}, {size_t(c.bq), 1});
}

void attention_bwd(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout, const Buffer& out,
                   const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc, const AttnShape& s) {
  check_ring(s);
  const AttnConfig& c = cached_config(ctx, s.E);
  const float scale = float(1.0 / std::sqrt(double(s.E)));
  const host::Range global{host::round_up(size_t(s.T), size_t(c.bq)), size_t(s.H)}, local{size_t(c.bq), 1};
  const std::string options = c.bwd_options() + kv_option(s.kv);
  host::Kernel kq(ctx, "attention", "attention_bwd_dq", options);
  kq.args(dq, dsum, dout, out, q, lse, kc, vc, s.T, s.H, s.C, int64_t(s.pos0), s.W, scale);
  kq.launch(global, local);
  host::Kernel kkv(ctx, "attention", "attention_bwd_dkv", options);
  kkv.args(*dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc, vc, s.T, s.H, s.C,
           int64_t(s.pos0), s.W, scale);
  kkv.launch(global, local);
}

void attention_fwd_batched(Context& ctx, Buffer& out, Buffer& lse, const Buffer& q, const Buffer& kc,
                           const Buffer& vc, const Buffer& seg, const AttnBatch& b) {
  check_ring({b.R, b.H, b.E, b.C, b.W, 0});
  const AttnConfig& c = cached_config(ctx, b.E);
  host::Kernel k(ctx, "attention", "attention_fwd_batched",
                 fwd_options(c, ForwardKernel::automatic) + kv_option(b.kv));
  k.args(out, lse, q, kc, vc, seg, b.R, b.H, b.C, b.W, float(1.0 / std::sqrt(double(b.E))));
  k.launch({host::round_up(size_t(b.R), size_t(c.bq)), size_t(b.H), size_t(b.S)}, {size_t(c.bq), 1, 1});
}

void attention_bwd_batched(Context& ctx, Buffer& dq, Mat dk, Mat dv, Buffer& dsum, const Buffer& dout,
                           const Buffer& out, const Buffer& q, const Buffer& lse, const Buffer& kc, const Buffer& vc,
                           const Buffer& seg, const AttnBatch& b) {
  check_ring({b.R, b.H, b.E, b.C, b.W, 0});
  const AttnConfig& c = cached_config(ctx, b.E);
  const float scale = float(1.0 / std::sqrt(double(b.E)));
  const host::Range global{host::round_up(size_t(b.R), size_t(c.bq)), size_t(b.H), size_t(b.S)},
      local{size_t(c.bq), 1, 1};
  const std::string options = c.bwd_options() + kv_option(b.kv);
  host::Kernel kq(ctx, "attention", "attention_bwd_dq_batched", options);
  kq.args(dq, dsum, dout, out, q, lse, kc, vc, seg, b.R, b.H, b.C, b.W, scale);
  kq.launch(global, local);
  host::Kernel kkv(ctx, "attention", "attention_bwd_dkv_batched", options);
  kkv.args(*dk.buf, dk.off, dk.ld, *dv.buf, dv.off, dv.ld, dout, q, lse, dsum, kc, vc, seg, b.R, b.H, b.C, b.W, scale);
  kkv.launch(global, local);
}

}  // namespace ttt::ops
