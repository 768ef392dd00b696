// ttt-bench: benchmarks that print JSON. `prefill` times the same synthetic
// document through the engine with and without test-time training and sums
// per-kernel device time from profiling events.
#include "apps/app.hpp"
#include "host/device.hpp"
#include "host/error.hpp"
#include "lib/engine/engine.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sys/resource.h>
#include <unistd.h>

namespace {

using json = nlohmann::json;

double peak_rss_mb() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

struct Run {
  double seconds = 0, mean_nll = 0;
  std::map<std::string, double> kernel_ms;
};

Run time_prefill(ttt::host::Context& ctx, const ttt::Model& m, const std::vector<int32_t>& tokens, bool ttt,
                 bool profile) {
  ttt::EngineOptions o;
  o.ttt = ttt;
  ttt::Engine e(ctx, m, o);
  ctx.profiler().reset();
  ctx.profiler().enable(profile);
  const auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(fileno(stderr));
  auto nll = e.evaluate(tokens, [&](size_t done, size_t total) {
    if (tty) std::fprintf(stderr, "\r  %s: %zu/%zu tokens", ttt ? "ttt" : "no-ttt", done, total);
  });
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "%s  %s: %.1f s\n", tty ? "\n" : "", ttt ? "ttt" : "no-ttt", r.seconds);
  ctx.profiler().collect();
  r.kernel_ms = ctx.profiler().totals_ms();
  ctx.profiler().enable(false);
  for (float v : nll) r.mean_nll += v / double(nll.size());
  return r;
}

int prefill(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>(), "model directory")
      ("preset", po::value<std::string>(), "or: a randomly initialised preset (tiny, 125m, ...), built in memory")
      ("tokens", po::value<size_t>()->default_value(4096), "length of the synthetic document")
      ("seed", po::value<uint64_t>()->default_value(0), "seed of the synthetic tokens and of a preset's weights")
      ("json", po::value<std::string>(), "also write the JSON to this file")
      ("no-profile", po::bool_switch(), "do not collect per-kernel times (profiling events cost a little)")
      ("only", po::value<std::string>()->default_value("both"), "ttt, no-ttt or both")
      ("device,d", po::value<std::string>()->default_value(""), "OpenCL device (see ttt-info)");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench prefill (-m DIR | --preset NAME) [--tokens N] [--json FILE]",
                       "Prefill throughput with and without test-time training on the same model and the same\n"
                       "synthetic tokens, per-kernel device time, device memory and peak host RSS, as JSON."))
    return 0;
  if (vm.count("model") == vm.count("preset")) throw ttt::Error("give exactly one of --model and --preset");
  const uint64_t seed = vm["seed"].as<uint64_t>();
  const std::string name = vm.count("model") ? vm["model"].as<std::string>() : "preset:" + vm["preset"].as<std::string>();
  std::fprintf(stderr, "loading %s\n", name.c_str());
  const ttt::Model m = vm.count("model") ? ttt::Model::load(vm["model"].as<std::string>())
                                         : ttt::Model::random(ttt::preset(vm["preset"].as<std::string>()), seed);
  const size_t n = vm["tokens"].as<size_t>();
  if (n < 2) throw ttt::Error("--tokens must be at least 2");
  std::vector<int32_t> tokens(n);
  std::mt19937_64 rng(seed + 1);
  for (auto& t : tokens) t = int32_t(rng() % uint64_t(m.config.vocab_size));
  const auto device = ttt::host::select_device(vm["device"].as<std::string>());
  ttt::host::Context ctx(device);
  const bool profile = !vm["no-profile"].as<bool>();
  const std::string only = vm["only"].as<std::string>();
  if (only != "both" && only != "ttt" && only != "no-ttt") throw ttt::Error("--only takes ttt, no-ttt or both");

  json j = {{"bench", "prefill"},
            {"device", device.name},
            {"model", name},
            {"parameters", m.num_parameters()},
            {"tokens", n},
            {"mini_batch", m.config.mini_batch_size},
            {"window", m.config.sliding_window_size}};
  Run no, yes;
  if (only != "ttt") {
    no = time_prefill(ctx, m, tokens, false, profile);
    j["no_ttt_tokens_per_s"] = double(n - 1) / no.seconds;
    j["no_ttt_seconds"] = no.seconds;
    j["no_ttt_mean_nll"] = no.mean_nll;
    if (profile) j["kernel_ms_no_ttt"] = no.kernel_ms;
  }
  if (only != "no-ttt") {
    yes = time_prefill(ctx, m, tokens, true, profile);
    j["ttt_tokens_per_s"] = double(n - 1) / yes.seconds;
    j["ttt_seconds"] = yes.seconds;
    j["ttt_mean_nll"] = yes.mean_nll;
    if (profile) j["kernel_ms"] = yes.kernel_ms;
  }
  if (only == "both") j["ttt_over_no_ttt"] = no.seconds / yes.seconds;
  {
    ttt::EngineOptions o;
    o.ttt = only != "no-ttt";
    ttt::Engine e(ctx, m, o);
    j["device_mb"] = double(e.device_bytes()) / 1048576.0;
  }
  j["peak_rss_mb"] = peak_rss_mb();
  const std::string out = j.dump(2);
  std::cout << out << "\n";
  if (vm.count("json")) std::ofstream(vm["json"].as<std::string>()) << out << "\n";
  return 0;
}

int body(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << "usage: ttt-bench COMMAND [options]\n\ncommands:\n"
                 "  prefill   prefill throughput with and without test-time training (JSON)\n\n"
                 "ttt-bench COMMAND --help explains each command's options.\n";
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "prefill") return prefill(argc - 1, argv + 1);
  throw ttt::Error(fmt::format("unknown command '{}' (try ttt-bench --help)", cmd));
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-bench", argc, argv, body); }
