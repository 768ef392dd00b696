// ttt-bench kernels: times every kernel test case (tests/cases.hpp) on the
// device, so the benchmark and the correctness tests walk the same shapes.
// Prints one JSON object with a row per (family, case): milliseconds per call
// after a warm-up, and GFLOP/s where the FLOP count is well defined.
#include "bench/kernels.hpp"

#include "apps/app.hpp"
#include "host/runtime.hpp"
#include "host/gemm.hpp"
#include "lib/ops/ops.hpp"
#include "tests/cases.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <random>

namespace ttt::bench {
namespace {

using host::Buffer;

Buffer random_buffer(host::Context& ctx, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(std::max<size_t>(n, 1));
  for (auto& x : v) x = u(rng);
  Buffer b(ctx, v.size() * 4, "bench");
  b.upload(v);
  return b;
}

// Milliseconds per call of f: one warm-up call (kernel compilation), then `reps` timed calls.
template <typename F>
double time_ms(host::Context& ctx, int reps, F&& f) {
  f();
  ctx.finish();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  ctx.finish();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

nlohmann::json row(const char* family, const std::string& name, double ms, double flop) {
  nlohmann::json j = {{"family", family}, {"case", name}, {"ms", ms}};
  if (flop > 0) j["gflops"] = flop / (ms * 1e-3) * 1e-9;
  return j;
}

}  // namespace

int kernels(int argc, char** argv) {
  namespace po = app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("family", po::value<std::string>()->default_value("all"), "attention, xent, rmsnorm, gemm or all")
      ("repeat", po::value<int>()->default_value(5), "timed calls per case, after one warm-up call (>= 1)");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!app::parse(argc, argv, opts, vm, "ttt-bench kernels [--family F] [--repeat N]",
                  "Times every kernel test case (the shapes of tests/cases.hpp) and prints JSON."))
    return 0;
  const std::string family = vm["family"].as<std::string>();
  if (family != "all" && family != "attention" && family != "xent" && family != "rmsnorm" && family != "gemm")
    throw po::error(fmt::format("--family: '{}' is not one of attention, xent, rmsnorm, gemm, all", family));
  const int reps = vm["repeat"].as<int>();
  if (reps < 1) throw po::error(fmt::format("--repeat: {} must be >= 1", reps));
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& device = ctx.device();
  auto want = [&](const char* f) { return family == "all" || family == f; };
  nlohmann::json rows = nlohmann::json::array();

  if (want("attention"))
    for (const cases::Attention& c : cases::attention()) {
      const int D = c.H * c.E, C = c.W + c.T - 1 + c.extra_ring;
      Buffer q = random_buffer(ctx, size_t(c.T) * D, 1), kc = random_buffer(ctx, size_t(C) * D, 2),
             vc = random_buffer(ctx, size_t(C) * D, 3), out = random_buffer(ctx, size_t(c.T) * D, 4),
             lse = random_buffer(ctx, size_t(c.T) * c.H, 5), dout = random_buffer(ctx, size_t(c.T) * D, 6),
             dq = random_buffer(ctx, size_t(c.T) * D, 7), dk = random_buffer(ctx, size_t(c.T) * D, 8),
             dv = random_buffer(ctx, size_t(c.T) * D, 9), dsum = random_buffer(ctx, size_t(c.T) * c.H, 10);
      const ops::AttnShape s{c.T, c.H, c.E, C, c.W, c.pos0};
      double pairs = 0;  // query t at position pos0+t sees min(W, pos0+t+1) keys
      for (int t = 0; t < c.T; ++t) pairs += double(std::min<int64_t>(c.W, c.pos0 + t + 1));
      rows.push_back(row("attention_fwd", c.name(), time_ms(ctx, reps, [&] { ops::attention_fwd(ctx, out, lse, q, kc, vc, s); }),
                         4.0 * pairs * D));
      rows.push_back(row("attention_bwd", c.name(), time_ms(ctx, reps, [&] {
                           ops::attention_bwd(ctx, dq, ops::mat(dk, D), ops::mat(dv, D), dsum, dout, out, q, lse, kc, vc, s);
                         }),
                         10.0 * pairs * D));
    }
  if (want("xent"))
    for (const cases::Xent& c : cases::xent()) {
      ops::XentScratch scratch(ctx, c.T, c.D, c.tile);
      Buffer h = random_buffer(ctx, size_t(c.T) * c.D, 1), W = random_buffer(ctx, size_t(c.V) * c.D, 2),
             nll(ctx, size_t(c.T) * 4, "nll"), dh(ctx, size_t(c.T) * c.D * 4, "dh"), tg(ctx, size_t(c.T) * 4, "tg");
      std::vector<int32_t> targets(size_t(c.T));
      for (int t = 0; t < c.T; ++t) targets[size_t(t)] = (t * 31 + 5) % c.V;
      tg.upload(targets);
      rows.push_back(row("xent", c.name(), time_ms(ctx, reps, [&] {
                           ops::xent(ctx, scratch, nll, &dh, h, W, c.tied, tg, c.T, c.D, c.V, -1, 1.f / float(c.T));
                         }),
                         4.0 * c.T * c.V * c.D));  // logits and U GEMMs
    }
  if (want("rmsnorm"))
    for (const cases::RmsNorm& c : cases::rmsnorm()) {
      const int D = c.H * c.N;
      Buffer x = random_buffer(ctx, size_t(c.T) * D, 1), g = random_buffer(ctx, size_t(c.N), 2),
             y(ctx, size_t(c.T) * D * 4, "y"), rstd(ctx, size_t(c.T) * c.H * 4, "rstd"),
             dx(ctx, size_t(c.T) * D * 4, "dx");
      rows.push_back(row("rmsnorm_fwd_bwd", c.name(), time_ms(ctx, reps, [&] {
                           ops::rmsnorm_fwd(ctx, ops::mat(y, D), rstd, ops::mat(x, D), g, nullptr, c.T, c.H, c.N, 1e-6f);
                           ops::rmsnorm_bwd(ctx, ops::mat(dx, D), false, ops::mat(y, D), ops::mat(x, D), g, rstd, c.T,
                                            c.H, c.N);
                         }),
                         0));
    }
  if (want("gemm"))
    for (const cases::Gemm& c : cases::gemm()) {
      Buffer A = random_buffer(ctx, size_t(c.M) * c.K, 1), B = random_buffer(ctx, size_t(c.K) * c.N, 2),
             Cm(ctx, size_t(c.M) * c.N * 4, "C");
      const auto ta = c.ta ? host::Trans::T : host::Trans::N, tb = c.tb ? host::Trans::T : host::Trans::N;
      rows.push_back(row("gemm", c.name(), time_ms(ctx, reps, [&] {
                           host::gemm(ctx, ta, tb, c.M, c.N, c.K, 1.f, A, 0, c.ta ? c.M : c.K, B, 0, c.tb ? c.K : c.N,
                                      0.f, Cm, 0, c.N);
                         }),
                         2.0 * c.M * c.N * c.K));
    }
  const nlohmann::json j = {{"bench", "kernels"}, {"device", device.name}, {"repeat", reps}, {"results", rows}};
  std::cout << j.dump(2) << "\n";
  return 0;
}

}  // namespace ttt::bench
