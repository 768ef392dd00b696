// ttt-bench: benchmarks that print JSON. `prefill` times the same synthetic
// document through the engine with and without test-time training and sums
// per-kernel device time from profiling events.
#include "apps/app.hpp"
#include "bench/kernels.hpp"
#include "bench/model_options.hpp"
#include "bench/decode.hpp"
#include "bench/gemm_copies.hpp"
#include "bench/peak.hpp"
#include "bench/roofline.hpp"
#include "bench/train.hpp"
#include "bench/tune.hpp"
#include "host/runtime.hpp"
#include "ttt/error.hpp"
#include "ttt/engine.hpp"
#include "ttt/output.hpp"
#include "host/gemm.hpp"
#include "host/program.hpp"
#include "host/tuning.hpp"
#include "lib/engine/options.hpp"
#include "lib/eval/evaluate.hpp"
#include "lib/ops/ops.hpp"
#include "bench/parallel.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
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
  double cpu_seconds = 0;  // the process's CPU time (the device's threads on a CPU device): counts the work, not the waits
  std::map<std::string, double> kernel_ms;
};

// storage: the weights' and the rings' storage types (--weight-dtype, --kv-dtype).
Run time_prefill(ttt::Runtime& rt, const ttt::Model& m, const std::vector<int32_t>& tokens, bool ttt, bool profile,
                 const ttt::EngineOptions& storage) {
  ttt::host::Context& ctx = ttt::host::context(rt);
  ttt::EngineOptions o = storage;
  o.ttt = ttt;
  ttt::Engine e(rt, m, o);
  if (ctx.programs().built_from_source() > 0) ttt::warm_up(e);  // keeps PoCL's first-launch compiles out of the figures
  ctx.profiler().reset();
  ctx.profiler().enable(profile);
  const auto t0 = std::chrono::steady_clock::now();
  timespec c0{}, c1{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  const bool tty = isatty(fileno(stderr));
  auto nll = e.session().evaluate(tokens, [&](size_t done, size_t total) {
    if (tty) std::fprintf(stderr, "\r  %s: %zu/%zu tokens", ttt ? "ttt" : "no-ttt", done, total);
  });
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  r.cpu_seconds = double(c1.tv_sec - c0.tv_sec) + double(c1.tv_nsec - c0.tv_nsec) * 1e-9;
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
  ttt::bench::add_model_options(opts, "built in memory (tiny, 125m, ...)");
  opts.add_options()
      ("tokens", po::value<int64_t>()->default_value(4096), "length of the synthetic document (>= 2)")
      ("seed", po::value<int64_t>()->default_value(0), "seed of the synthetic tokens and of a preset's weights (>= 0)")
      ("json", po::value<std::string>(), "also write the JSON to this file; an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("no-profile", po::bool_switch(), "do not collect per-kernel times (profiling events cost a little)")
      ("only", po::value<std::string>()->default_value("both"), "ttt, no-ttt or both")
      ("parallel", po::value<std::string>(), "N or N,N,...: also score --docs documents N at a time (batched sessions) against one at a time")
      ("docs", po::value<size_t>()->default_value(4), "documents of --tokens each for --parallel")
      ("repeat", po::value<int>()->default_value(1), "timed runs per mode (median and spread reported)")
      ("no-warmup", po::bool_switch(), "skip the untimed warm-up run (kernel builds, CLBlast's compile)")
      ("no-ceiling", po::bool_switch(), "skip gemm_ceiling_gflops (CLBlast on the model's GEMM shapes)")
      ("no-peak", po::bool_switch(), "skip fma_peak_gflops (the device's FMA peak, ttt-bench peak)");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  ttt::app::add_head_tiles_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench prefill (-m DIR | --preset NAME) [--tokens N] [--json FILE]",
                       "Prefill throughput with and without test-time training on the same model and the same\n"
                       "synthetic tokens, per-kernel device time, device memory and peak host RSS, as JSON."))
    return 0;
  const std::string name = ttt::bench::model_name(vm);
  const uint64_t seed = uint64_t(ttt::app::int_option(vm, "seed", 0));
  const size_t n = size_t(ttt::app::int_option(vm, "tokens", 2));
  const std::string only = vm["only"].as<std::string>();
  ttt::EngineOptions wt;
  wt.weight_dtype = ttt::app::weight_dtype(vm);
  wt.kv_dtype = ttt::app::kv_dtype(vm);
  wt.head_tiles = ttt::app::head_tiles(vm);
  if (only != "both" && only != "ttt" && only != "no-ttt") throw ttt::app::UsageError("--only takes ttt, no-ttt or both");
  // Every option is checked before the model loads: a usage error is never found after minutes of timing.
  const int repeat = vm["repeat"].as<int>();
  if (repeat < 1 || repeat > 100) throw ttt::app::UsageError("--repeat must be in 1..100");
  std::vector<int> parallel;
  try {
    if (vm.count("parallel")) parallel = ttt::bench::parse_list(vm["parallel"].as<std::string>());
  } catch (const ttt::Error& e) {
    throw ttt::app::UsageError(e.what());
  }
  const size_t docs = vm["docs"].as<size_t>();
  if (docs < 1) throw ttt::app::UsageError("--docs must be at least 1");
  {
    ttt::app::Paths paths;
    if (vm.count("model")) paths.model("-m", vm["model"].as<std::string>());
    paths.output(vm, "json", ttt::bench::json_file_format()).check();
  }
  std::fprintf(stderr, "loading %s\n", name.c_str());
  // Every engine reads the weights from the file (or the preset's seed) as it uploads them: the
  // host holds no copy of its own beside the device's, so peak RSS is the device's plus the driver's.
  const ttt::Model m =
      vm.count("model") ? ttt::Model::load(vm["model"].as<std::string>(), ttt::Weights::deferred)
                        : ttt::Model::random(ttt::preset(vm["preset"].as<std::string>()), seed, 0.02f,
                                             ttt::Weights::deferred);
  std::vector<int32_t> tokens(n);
  std::mt19937_64 rng(seed + 1);
  for (auto& t : tokens) t = int32_t(rng() % uint64_t(m.config.vocab_size));
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& device = ctx.device();
  ttt::app::announce_compiles(rt, "ttt-bench");
  const bool profile = !vm["no-profile"].as<bool>();
  const ttt::host::TuningState& tuning = ttt::host::tuning_state(ctx);  // what the GEMMs below run with
  std::fprintf(stderr, "ttt-bench: CLBlast tuning record: %s\n", tuning.record().c_str());

  json j = {{"bench", "prefill"},
            {"device", device.name},
            {"model", name},
            {"parameters", m.num_parameters()},
            {"tokens", n},
            {"mini_batch", m.config.mini_batch_size},
            {"window", m.config.sliding_window_size},
            {"tuning", {{"record", tuning.source_name()}, {"name", tuning.record()}, {"file_state", tuning.name()}}}};
  if (!vm["no-warmup"].as<bool>()) {  // the engine builds every kernel; a GEMM makes CLBlast compile its program
    const std::vector<int32_t> head(tokens.begin(), tokens.begin() + 2);
    time_prefill(rt, m, head, only != "no-ttt", false, wt);
  }
  Run no, yes;
  ttt::bench::PrefillRuns no_runs, yes_runs;
  for (int r = 0; r < repeat; ++r) {
    if (only != "ttt") {
      no = time_prefill(rt, m, tokens, false, profile, wt);
      no_runs.seconds.push_back(no.seconds);
      no_runs.kernel_ms = no.kernel_ms;
    }
    if (only != "no-ttt") {
      yes = time_prefill(rt, m, tokens, true, profile, wt);
      yes_runs.seconds.push_back(yes.seconds);
      yes_runs.kernel_ms = yes.kernel_ms;
    }
  }
  if (only != "ttt") {
    j["no_ttt_tokens_per_s"] = double(n - 1) / no.seconds;
    j["no_ttt_seconds"] = no.seconds;
    j["no_ttt_cpu_seconds"] = no.cpu_seconds;
    j["no_ttt_mean_nll"] = no.mean_nll;
    if (profile) j["kernel_ms_no_ttt"] = no.kernel_ms;
  }
  if (only != "no-ttt") {
    j["ttt_tokens_per_s"] = double(n - 1) / yes.seconds;
    j["ttt_seconds"] = yes.seconds;
    j["ttt_cpu_seconds"] = yes.cpu_seconds;
    j["ttt_mean_nll"] = yes.mean_nll;
    if (profile) j["kernel_ms"] = yes.kernel_ms;
  }
  if (only == "both") j["ttt_over_no_ttt"] = no.seconds / yes.seconds;
  if (!parallel.empty()) {
    if (only != "ttt")
      j["parallel_no_ttt"] = ttt::bench::prefill_parallel(rt, m, n, docs, parallel, false, seed, profile, wt);
    if (only != "no-ttt")
      j["parallel_ttt"] = ttt::bench::prefill_parallel(rt, m, n, docs, parallel, true, seed, profile, wt);
  }
  ttt::bench::add_roofline(j, ctx, m.config, int64_t(n - 1), only != "ttt" ? &no_runs : nullptr,
                           only != "no-ttt" ? &yes_runs : nullptr, !vm["no-ceiling"].as<bool>());
  if (!vm["no-peak"].as<bool>()) {  // the achieved GFLOP/s against what the device's FMA units can do
    std::fprintf(stderr, "  fma peak: cl/peak.cl on every compute unit ...\n");
    j.update(ttt::bench::fma_peak(ctx));
    const double peak = j["fma_peak_gflops"].get<double>();
    for (const char* mode : {"no_ttt_", "ttt_"})
      if (j.contains(std::string(mode) + "achieved_gflops"))
        j[std::string(mode) + "over_fma_peak"] = j[std::string(mode) + "achieved_gflops"].get<double>() / peak;
    if (j.contains("gemm_ceiling_gflops")) j["gemm_ceiling_over_fma_peak"] = j["gemm_ceiling_gflops"].get<double>() / peak;
  }
  {
    ttt::EngineOptions o = wt;
    o.ttt = only != "no-ttt";
    ttt::Engine e(rt, m, o);
    // The plan the engine's GEMMs ran with (views as the engine set them) and whether head tiles were
    // asked for; device_parts["head tiles"] says whether they were taken (f32 head, column-major plan).
    const ttt::host::GemmPlan plan = ttt::host::gemm_plan(ctx);
    j["gemm_plan"] = {{"col_major", plan.col_major}, {"k_block", plan.k_block}, {"n_block", plan.n_block},
                      {"views", plan.views}};
    j["head_tiles"] = o.head_tiles;
    j["device_mb"] = double(e.device_bytes()) / 1048576.0;
    j["device_bytes"] = e.device_bytes();  // everything the engine and its own session allocate
    j["weight_bytes"] = e.weight_bytes();
    j["weight_dtype"] = ttt::app::dtype_flag(e.weight_dtype());
    j["kv_dtype"] = ttt::app::dtype_flag(e.kv_dtype());
    j["session_mb"] = double(e.session_bytes()) / 1048576.0;  // what one more document costs
    json parts = json::object();  // device_bytes by part (engine, then its own session)
    for (const auto& [part, n] : ttt::device_parts(e)) parts[part] = n;
    j["device_parts"] = parts;
  }
  j["peak_rss_mb"] = peak_rss_mb();
  ttt::bench::emit_json(vm, std::move(j));
  return 0;
}

