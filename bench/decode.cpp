// ttt-bench decode: per-token latency (median, p90) of single-token decoding
// at several context lengths for three modes of one model: ttt (window W,
// test-time training), swa (window W, no training) and full (window = the
// longest context: the key/value cache grows with the context). The context
// is prefilled with synthetic tokens or, with --fill random, its keys/values
// are pseudo-random (latency does not depend on them). Also: the test-time
// step amortised per token, the cost of reading the logits, GEMV vs 1-row
// GEMM, and the machine's memory bandwidth against the weights' size.
#include "bench/decode.hpp"
#include "bench/decode_plot.hpp"

#include "apps/app.hpp"
#include "bench/model_options.hpp"
#include "ttt/output.hpp"
#include "ttt/decode.hpp"
#include "host/runtime.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "host/buffer.hpp"
#include "host/gemm.hpp"
#include "lib/engine/options.hpp"
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <sys/resource.h>

namespace ttt::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double x = q * double(v.size() - 1);
  const size_t i = size_t(x);
  return i + 1 < v.size() ? v[i] + (x - double(i)) * (v[i + 1] - v[i]) : v[i];
}

// Host memory bandwidth, STREAM "copy" convention (bytes read + bytes
// written): one thread per hardware thread copies its share of a 512 MiB
// array; the best of 5 runs. On a CPU OpenCL device this is the device's memory.
double host_copy_gbs() {
  const size_t n = size_t(512) << 20;
  std::vector<char> a(n, 1), b(n, 0);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t lo = n / threads * t, hi = t + 1 == threads ? n : n / threads * (t + 1);
        std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
      });
    for (auto& th : pool) th.join();
    best = std::max(best, 2.0 * double(n) / (ms_since(t0) * 1e-3) * 1e-9);
  }
  return best;
}

// Read-only bandwidth, what streaming weights needs: one thread per hardware
// thread sums its share of a 512 MiB array of floats (8 independent sums, so
// the loop is bound by loads, not by adds); the best of 5 runs.
double host_read_gbs() {
  const size_t n = (size_t(512) << 20) / sizeof(float);
  std::vector<float> a(n, 1.f);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  double best = 0;
  std::vector<float> sink(threads);
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t lo = n / threads * t, hi = t + 1 == threads ? n : n / threads * (t + 1);
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
          for (int k = 0; k < 8; ++k) acc[k] += a[i + size_t(k)];
        for (; i < hi; ++i) acc[0] += a[i];
        sink[t] = acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
      });
    for (auto& th : pool) th.join();
    best = std::max(best, double(n * sizeof(float)) / (ms_since(t0) * 1e-3) * 1e-9);
  }
  if (sink[0] < 0) std::fprintf(stderr, " ");  // keep the sums alive
  return best;
}

// The same through the device queue: clEnqueueCopyBuffer of 256 MiB.
double device_copy_gbs(host::Context& ctx) {
  const size_t n = size_t(256) << 20;
  host::Buffer a(ctx, n, "bandwidth src"), b(ctx, n, "bandwidth dst");
  a.zero();
  b.zero();
  ctx.finish();
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    b.copy_from(a, n);
    ctx.finish();
    best = std::max(best, 2.0 * double(n) / (ms_since(t0) * 1e-3) * 1e-9);
  }
  return best;
}

