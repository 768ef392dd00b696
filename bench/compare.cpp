// ttt-bench compare: ttt-cl and bench/pytorch_reference.py (float32 eager
// PyTorch on the host CPU) on the same model directory and the same tokens in
// one run: tokens/s of each, their ratio and the largest per-token NLL difference.
#include "bench/gemm_timing.hpp"
#include "bench/model_options.hpp"
#include "bench/tune.hpp"
#include "apps/app.hpp"
#include "ttt/output.hpp"
#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/model.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>
#include <unistd.h>

#ifndef TTT_PYTORCH_REFERENCE
#define TTT_PYTORCH_REFERENCE "bench/pytorch_reference.py"
#endif

namespace ttt::bench {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

int compare(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  add_model_options(opts, "saved to a temporary directory");
  opts.add_options()
      ("tokens", po::value<size_t>()->default_value(2049), "length of the synthetic document")
      ("seed", po::value<uint64_t>()->default_value(0), "seed of the tokens and of a preset's weights")
      ("no-ttt", po::bool_switch(), "both sides without test-time training")
      ("threads", po::value<int>()->default_value(0), "PyTorch threads (0: the number of cores)")
      ("python", po::value<std::string>()->default_value(""), "Python with torch (default: /usr/bin/python3)")
      ("script", po::value<std::string>()->default_value(TTT_PYTORCH_REFERENCE), "the PyTorch reference script that --python runs (bench/pytorch_reference.py)")
      ("torch-device", po::value<std::string>()->default_value("cpu"),
       "where PyTorch runs: cpu, or cuda (an NVIDIA GPU, float32 with TF32 off) to set ttt-cl on a GPU beside it")
      ("json", po::value<std::string>(), "also write the JSON to this file; an existing FILE is replaced only if this tool wrote it (or it is empty)");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench compare (-m DIR | --preset NAME) [--tokens N]",
                       "Per-token NLL of the same synthetic document from ttt-cl and from the PyTorch reference\n"
                       "(bench/pytorch_reference.py, float32 eager, CPU or --torch-device cuda): tokens/s of each and the largest\n"
                       "NLL difference, as JSON. Needs python3-torch; ttt-cl itself does not."))
    return 0;
  const std::string name = model_name(vm);
  const size_t n = vm["tokens"].as<size_t>();
  if (n < 2 || n > 10'000'000) throw Error("--tokens must be in 2..10000000");
  const uint64_t seed = vm["seed"].as<uint64_t>();
  const bool ttt = !vm["no-ttt"].as<bool>();
  std::string python = vm["python"].as<std::string>();
  if (python.empty()) python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  int threads = vm["threads"].as<int>();
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));

  {  // Outputs first: a bad one fails now, not after both runs.
    app::Paths paths;
    if (vm.count("model")) paths.model("-m", vm["model"].as<std::string>());
    paths.input(vm, "script").output(vm, "json", json_file_format()).check();
  }
  // The model, on disk for PyTorch; a preset goes to a temporary directory.
  char tmpl[] = "/tmp/ttt-compare-XXXXXX";
  if (!mkdtemp(tmpl)) throw Error("cannot create a temporary directory");
  const fs::path tmp(tmpl);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{tmp};
  std::string dir;
  Model m;
  if (vm.count("model")) {
    dir = vm["model"].as<std::string>();
    m = Model::load(dir);
  } else {
    m = Model::random(preset(vm["preset"].as<std::string>()), seed);
    dir = (tmp / "model").string();
    m.save(dir);
  }
  std::vector<int32_t> tokens(n);
  std::mt19937_64 rng(seed + 1);  // the same document as ttt-bench prefill
  for (auto& t : tokens) t = int32_t(rng() % uint64_t(m.config.vocab_size));
  const fs::path tok_file = tmp / "tokens.txt", nll_file = tmp / "nll.txt";
  {
    std::ofstream f(tok_file);
    for (auto t : tokens) f << t << "\n";
  }

  json j = {{"bench", "compare"}, {"model", name},
            {"tokens", n}, {"ttt", ttt}, {"load_before", load_average()}};

  // ttt-cl: a two-token warm-up builds the forward's kernels (from the disk caches when warm).
  ttt::Runtime rt(ttt::app::device_spec(vm));
  const ttt::Device& device = rt.device();
  EngineOptions o;
  o.ttt = ttt;
  std::vector<float> ours;
  double ours_s = 0;
  {
    Engine e(rt, m, o);
    const std::vector<int32_t> two(tokens.begin(), tokens.begin() + 2);
    Engine(rt, m, o).session().evaluate(two);
    std::fprintf(stderr, "compare: ttt-cl on %s ...\n", device.name.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    ours = e.session().evaluate(tokens);
    ours_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  j["load_between"] = load_average();

  // PyTorch.
  const std::string torch_device = vm["torch-device"].as<std::string>();
  if (torch_device != "cpu" && torch_device != "cuda") throw Error("--torch-device must be cpu or cuda");
  const std::string cmd = fmt::format("{} {} -m {} --tokens {} --threads {} --device {} --out {}{}", quote(python),
                                      quote(vm["script"].as<std::string>()), quote(dir), quote(tok_file.string()),
                                      threads, torch_device, quote(nll_file.string()), ttt ? "" : " --no-ttt");
  std::fprintf(stderr, "compare: $ %s\n", cmd.c_str());
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw Error("cannot start the PyTorch reference");
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  if (rc != 0) throw Error(fmt::format("the PyTorch reference failed (exit {}): is python3-torch installed? {}", rc, out));
  json pt;
  try {
    pt = json::parse(out.substr(out.rfind('{')));
  } catch (const std::exception&) {
    throw Error("cannot read the PyTorch reference's JSON line: " + out);
  }
  std::vector<double> theirs;
  {
    std::ifstream f(nll_file);
    for (double v; f >> v;) theirs.push_back(v);
  }
  if (theirs.size() != ours.size())
    throw Error(fmt::format("PyTorch gave {} NLLs, ttt-cl {}", theirs.size(), ours.size()));
  double max_diff = 0, mean_ours = 0, mean_theirs = 0;
  size_t at = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double d = std::fabs(double(ours[i]) - theirs[i]);
    if (!(d <= max_diff)) max_diff = d, at = i;
    mean_ours += ours[i] / double(ours.size());
    mean_theirs += theirs[i] / double(ours.size());
  }
  const double ours_tps = double(n - 1) / ours_s, theirs_tps = pt["tokens_per_s"].get<double>();
  j["ttt_cl"] = {{"device", device.name}, {"seconds", ours_s}, {"tokens_per_s", ours_tps}, {"mean_nll", mean_ours}};
  j["pytorch"] = {{"torch", pt["torch"]}, {"device", pt.value("device", torch_device)}, {"threads", pt["threads"]},
                  {"seconds", pt["seconds"]},
                  {"tokens_per_s", theirs_tps}, {"mean_nll", mean_theirs}};
  j["speed_ratio"] = ours_tps / theirs_tps;  // > 1: ttt-cl is faster
  j["max_abs_nll_diff"] = max_diff;
  j["max_abs_nll_diff_at"] = at;
  j["load_after"] = load_average();
  emit_json(vm, std::move(j));
  return 0;
}

}  // namespace ttt::bench