// Windowed attention alone: forward and backward time and GFLOP/s for one chunk.
int attention(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("T", po::value<int64_t>()->default_value(1024), "queries in the chunk (mini-batch)")
      ("W", po::value<int64_t>()->default_value(8192), "attention window: the keys each query sees")
      ("H", po::value<int64_t>()->default_value(12), "attention heads")
      ("E", po::value<int64_t>()->default_value(64), "head dimension")
      ("pos", po::value<int64_t>()->default_value(8192), "position of the chunk's first query")
      ("repeat", po::value<int64_t>()->default_value(3), "timed repetitions (after one warm-up)")
      ("form", po::value<std::string>()->default_value("automatic"),
       "kernel form: automatic (the device's), flash, tiles, sweeps, or all (each in turn, under \"forms\")");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench attention [--T N --W N --H N --E N --pos P --form F]",
                       "Times attention_fwd and attention_bwd (dq + dk/dv) on random data, as JSON."))
    return 0;
  using ttt::app::int_option;
  constexpr int64_t kMax = 1 << 24;  // keeps T*D and the buffers within int and memory
  const int T = int(int_option(vm, "T", 1, kMax)), W = int(int_option(vm, "W", 1, kMax)),
            H = int(int_option(vm, "H", 1, 4096)), E = int(int_option(vm, "E", 1, 4096));
  const int64_t pos = int_option(vm, "pos", 0);
  const int reps = int(int_option(vm, "repeat", 1, 1 << 20));
  using FK = ttt::ops::ForwardKernel;
  using BK = ttt::ops::BackwardKernel;
  struct Form {
    const char* name;
    FK fwd;
    BK bwd;
  };
  const Form forms_known[] = {{"automatic", FK::automatic, BK::automatic},
                              {"flash", FK::flash, BK::flash},
                              {"tiles", FK::tiles, BK::tiles},
                              {"sweeps", FK::sweeps, BK::sweeps}};
  const std::string form = vm["form"].as<std::string>();
  std::vector<Form> forms;
  for (const Form& f : forms_known)
    if (form == f.name || form == "all") forms.push_back(f);
  if (forms.empty())
    throw ttt::app::po::error(fmt::format("--form: '{}' is not one of automatic, flash, tiles, sweeps, all", form));
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& device = ctx.device();
  ttt::app::announce_compiles(rt, "ttt-bench");
  const int D = H * E, C = W + T - 1;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto buf = [&](size_t n, const char* what) {
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    ttt::host::Buffer b(ctx, n * 4, what);
    b.write(v.data(), n * 4);
    return b;
  };
  auto q = buf(size_t(T) * D, "q"), kc = buf(size_t(C) * D, "k"), vc = buf(size_t(C) * D, "v"),
       out = buf(size_t(T) * D, "out"), lse = buf(size_t(T) * H, "lse"), dout = buf(size_t(T) * D, "dout"),
       dq = buf(size_t(T) * D, "dq"), dk = buf(size_t(T) * D, "dk"), dv = buf(size_t(T) * D, "dv"),
       dsum = buf(size_t(T) * H, "dsum");
  const ttt::ops::AttnShape s{T, H, E, C, W, pos};
  auto time = [&](auto&& f) {
    f();
    ctx.finish();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    ctx.finish();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  };
  // Score pairs: query t at position pos+t sees min(W, pos+t+1) keys.
  double pairs = 0;
  for (int t = 0; t < T; ++t) pairs += double(std::min<int64_t>(W, pos + t + 1));
  const double fwd_flop = 4.0 * pairs * D, bwd_flop = 10.0 * pairs * D;  // bwd recomputes QK^T twice, 3 more products
  json j = {{"bench", "attention"}, {"device", device.name}, {"T", T}, {"W", W}, {"H", H}, {"E", E}, {"pos", pos}};
  for (const Form& f : forms) {
    json r;
    try {
      const double fwd = time([&] { ttt::ops::attention_fwd(ctx, out, lse, q, kc, vc, s, f.fwd); });
      const double bwd = time([&] {
        ttt::ops::attention_bwd(ctx, dq, ttt::ops::mat(dk, D), ttt::ops::mat(dv, D), dsum, dout, out, q, lse, kc, vc,
                                s, f.bwd);
      });
      r = {{"fwd_ms", fwd * 1e3}, {"bwd_ms", bwd * 1e3}, {"fwd_gflops", fwd_flop / fwd * 1e-9},
           {"bwd_gflops", bwd_flop / bwd * 1e-9}};
    } catch (const ttt::Error& e) {  // a form the device refuses (its loop budget): said, not fatal under --form all
      if (forms.size() == 1) throw;
      r = {{"error", e.what()}};
    }
    if (form == "all")
      j["forms"][f.name] = r;
    else
      j.update(r);
  }
  std::cout << j.dump(2) << "\n";
  return 0;
}