// One-row products of the model's shapes three ways: CLBlast 1-row GEMM,
// CLBlast GEMV and the matvec kernels; median of 7 after a warm-up, in ms.
// Each timed call multiplies by `copies` distinct weights of the shape, at least
// 512 MB in all (as decode does: 12 layers of weights do not fit in a cache),
// and the time is per product; with GB/s of weight bytes.
json time_matvec(host::Context& ctx, const Config& c, DType wt, bool clblast) {
  const int D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  json out = json::array();
  auto runs_ms = [&](auto&& f) {  // one untimed run, then 7 timed
    f();
    ctx.finish();
    std::vector<double> ms;
    for (int r = 0; r < 7; ++r) {
      const auto t0 = Clock::now();
      f();
      ctx.finish();
      ms.push_back(ms_since(t0));
    }
    return ms;
  };
  auto median_ms = [&](auto&& f) { return quantile(runs_ms(f), 0.5); };
  double kern_min = 0;  // the least disturbed of the kernels' runs (a shared machine)
  auto kern_ms = [&](auto&& f) {
    const std::vector<double> ms = runs_ms(f);
    kern_min = quantile(ms, 0);
    return quantile(ms, 0.5);
  };
  struct Shape {
    const char* name;
    int K, N;
    bool rows;  // y = A x with A (N, K) (tied logits), else y = x A with A (K, N)
  };
  const size_t esize = wt == DType::F32 ? 4 : 2;
  for (const Shape& sh : {Shape{"qkv", D, 3 * D, false}, Shape{"wo", D, D, false}, Shape{"w13", D, 2 * I, false},
                          Shape{"w2", I, D, false}, Shape{"logits (tied)", D, V, true}}) {
    const size_t elems = size_t(sh.K) * size_t(sh.N), bytes = elems * esize;
    const size_t copies = std::max<size_t>(1, (size_t(512) << 20) / bytes);
    std::vector<host::Buffer> As, wides;
    for (size_t i = 0; i < copies; ++i) {
      As.emplace_back(ctx, bytes, "matvec A");
      std::vector<float> v(elems, 0.01f);
      std::vector<uint16_t> h;
      if (wt == DType::F32)
        As.back().write(v.data(), bytes);
      else {
        h = ref::narrow(v, wt);
        As.back().write(h.data(), bytes);
      }
    }
    host::Buffer x(ctx, size_t(sh.K) * 4, "matvec x"), y(ctx, size_t(sh.N) * 4, "matvec y");
    x.fill(0.5f, size_t(sh.K));
    using host::Trans;
    const bool f32 = clblast && wt == DType::F32;  // CLBlast multiplies f32 weights only
    const double gemm = !f32 ? NAN : median_ms([&] {
      for (auto& A : As)
        if (sh.rows)
          host::gemm(ctx, Trans::N, Trans::T, 1, size_t(sh.N), size_t(sh.K), 1.f, x, 0, size_t(sh.K), A, 0,
                     size_t(sh.K), 0.f, y, 0, size_t(sh.N));
        else
          host::gemm(ctx, Trans::N, Trans::N, 1, size_t(sh.N), size_t(sh.K), 1.f, x, 0, size_t(sh.K), A, 0,
                     size_t(sh.N), 0.f, y, 0, size_t(sh.N));
    }) / double(copies);
    const double gemv = !f32 ? NAN : median_ms([&] {
      for (auto& A : As)
        if (sh.rows)
          host::gemv(ctx, Trans::N, size_t(sh.N), size_t(sh.K), 1.f, A, 0, size_t(sh.K), x, 0, 0.f, y, 0);
        else
          host::gemv(ctx, Trans::T, size_t(sh.K), size_t(sh.N), 1.f, A, 0, size_t(sh.N), x, 0, 0.f, y, 0);
    }) / double(copies);
    const double kern = kern_ms([&] {
      for (auto& A : As)
        if (sh.rows)
          ops::matvec_rows(ctx, y, A, x, 0, sh.N, sh.K, sh.K, wt);
        else
          ops::matvec_cols(ctx, y, x, 0, A, sh.K, sh.N, sh.N, wt);
    }) / double(copies);
    kern_min /= double(copies);
    const double mb = double(bytes) / 1e6;
    std::fprintf(stderr,
                 "  %-14s %5d x %6d (%6.1f MB, %3zu copies): gemm %8.2f ms, gemv %8.2f ms, kernels %8.3f ms (%5.1f GB/s; min %5.1f GB/s)\n",
                 sh.name, sh.K, sh.N, mb, copies, gemm, gemv, kern, mb / kern, mb / kern_min);
    out.push_back({{"shape", sh.name}, {"K", sh.K}, {"N", sh.N}, {"megabytes", mb}, {"copies", copies},
                   {"gemm_ms", f32 ? json(gemm) : json(nullptr)}, {"gemv_ms", f32 ? json(gemv) : json(nullptr)},
                   {"kernels_ms", kern}, {"kernels_gbs", mb / kern}, {"kernels_ms_min", kern_min},
                   {"kernels_gbs_max", mb / kern_min}});
  }
  return out;
}


