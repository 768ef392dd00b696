// Batched against sequential prefill on the same documents.
#include "bench/parallel.hpp"

#include "host/runtime.hpp"
#include "ttt/batch.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <sys/resource.h>

namespace ttt::bench {

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error(fmt::format("--parallel: '{}' is not a positive integer (give N or N,N,...)", item));
    }
  }
  if (out.empty()) throw Error("--parallel: give N or N,N,...");
  return out;
}

nlohmann::json prefill_parallel(Runtime& rt, const Model& m, size_t tokens, size_t docs,
                                const std::vector<int>& parallel, bool ttt, uint64_t seed, bool profile,
                                const EngineOptions& storage) {
  host::Context& ctx = host::context(rt);
  std::vector<std::vector<int32_t>> text(docs, std::vector<int32_t>(tokens));
  std::mt19937_64 rng(seed + 1);
  for (auto& d : text)
    for (auto& t : d) t = int32_t(rng() % uint64_t(m.config.vocab_size));
  std::vector<std::span<const int32_t>> spans(text.begin(), text.end());
  EngineOptions o = storage;  // the weights' and the rings' storage types, as the prefill's
  o.ttt = ttt;
  Engine e(rt, m, o);
  const double scored = double(docs) * double(tokens - 1);
  // CPU seconds of the whole process (PoCL's threads included): on a shared
  // machine the work done, where wall time also measures the others' load.
  auto cpu_now = [] {
    struct rusage u {};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  double cpu = 0;
  nlohmann::json kernels;
  auto timed = [&](auto&& f) {
    const double c0 = cpu_now();
    ctx.profiler().reset();
    ctx.profiler().enable(profile);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu = cpu_now() - c0;
    ctx.profiler().collect();
    kernels = ctx.profiler().totals_ms();
    ctx.profiler().enable(false);
    return s;
  };
  std::vector<std::vector<float>> ref(docs);
  const double seq = timed([&] {
    for (size_t i = 0; i < docs; ++i) ref[i] = e.session().evaluate(text[i]);
  });
  std::fprintf(stderr, "  sequential: %.2f s, %.1f tok/s, %.2f CPU s\n", seq, scored / seq, cpu);
  const nlohmann::json seq_kernels = kernels;
  const double seq_cpu = cpu;
  nlohmann::json runs = nlohmann::json::array();
  for (int n : parallel) {
    BatchSession b(e, n);
    std::vector<std::vector<float>> got;
    const double s = timed([&] { got = b.evaluate(spans); });
    double max_diff = 0;
    for (size_t i = 0; i < docs; ++i)
      for (size_t k = 0; k < got[i].size(); ++k) max_diff = std::max(max_diff, double(std::fabs(got[i][k] - ref[i][k])));
    std::fprintf(stderr, "  parallel %d: %.2f s, %.1f tok/s (%.2fx), %.2f CPU s (%.2fx), max |nll - sequential| %.2g\n",
                 n, s, scored / s, seq / s, cpu, seq_cpu / cpu, max_diff);
    runs.push_back({{"parallel", n},
                    {"seconds", s},
                    {"tokens_per_s", scored / s},
                    {"speedup_over_sequential", seq / s},
                    {"cpu_seconds", cpu},
                    {"cpu_speedup_over_sequential", seq_cpu / cpu},
                    {"max_abs_nll_diff", max_diff},
                    {"device_mb", double(b.device_bytes()) / 1048576.0}});
    if (profile) runs.back()["kernel_ms"] = kernels;
  }
  return {{"ttt", ttt},
          {"documents", docs},
          {"tokens_per_document", tokens},
          {"sequential_seconds", seq},
          {"sequential_tokens_per_s", scored / seq},
          {"sequential_cpu_seconds", seq_cpu},
          {"runs", runs},
          {"sequential_kernel_ms", profile ? seq_kernels : nlohmann::json(nullptr)}};
}

}  // namespace ttt::bench