int body(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::cout << "ttt-bench (ttt-cl) " << TTT_VERSION << "\n";
    return 0;
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << "usage: ttt-bench COMMAND [options]\n\ncommands:\n"
                 "  prefill   prefill throughput with and without test-time training (JSON)\n"
                 "  attention windowed attention forward/backward time and GFLOP/s (JSON)\n"
                 "  kernels   every kernel test case (tests/cases.hpp) timed (JSON)\n"
                 "  decode    per-token decode latency against context: ttt, swa, full attention (JSON, SVG)\n"
                 "  tune      tune CLBlast's SGEMM on the model's shapes, write the tuning file (JSON)\n"
                 "  peak      the device's float32 FMA peak, GFLOP/s (JSON)\n"
                 "  copies    what CLBlast's pad/transpose copies cost on the model's GEMMs (JSON)\n"
                 "  compare   ttt-cl against the PyTorch reference: tokens/s and NLL difference (JSON)\n"
                 "  roofline  FLOPs and bytes of every kernel per mini-batch, time at a GPU's peak (JSON)\n"
                 "  train     the training gradient (every parameter) on the device against the CPU reference (JSON)\n\n"
                 "ttt-bench COMMAND --help explains each command's options; ttt-bench --version shows the version.\n";
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  // A usage error points at the command's own help, which lists its options.
  auto sub = [&](int (*f)(int, char**)) {
    try {
      return f(argc - 1, argv + 1);
    } catch (const ttt::app::po::error& e) {
      std::fprintf(stderr, "ttt-bench: error: %s (see ttt-bench %s --help)\n", e.what(), cmd.c_str());
      return 2;
    }
  };
  if (cmd == "prefill") return sub(prefill);
  if (cmd == "attention") return sub(attention);
  if (cmd == "kernels") return sub(ttt::bench::kernels);
  if (cmd == "decode") return sub(ttt::bench::decode);
  if (cmd == "tune") return sub(ttt::bench::tune);
  if (cmd == "peak") return sub(ttt::bench::peak);
  if (cmd == "copies") return sub(ttt::bench::gemm_copies);
  if (cmd == "compare") return sub(ttt::bench::compare);
  if (cmd == "roofline") return sub(ttt::bench::roofline_table);
  if (cmd == "train") return sub(ttt::bench::train);
  throw ttt::app::UsageError(fmt::format("unknown command '{}'", cmd));
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-bench", argc, argv, body); }