// This process's CPU time (every thread: the host's and an OpenCL CPU device's), in ms.
double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (double(u.ru_utime.tv_sec) + double(u.ru_stime.tv_sec)) * 1e3 +
         (double(u.ru_utime.tv_usec) + double(u.ru_stime.tv_usec)) * 1e-3;
}

// Latency of `tokens` single-token decodes (forward + logits: the host's one
// wait per token) after `warmup` untimed ones, from position `context`.
std::vector<double> time_tokens(Session& s, int tokens, int warmup, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> ms;
  for (int i = 0; i < warmup + tokens; ++i) {
    const int32_t id = int32_t(rng() % uint64_t(vocab));
    const auto t0 = Clock::now();
    s.forward({&id, 1});
    const auto logits = s.logits(0);
    if (i >= warmup) ms.push_back(ms_since(t0));
  }
  return ms;
}

void fill_context(Session& s, int64_t context, const std::string& fill, int vocab, uint64_t seed) {
  if (fill == "random") return s.fill_random(context, seed);
  // Prefill synthetic tokens through the decoder: with training on, every
  // full mini-batch takes its step, as in generation.
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(context));
  for (auto& t : ids) t = int32_t(rng() % uint64_t(vocab));
  Decoder d(s);
  const size_t B = size_t(s.mini_batch());
  for (size_t i = 0; i < ids.size(); i += B) d.append({ids.data() + i, std::min(B, ids.size() - i)});
  d.logits();
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || x < 1)
      throw app::UsageError(fmt::format("--contexts: '{}' is not a positive integer", item));
    v.push_back(x);
  }
  if (v.empty()) throw app::UsageError("--contexts: give at least one context length");
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

