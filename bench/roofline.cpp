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

namespace {

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
