// ttt-bench peak: cl/peak.cl's FMA chains, timed (see peak.hpp).
#include "bench/peak.hpp"
#include "bench/gemm_timing.hpp"
#include "apps/app.hpp"
#include "host/buffer.hpp"
#include "host/runtime.hpp"
#include "lib/ops/peak.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <vector>

namespace ttt::bench {

using json = nlohmann::json;

json fma_peak(host::Context& ctx, int reps, double min_seconds) {
  const host::DeviceInfo& d = ctx.device();
  // A CPU runs work-groups on its cores, a few per core balance them; a GPU
  // needs many resident work-items per compute unit to hide the latency.
  const bool cpu = (d.type & CL_DEVICE_TYPE_CPU) != 0;
  const size_t items = size_t(std::max<cl_uint>(1, d.compute_units)) * (cpu ? 256 : 4096);
  host::Buffer out(ctx, items * sizeof(float), "fma_peak out");
  // a < 1 and b small keep x finite at any iteration count: x tends to b / (1 - a).
  const float a = 0.999f, b = 1e-3f;
  auto time = [&](int iters) {
    const auto t0 = std::chrono::steady_clock::now();
    ops::fma_peak(ctx, out, items, a, b, iters);
    ctx.finish();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  time(16);  // builds the program
  int iters = 64;
  while (time(iters) < min_seconds && iters < (1 << 24)) iters *= 2;
  double best = 1e30;
  for (int r = 0; r < std::max(1, reps); ++r) best = std::min(best, time(iters));
  std::vector<float> host(items);
  out.read(host.data(), items * sizeof(float));
  for (float v : host)
    if (!std::isfinite(v)) throw Error("fma_peak: a non-finite result (the probe's chains diverged)");
  return {{"fma_peak_gflops", ops::fma_peak_flops(items, iters) / best * 1e-9},
          {"fma_peak_items", items},
          {"fma_peak_iters", iters},
          {"fma_peak_seconds", best}};
}

int peak(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()("repeat", po::value<int>()->default_value(3), "timed calls (best of)");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench peak [--repeat N]",
                       "The device's float32 FMA peak: independent chains of 16-wide fused multiply-adds on\n"
                       "every compute unit (cl/peak.cl), in GFLOP/s, as JSON."))
    return 0;
  const int reps = vm["repeat"].as<int>();
  if (reps < 1 || reps > 100) throw Error("--repeat must be in 1..100");
  ttt::Runtime rt(ttt::app::device_spec(vm));
  host::Context& ctx = host::context(rt);
  json j = {{"bench", "peak"}, {"device", ctx.device().name}, {"compute_units", ctx.device().compute_units},
            {"load_before", load_average()}};
  j.update(fma_peak(ctx, reps));
  j["load_after"] = load_average();
  std::cout << j.dump(2) << "\n";
  return 0;
}

}  // namespace ttt::bench