int decode(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>(), "model directory")
      ("preset", po::value<std::string>(), "or: a randomly initialised preset (tiny, 125m, ...), built in memory")
      ("contexts", po::value<std::string>()->default_value("1024,4096,16384,65536"), "context lengths, comma-separated")
      ("modes", po::value<std::string>()->default_value("ttt,swa,full"), "which of ttt, swa, full to run")
      ("fill", po::value<std::string>()->default_value("random"),
       "random: pseudo-random keys/values in the window (fast); prefill: prefill synthetic tokens (slow on a CPU)")
      ("tokens", po::value<int>()->default_value(16), "timed tokens per point (after 2 untimed)")
      ("no-step", po::bool_switch(), "do not time the test-time step")
      ("step-repeat", po::value<int>()->default_value(1), "timed test-time steps (median)")
      ("matvec", po::value<std::string>()->default_value("kernels"),
       "single-token products: kernels (cl/matvec.cl), gemv (CLBlast) or gemm (CLBlast, 1 row), to compare")
      ("no-bandwidth", po::bool_switch(), "do not measure the memory bandwidth")
      ("profile", po::bool_switch(), "also print device time per kernel and token, at the first context of each mode")
      ("matvec-only", po::bool_switch(), "only time the one-row products of the model's shapes (kernels; GB/s)")
      ("matvec-clblast", po::bool_switch(), "with --matvec-only, also CLBlast's 1-row GEMM and GEMV (f32, slow)")
      ("seed", po::value<uint64_t>()->default_value(0), "seed of the tokens, keys/values and a preset's weights")
      ("json", po::value<std::string>(), "also write the JSON to this file; an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("plot", po::value<std::string>(), "write an SVG of latency against context, one line per mode; an existing FILE is replaced only if this tool wrote it (or it is empty)");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm,
                       "ttt-bench decode (-m DIR | --preset NAME) [--contexts 1024,4096,...] [--fill random|prefill] "
                       "[--json FILE] [--plot FILE.svg]",
                       "Per-token decode latency (median and p90 over --tokens tokens) against context length for\n"
                       "ttt (window W + test-time training), swa (window W) and full attention (window = the longest\n"
                       "context), on the same model. The test-time step (once per B tokens) is timed on its own and\n"
                       "reported amortised per token. Also reports the time to read one token's logits, the memory\n"
                       "bandwidth (host memcpy, STREAM copy convention; and a device buffer copy) and the time to\n"
                       "stream the weights once at that bandwidth, against which decode is compared."))
    return 0;
  // Every option is checked before the model loads: a usage error (exit 2) is never found after it.
  if (vm.count("model") == vm.count("preset")) throw app::UsageError("give exactly one of --model and --preset");
  const auto contexts = parse_list(vm["contexts"].as<std::string>());
  const std::string fill = vm["fill"].as<std::string>();
  if (fill != "random" && fill != "prefill") throw app::UsageError("--fill takes random or prefill");
  std::vector<std::string> modes;
  {
    std::stringstream ss(vm["modes"].as<std::string>());
    std::string m;
    while (std::getline(ss, m, ','))
      if (m == "ttt" || m == "swa" || m == "full")
        modes.push_back(m);
      else
        throw app::UsageError(fmt::format("--modes: unknown mode '{}' (ttt, swa, full)", m));
  }
  const int tokens = vm["tokens"].as<int>();
  if (tokens < 1) throw app::UsageError("--tokens must be at least 1");
  const std::optional<DType> weight_dtype = app::weight_dtype(vm);
  const DType kv_dtype = app::kv_dtype(vm);
  const std::string matvec = vm["matvec"].as<std::string>();
  if (matvec != "kernels" && matvec != "gemv" && matvec != "gemm")
    throw app::UsageError("--matvec takes kernels, gemv or gemm");
  const uint64_t seed = vm["seed"].as<uint64_t>();
  {  // Outputs first: a bad one fails now, not after the whole sweep.
    app::Paths paths;
    if (vm.count("model")) paths.model("-m", vm["model"].as<std::string>());
    paths.output(vm, "json", json_file_format()).output(vm, "plot", app::svg_format()).check();
  }
  const std::string name =
      vm.count("model") ? vm["model"].as<std::string>() : "preset:" + vm["preset"].as<std::string>();
  std::fprintf(stderr, "loading %s\n", name.c_str());
  const Model m = vm.count("model") ? Model::load(vm["model"].as<std::string>())
                                    : Model::random(preset(vm["preset"].as<std::string>()), seed);
  const Config& c = m.config;
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& device = ctx.device();

  if (vm["matvec-only"].as<bool>()) {
    // The read bandwidth just before and after, for the kernels' share of it on a shared machine.
    const double before = host_read_gbs();
    json products = time_matvec(ctx, c, weight_dtype.value_or(m.dtype), vm["matvec-clblast"].as<bool>());
    const double after = host_read_gbs();
    std::fprintf(stderr, "  read bandwidth (host probe): %.1f GB/s before, %.1f GB/s after\n", before, after);
    json j = {{"bench", "decode-matvec"}, {"device", device.name}, {"model", name}, {"products", products},
              {"bandwidth_host_read_gbs_before", before}, {"bandwidth_host_read_gbs_after", after}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  json j = {{"bench", "decode"}, {"device", device.name},  {"model", name}, {"parameters", m.num_parameters()},
            {"window", c.sliding_window_size}, {"mini_batch", c.mini_batch_size}, {"fill", fill},
            {"matvec", matvec}, {"tokens_per_point", tokens}};
  std::vector<Point> pts;
  double stored_bytes = double(m.num_parameters()) * sizeof(float);  // the weights as the engines store them
  for (const std::string& mode : modes) {
    EngineOptions o;
    o.ttt = mode == "ttt";
    o.weight_dtype = weight_dtype;
    o.kv_dtype = kv_dtype;
    if (mode == "full") o.window = int(std::max<int64_t>(contexts.back() + tokens + 2, c.sliding_window_size));
    Engine e(rt, m, o);
    set_matvec(e, matvec == "kernels" ? MatVec::Kernels : matvec == "gemv" ? MatVec::ClblastGemv : MatVec::Gemm);
    Session& s = e.session();
    std::fprintf(stderr, "%s: window %d, %s, %s, %.0f MB on the device\n", mode.c_str(), e.window(),
                 app::weight_label(e.weight_dtype(), m.dtype).c_str(), app::kv_label(e.kv_dtype()).c_str(),
                 e.device_bytes() / 1048576.0);
    j["device_bytes"][mode] = e.device_bytes();
    stored_bytes = double(e.weight_bytes());
    j["weight_dtype"] = app::dtype_flag(e.weight_dtype());
    j["kv_dtype"] = app::dtype_flag(e.kv_dtype());
    for (int64_t context : contexts) {
      fill_context(s, context, fill, c.vocab_size, seed + uint64_t(context));
      const bool profile = vm["profile"].as<bool>() && context == contexts.front();
      std::vector<double> ms;
      if (profile) {
        // Untimed: profiling events and the GEMMs' host timing add waits.
        const double probe_gbs = host_read_gbs();
        ctx.profiler().reset();
        ctx.profiler().enable(true);
        time_tokens(s, tokens, 0, c.vocab_size, seed + 7);
        ctx.profiler().collect();
        ctx.profiler().enable(false);
        double total = 0;
        for (const auto& [k, v] : ctx.profiler().totals_ms()) total += v;
        std::fprintf(stderr, "  %s device time per token: %.2f ms (read bandwidth probe: %.1f GB/s)\n", mode.c_str(),
                     total / tokens, probe_gbs);
        // The bytes each streaming kernel must read per token: the head (logits), every other weight
        // (the block matvecs; norm gains are a rounding error) and the keys and values in the window.
        const double esize = e.weight_dtype() == DType::F32 ? 4 : 2, kv_size = e.kv_dtype() == DType::F32 ? 4 : 2;
        const double head = double(c.vocab_size) * c.hidden_size * esize;
        const double keys = double(std::min<int64_t>(context + 1, e.window()));
        const std::map<std::string, double> bytes = {
            {"matvec_rows", c.tie_word_embeddings ? head : 0},
            {"matvec_cols", double(e.weight_bytes()) - head},
            {"attention_decode_split", 2.0 * c.num_hidden_layers * keys * c.hidden_size * kv_size}};
        json prof = json::object();
        for (const auto& [k, v] : ctx.profiler().totals_ms()) {
          const double ms_tok = v / tokens;
          const auto b = bytes.find(k);
          prof[k]["ms_per_token"] = ms_tok;
          if (b == bytes.end() || b->second <= 0) {
            std::fprintf(stderr, "    %-28s %8.3f ms\n", k.c_str(), ms_tok);
            continue;
          }
          const double gbs = b->second / (ms_tok * 1e-3) * 1e-9;
          prof[k]["megabytes_per_token"] = b->second / 1e6;
          prof[k]["gbs"] = gbs;
          std::fprintf(stderr, "    %-28s %8.3f ms  %7.1f MB  %5.1f GB/s (%3.0f%% of the probe; %.3f ms at it)\n",
                       k.c_str(), ms_tok, b->second / 1e6, gbs, 100 * gbs / probe_gbs,
                       b->second / (probe_gbs * 1e9) * 1e3);
        }
        j["profile"][mode] = {{"context", context}, {"device_ms_per_token", total / tokens},
                              {"read_gbs_probe", probe_gbs}, {"kernels", prof}};
        fill_context(s, context, fill, c.vocab_size, seed + uint64_t(context));
      }
      time_tokens(s, 2, 0, c.vocab_size, seed + 5);  // untimed warm-up
      const double cpu0 = cpu_ms();
      const auto wall0 = Clock::now();
      ms = time_tokens(s, tokens, 0, c.vocab_size, seed + 7);
      const double busy = (cpu_ms() - cpu0) / (ms_since(wall0) * std::max(1u, std::thread::hardware_concurrency()));
      pts.push_back({mode, context, quantile(ms, 0.5), quantile(ms, 0.9), quantile(ms, 0), busy});
      // What a token must read: every weight once (a ttt session's f32 prime copies counted as stored) and
      // the keys and values in its window, as the rings store them.
      const double read_bytes = double(e.weight_bytes()) + 2.0 * c.num_hidden_layers *
                                                               double(std::min<int64_t>(context + 1, e.window())) *
                                                               c.hidden_size * (e.kv_dtype() == DType::F32 ? 4.0 : 2.0);
      const double gbs = read_bytes / (pts.back().median * 1e-3) * 1e-9;
      std::fprintf(stderr,
                   "  %-4s context %7lld: %8.2f ms/token median, %8.2f p90, %8.2f min; %.0f MB a token, %.1f GB/s; "
                   "CPU busy %3.0f%%\n",
                   mode.c_str(), (long long)context, pts.back().median, pts.back().p90, pts.back().min,
                   read_bytes / 1e6, gbs, 100 * busy);
      j["results"].push_back({{"mode", mode}, {"context", context}, {"latency_ms_median", pts.back().median},
                              {"latency_ms_p90", pts.back().p90}, {"latency_ms_min", pts.back().min},
                              {"megabytes_per_token", read_bytes / 1e6}, {"gbs", gbs}, {"cpu_busy", busy}});
    }
    if (mode == "ttt" && !vm["no-step"].as<bool>() && c.num_prime_blocks() > 0) {
      // The step of one mini-batch as generation takes it: replay (forward with
      // activations kept), score, backward, SGD, sync. Median of --step-repeat.
      const int B = c.mini_batch_size;
      const int64_t at = (contexts.back() + B - 1) / B * B;
      std::mt19937_64 rng(seed + 3);
      std::vector<int32_t> ids(size_t(B) + 1);
      for (auto& t : ids) t = int32_t(rng() % uint64_t(c.vocab_size));
      std::vector<double> ms;
      for (int r = 0; r < std::max(1, vm["step-repeat"].as<int>()); ++r) {
        s.fill_random(at, seed);
        const auto t0 = Clock::now();
        s.replay({ids.data(), size_t(B)}, {ids.data() + 1, size_t(B)});
        s.sync();
        ms.push_back(ms_since(t0));
      }
      const double step = quantile(ms, 0.5);
      j["ttt_step_ms"] = step;
      j["ttt_step_ms_per_token"] = step / B;
      std::fprintf(stderr, "  ttt step (every %d tokens): %.1f ms, amortised %.2f ms per token\n", B, step, step / B);
    }
    if (mode == modes.front()) {
      // One token's logits: the vocabulary GEMV plus reading V floats, and the read alone.
      std::vector<double> all, read;
      host::Buffer buf(ctx, size_t(c.vocab_size) * sizeof(float), "logits read");
      buf.zero();
      std::vector<float> host(size_t(c.vocab_size));
      for (int r = 0; r < 10; ++r) {
        auto t0 = Clock::now();
        s.logits(0);
        all.push_back(ms_since(t0));
        t0 = Clock::now();
        buf.read(host.data(), host.size() * sizeof(float));
        read.push_back(ms_since(t0));
      }
      j["logits_ms"] = quantile(all, 0.5);
      j["logits_read_ms"] = quantile(read, 0.5);
      std::fprintf(stderr, "  logits of one token: %.2f ms (GEMV over the vocabulary + read); reading %d floats alone: %.3f ms\n",
                   quantile(all, 0.5), c.vocab_size, quantile(read, 0.5));
    }
  }
  if (!vm["no-bandwidth"].as<bool>()) {
    const double host_gbs = host_copy_gbs(), dev_gbs = device_copy_gbs(ctx), read_gbs = host_read_gbs();
    const double bytes = stored_bytes;
    // Streaming weights reads them: the read-only figure is the one to compare with.
    const double stream_ms = bytes / (read_gbs * 1e9) * 1e3;
    j["bandwidth_host_memcpy_gbs"] = host_gbs;
    j["bandwidth_device_copy_gbs"] = dev_gbs;
    j["bandwidth_host_read_gbs"] = read_gbs;
    j["weight_bytes"] = bytes;
    j["weights_stream_ms"] = stream_ms;
    std::fprintf(stderr,
                 "bandwidth: read %.1f GB/s (sum over 512 MiB, %u threads); copy (read + write bytes) host memcpy %.1f "
                 "GB/s, device buffer copy %.1f GB/s; weights %.0f MB stream in %.1f ms at the read figure\n",
                 read_gbs, std::max(1u, std::thread::hardware_concurrency()), host_gbs, dev_gbs, bytes / 1e6, stream_ms);
    if (!pts.empty()) {
      j["decode_over_weights_stream"] = pts.front().median / stream_ms;
      j["decode_over_weights_stream_min"] = pts.front().min / stream_ms;
      std::fprintf(stderr, "decode (%s, context %lld) over the weights' stream time: %.2fx (median), %.2fx (min)\n",
                   pts.front().mode.c_str(), (long long)pts.front().context, pts.front().median / stream_ms,
                   pts.front().min / stream_ms);
    }
  }
  // Ratios within this run.
  auto at = [&](const std::string& mode, int64_t ctxlen) -> const Point* {
    for (const auto& p : pts)
      if (p.mode == mode && p.context == ctxlen) return &p;
    return nullptr;
  };
  const int64_t lo = contexts.front(), hi = contexts.back();
  if (at("ttt", lo) && at("ttt", hi)) {
    j["ttt_longest_over_shortest"] = at("ttt", hi)->median / at("ttt", lo)->median;
    j["ttt_longest_over_shortest_min"] = at("ttt", hi)->min / at("ttt", lo)->min;
  }
  if (at("ttt", hi) && at("full", hi)) {
    j["full_over_ttt_at_longest"] = at("full", hi)->median / at("ttt", hi)->median;
    j["full_over_ttt_at_longest_min"] = at("full", hi)->min / at("ttt", hi)->min;
  }
  if (at("swa", hi) && at("full", hi)) j["full_over_swa_at_longest"] = at("full", hi)->median / at("swa", hi)->median;

  // The table.
  std::fprintf(stderr, "\n%-6s", "mode");
  for (int64_t x : contexts) std::fprintf(stderr, " %21lld", (long long)x);
  std::fprintf(stderr, "   (ms per token, median / p90 / min)\n");
  for (const std::string& mode : modes) {
    std::fprintf(stderr, "%-6s", mode.c_str());
    for (int64_t x : contexts)
      if (const Point* p = at(mode, x)) std::fprintf(stderr, " %7.1f/%6.1f/%6.1f", p->median, p->p90, p->min);
    std::fprintf(stderr, "\n");
  }
  emit_json(vm, std::move(j));
  if (vm.count("plot"))
    write_file_atomic(vm["plot"].as<std::string>(),
                      app::svg_signed(svg_plot(pts, fmt::format("decode latency, {}", name), device.name)));
  return 0;
}

}  // namespace ttt::bench
