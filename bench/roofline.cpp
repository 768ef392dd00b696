// Prefill roofline figures; see roofline.hpp. The FLOP counts are
// bench/model_flops.cpp's, the ceiling is bench/gemm_timing.cpp's CLBlast timing.
#include "bench/roofline.hpp"
#include "bench/gemm_timing.hpp"
#include "bench/model_flops.hpp"

#include <algorithm>
#include <cstdio>

namespace ttt::bench {

using json = nlohmann::json;

double gemm_ceiling_gflops(host::Context& ctx, const Config& c, bool ttt, json* per_shape) {
  const auto shapes = model_gemms(c, ttt);
  GemmBench gb(ctx, shapes);
  double flops = 0, seconds = 0;
  for (const auto& s : shapes) {
    const double t = gb.clblast_seconds(s, 1);
    flops += s.flops() * s.count;
    seconds += t * s.count;
    if (per_shape) (*per_shape)[s.name()] = {{"count", s.count}, {"gflops", s.flops() / t * 1e-9}};
  }
  return flops / seconds * 1e-9;
}

json summary(const std::vector<double>& v) {
  if (v.empty()) return json();
  std::vector<double> s(v);
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  const double med = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  return {{"median", med}, {"min", s.front()}, {"max", s.back()}, {"spread", (s.back() - s.front()) / med},
          {"n", n}};
}

json profile_split(const std::map<std::string, double>& ms) {
  double gemm = 0, other = 0;
  json top = json::object();
  for (const auto& [name, t] : ms) (name.rfind("gemm", 0) == 0 ? gemm : other) += t;
  std::vector<std::pair<double, std::string>> order;
  for (const auto& [name, t] : ms) order.emplace_back(t, name);
  std::sort(order.rbegin(), order.rend());
  json j = {{"gemm_ms", gemm}, {"other_ms", other}, {"gemm_share", gemm / std::max(1e-9, gemm + other)},
            {"non_gemm_share", other / std::max(1e-9, gemm + other)}};
  for (size_t i = 0; i < order.size() && i < 8; ++i) top[order[i].second] = order[i].first;
  j["largest_ms"] = top;
  return j;
}

namespace {

void one_mode(json& j, const std::string& prefix, const Config& c, int64_t n, bool ttt, const PrefillRuns& r,
              double ceiling) {
  const Work w = prefill_work(c, n, ttt);
  const json s = summary(r.seconds);
  const double med = s["median"].get<double>();
  const double achieved = w.total() / med * 1e-9;
  j[prefix + "flops_per_token"] = w.total() / double(n);
  j[prefix + "flops_split"] = {{"gemm", w.gemm / double(n)}, {"attention", w.attention / double(n)},
                               {"other", w.other / double(n)}};
  j[prefix + "seconds_summary"] = s;
  j[prefix + "tokens_per_s_median"] = double(n) / med;
  j[prefix + "achieved_gflops"] = achieved;
  if (ceiling > 0) j[prefix + "mfu"] = achieved / ceiling;
  if (!r.kernel_ms.empty()) j[prefix + "profile"] = profile_split(r.kernel_ms);
}

}  // namespace

void add_roofline(json& j, host::Context& ctx, const Config& c, int64_t n, const PrefillRuns* no_ttt,
                  const PrefillRuns* ttt, bool measure_ceiling) {
  double ceiling = 0;
  if (measure_ceiling) {
    std::fprintf(stderr, "  gemm ceiling: CLBlast on the model's shapes ...\n");
    json shapes;
    ceiling = gemm_ceiling_gflops(ctx, c, ttt != nullptr, &shapes);
    j["gemm_ceiling_gflops"] = ceiling;
    j["gemm_ceiling_shapes"] = shapes;
  }
  if (no_ttt) one_mode(j, "no_ttt_", c, n, false, *no_ttt, ceiling);
  if (ttt) one_mode(j, "ttt_", c, n, true, *ttt, ceiling);
  if (no_ttt && ttt)
    j["ttt_over_no_ttt_median"] = summary(no_ttt->seconds)["median"].get<double>() /
                                  summary(ttt->seconds)["median"].get<double>();
  j["load_average"] = load_average();
}

}  // namespace ttt::bench

// ---------------------------------------------------------------------------
// ttt-bench roofline: the analytic table of docs/performance.md.

#include "apps/app.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <iostream>

namespace ttt::bench {

int roofline_table(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("preset", po::value<std::string>()->default_value("125m"), "model preset")
      ("no-ttt", po::bool_switch(), "the mini-batch without the test-time step")
      ("peak-tflops", po::value<double>()->default_value(67.0), "FP32 peak (H100 SXM: 67)")
      ("bandwidth-tbs", po::value<double>()->default_value(3.35), "memory bandwidth (H100 SXM HBM3: 3.35)")
      ("markdown", po::bool_switch(), "a Markdown table instead of JSON");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench roofline [--preset NAME] [--markdown]",
                       "FLOPs and compulsory bytes of every kernel and GEMM for one full mini-batch in steady\n"
                       "state, and the time a device would need at its peak and at its bandwidth."))
    return 0;
  const Config c = preset(vm["preset"].as<std::string>());
  const double peak = vm["peak-tflops"].as<double>() * 1e12, bw = vm["bandwidth-tbs"].as<double>() * 1e12;
  if (peak <= 0 || bw <= 0) throw Error("--peak-tflops and --bandwidth-tbs must be positive");
  const auto rows = kernel_table(c, !vm["no-ttt"].as<bool>());
  double tf = 0, tb = 0, tbound = 0;
  json j = json::array();
  std::string md = "| kernel | launches | GFLOP | MB | FLOP/byte | ms at peak | ms at bandwidth | bound |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---|\n";
  for (const auto& r : rows) {
    const double a = r.flops / peak * 1e3, b = r.bytes / bw * 1e3;
    tf += r.flops, tb += r.bytes, tbound += std::max(a, b);
    j.push_back({{"kernel", r.name}, {"launches", r.launches}, {"gflop", r.flops * 1e-9}, {"mb", r.bytes * 1e-6},
                 {"ms_at_peak", a}, {"ms_at_bandwidth", b}});
    md += fmt::format("| {} | {} | {:.1f} | {:.0f} | {:.0f} | {:.3f} | {:.3f} | {} |\n", r.name, r.launches,
                      r.flops * 1e-9, r.bytes * 1e-6, r.flops / std::max(1.0, r.bytes), a, b,
                      a >= b ? "compute" : "memory");
  }
  md += fmt::format("| **total** | | **{:.1f}** | **{:.0f}** | {:.0f} | **{:.2f}** | **{:.2f}** | sum of max: **{:.2f} ms** |\n",
                    tf * 1e-9, tb * 1e-6, tf / tb, tf / peak * 1e3, tb / bw * 1e3, tbound);
  if (vm["markdown"].as<bool>()) {
    std::cout << md;
  } else {
    json out = {{"bench", "roofline"}, {"preset", vm["preset"].as<std::string>()}, {"mini_batch", c.mini_batch_size},
                {"kernels", j}, {"total_gflop", tf * 1e-9}, {"total_mb", tb * 1e-6},
                {"ms_lower_bound", tbound}, {"tokens_per_s_upper_bound", c.mini_batch_size / (tbound * 1e-3)}};
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace ttt::bench
