// ttt-bench train: the training gradient's throughput. The pretrain or meta-fo
// objective's gradient of every parameter, one document at a time, on the device
// (FullGradient, float32, the profile split into GEMM and the rest) and on
// the double-precision CPU reference (ref::objective) that ttt-train uses
// otherwise, on the same documents, with the largest difference between them.
#include "bench/train.hpp"

#include "apps/app.hpp"
#include "bench/model_options.hpp"
#include "bench/roofline.hpp"
#include "lib/engine/full_gradient.hpp"
#include "lib/reference/meta.hpp"
#include "host/runtime.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>

namespace ttt::bench {

using json = nlohmann::json;

namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int train(int argc, char** argv) {
  namespace po = app::po;
  po::options_description opts("Options");
  add_model_options(opts, "built in memory (tiny-bytes, tiny, ...)");
  opts.add_options()
      ("mode", po::value<std::string>()->default_value("pretrain"), "objective: pretrain, meta (one prime block) or meta-fo")
      ("inner-lr", po::value<double>(), "meta, meta-fo: the test-time learning rate (default: the config's inner_lr)")
      ("seq-len", po::value<int64_t>()->default_value(1024), "tokens per document (each document has one more, the last target)")
      ("docs", po::value<int64_t>()->default_value(4), "documents timed on the device (after one untimed warm-up)")
      ("reference-docs", po::value<int64_t>()->default_value(1), "of those, timed on the CPU reference too (0: none)")
      ("seed", po::value<int64_t>()->default_value(0), "seed of the synthetic tokens and of a preset's weights")
      ("json", po::value<std::string>(), "also write the JSON to this file; an existing FILE is replaced only if this tool wrote it (or it is empty)");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!app::parse(argc, argv, opts, vm, "ttt-bench train (-m DIR | --preset NAME) [--mode pretrain|meta|meta-fo] [--inner-lr X] [--seq-len N]\n"
                  "                [--docs N] [--reference-docs N] [--json FILE]",
                  "Throughput of the training gradient (pretrain, meta or meta-fo, every parameter) on the device and on\n"
                  "the CPU reference, the device's GEMM share, and the largest difference between the two, as JSON."))
    return 0;
  const std::string name = model_name(vm);
  const int T = int(app::int_option(vm, "seq-len", 1, 1 << 20));
  const int64_t docs = app::int_option(vm, "docs", 1, 10000);
  const int64_t ref_docs = app::int_option(vm, "reference-docs", 0, docs);
  const uint64_t seed = uint64_t(app::int_option(vm, "seed", 0));
  {
    app::Paths paths;
    if (vm.count("model")) paths.model("-m", vm["model"].as<std::string>());
    paths.output(vm, "json", json_file_format()).check();
  }
  ref::Objective mode;
  try {
    mode = ref::parse_objective(vm["mode"].as<std::string>());
  } catch (const Error& e) {
    throw app::UsageError(std::string("--mode: ") + e.what());
  }
  const Model m = vm.count("model") ? Model::load(vm["model"].as<std::string>())
                                    : Model::random(preset(vm["preset"].as<std::string>()), seed);
  if (const std::string why = device_objective_limit(m.config, mode); !why.empty())
    throw app::UsageError("--mode meta: " + why + "; ttt-bench train measures the device's gradients only");
  if (vm.count("inner-lr") && mode == ref::Objective::pretrain)
    throw app::UsageError("--inner-lr: pretrain takes no test-time steps");
  const double inner_lr = vm.count("inner-lr") ? vm["inner-lr"].as<double>() : double(m.config.inner_lr);
  if (!std::isfinite(inner_lr) || inner_lr < 0)
    throw app::UsageError(fmt::format("--inner-lr {}: must be a finite number >= 0", inner_lr));
  std::mt19937_64 rng(seed + 1);
  std::vector<std::vector<int32_t>> documents(size_t(docs) + 1, std::vector<int32_t>(size_t(T) + 1));
  for (auto& d : documents)
    for (auto& t : d) t = int32_t(rng() % uint64_t(m.config.vocab_size));
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& device = ctx.device();
  app::announce_compiles(rt, "ttt-bench");
  FullGradient fg(rt, m.config, T);
  fg.objective(m, documents.back(), mode, inner_lr);  // warm-up: kernel builds, CLBlast's compile
  ctx.profiler().reset();
  ctx.profiler().enable(true);
  std::vector<ref::ObjectiveResult> dev_results;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < docs; ++i) {
    auto r = fg.objective(m, documents[size_t(i)], mode, inner_lr);
    if (i < ref_docs) dev_results.push_back(std::move(r));
    std::fprintf(stderr, "\r  device: %lld/%lld documents", (long long)i + 1, (long long)docs);
  }
  const double dev_s = since(t0);
  std::fprintf(stderr, "  %.2f s\n", dev_s);
  ctx.profiler().collect();
  const json profile = profile_split(ctx.profiler().totals_ms());
  ctx.profiler().enable(false);
  const double tokens = double(docs) * T;
  json j = {{"bench", "train"},
            {"objective", ref::to_string(mode)},
            {"inner_lr", mode != ref::Objective::pretrain ? inner_lr : 0.0},
            {"device", device.name},
            {"model", name},
            {"parameters", m.num_parameters()},
            {"seq_len", T},
            {"documents", docs},
            {"device_bytes", fg.device_bytes()},
            {"device_seconds", dev_s},
            {"device_tokens_per_s", tokens / dev_s},
            {"device_profile", profile}};
  if (ref_docs > 0) {
    double worst = 0;
    const auto r0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < ref_docs; ++i) {
      const auto r = ref::objective(m, documents[size_t(i)], mode, inner_lr, true);
      worst = std::max(worst, ref::max_relative_difference(dev_results[size_t(i)], r));
      std::fprintf(stderr, "\r  reference: %lld/%lld documents", (long long)i + 1, (long long)ref_docs);
    }
    const double ref_s = since(r0);
    std::fprintf(stderr, "  %.2f s\n", ref_s);
    const double ref_tps = double(ref_docs) * T / ref_s;
    j["reference_seconds"] = ref_s;
    j["reference_documents"] = ref_docs;
    j["reference_tokens_per_s"] = ref_tps;
    j["device_over_reference"] = tokens / dev_s / ref_tps;
    j["max_relative_gradient_difference"] = worst;
  }
  emit_json(vm, std::move(j));
  return 0;
}

}  // namespace ttt::bench
