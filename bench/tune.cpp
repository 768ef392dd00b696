// ttt-bench tune: CLBlast's own tuners on the model's GEMM shapes, then the
// candidates they found (plus two hand-made seeds) timed through the real
// routine on every shape; the best by the model's GEMM time per mini-batch
// goes into the tuning file. Prints default / tuned / OpenBLAS GFLOP/s per shape.
//
// Search strategy, bounded by --budget-min:
//  1. clblast_tuner_xgemm (random subset: 1.5.3's -fraction F explores 1/F of
//     each of its four variations) on the --tuner-shapes heaviest shapes, and
//     clblast_tuner_xgemm_direct on the heaviest, each under a time cap; on
//     the cap the tuner is stopped and the configurations it had measured are kept;
//  2. the --top best of each tuner run, the seeds and CLBlast's defaults are
//     each applied with OverrideParameters and timed on every distinct shape;
//     the objective is sum(count * seconds): one mini-batch's GEMM time;
//  3. the --plans best of those again under each host::GemmPlan of kPlans
//     (column-major hand-over, K and N panels), timed the same way; a
//     candidate that has a plan (the file's record, the built-in one) under the others.
#include "bench/gemm_timing.hpp"
#include "bench/model_flops.hpp"
#include "bench/model_options.hpp"
#include "bench/tune.hpp"
#include "apps/app.hpp"
#include "host/gemm.hpp"
#include "host/tuning.hpp"
#include "ttt/config.hpp"
#include "host/runtime.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace ttt::bench {

namespace {

using json = nlohmann::json;
using host::ClblastKernels;
using host::ClblastParams;

struct Candidate {
  std::string origin;      // "tuner xgemm gemm_logits ..." or "seed ..."
  ClblastKernels kernels;  // Xgemm or XgemmDirect, plus GemmRoutine (and TttGemm: the plan)
  double tuner_gflops = 0;
  double objective = 0;  // seconds of one mini-batch's GEMMs
  std::vector<double> seconds;  // per distinct shape
};

double elapsed(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs one tuner under `cap` seconds and parses its table from stdout (its
// JSON is only written at the very end, which a capped run may not reach).
std::vector<Candidate> run_tuner(const std::string& tuner, const std::string& kernel, const GemmShape& s,
                                 const host::DeviceInfo& dev, double fraction, double cap, bool verbose) {
  // CLBlast's kernels are column-major: row-major C (M x N) is its N x M. The
  // tuner writes its own JSON into its working directory: a scratch one, removed
  // after, so that nothing lands where the user ran ttt-bench.
  namespace fs = std::filesystem;
  std::string scratch = (fs::temp_directory_path() / "ttt-tuner-XXXXXX").string();
  if (!::mkdtemp(scratch.data())) throw Error(fmt::format("cannot create a scratch directory for '{}'", tuner));
  struct Remove {
    std::string dir;
    ~Remove() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove{scratch};
  const std::string cmd =
      fmt::format("cd '{}' && timeout -s TERM {} stdbuf -oL {} -platform {} -device {} -precision 32 -m {} -n {} "
                  "-k {} -fraction {} -runs 1 2>&1",
                  scratch, int(cap), tuner, dev.platform_index, dev.device_index, s.N, s.M, s.K, fraction);
  std::fprintf(stderr, "  $ %s\n", cmd.c_str());
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw Error(fmt::format("cannot start '{}'", tuner));
  std::vector<std::string> names;
  std::vector<Candidate> found;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    std::string l(line);
    if (verbose) std::fputs(line, stderr);
    if (l.rfind("* Parameters explored:", 0) == 0) {
      std::istringstream ss(l.substr(22));
      names.clear();
      for (std::string n; ss >> n;) names.push_back(n);
      continue;
    }
    if (l.find("results match") == std::string::npos || names.empty()) continue;
    std::vector<std::string> cols;
    for (size_t a = 0, b; (b = l.find('|', a)) != std::string::npos; a = b + 1) cols.push_back(l.substr(a, b - a));
    // cols: "", id, total, params, local, global, compiles, time, GFLOPS, status
    if (cols.size() < 10) continue;
    std::istringstream ps(cols[3]);
    ClblastParams params;
    for (const auto& n : names) {
      size_t v = 0;
      if (!(ps >> v)) break;
      params[n] = v;
    }
    if (params.size() != names.size()) continue;
    Candidate c;
    c.origin = fmt::format("{} on {}", tuner, s.name());
    c.tuner_gflops = std::atof(cols[8].c_str());
    c.kernels[kernel] = params;
    found.push_back(std::move(c));
    std::fprintf(stderr, "    %s: %zu configurations measured, last %.1f GFLOP/s\n", tuner.c_str(), found.size(),
                 found.back().tuner_gflops);
  }
  pclose(p);
  return found;
}

// Hand-made Xgemm candidates timed with the tuners' (all no-local-memory, indirect):
// - the hand search: 8x8 results per work-item, 8- or 4-wide vectors;
// - the best kernel of the quiet-machine search on this CI-class machine
//   (docs/performance.md, 2026-11-24: 106 GFLOP/s in the tuner at 1024x1024x768);
// - a GEMMK = 1 kernel (every operand rotated: no copy for row-major NN);
// - register blocks for AVX-512: each work-item keeps a 64 x 4 block of C in 16
//   vector registers (the built-in 'pocl-cpu-vec16') or a 48 x 8 one in 24 (the
//   fastest on shapes 48 divides, slower where it pads), shapes CLBlast's own
//   tuners never try (their work-groups are 8 x 8 items or more on each side).
// Parameters in the order GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG STRM STRN VWM VWN.
std::vector<Candidate> seeds() {
  const char* names[] = {"GEMMK", "KREG",  "KWG", "KWI",  "MDIMA", "MDIMC", "MWG",
                         "NDIMB", "NDIMC", "NWG", "STRM", "STRN",  "VWM",   "VWN"};
  const std::pair<const char*, std::array<size_t, 14>> table[] = {
      {"seed: Xgemm no local memory, 8x8 per work-item, vectors 8", {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 8, 8}},
      {"seed: Xgemm no local memory, 8x8 per work-item, vectors 4", {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 4, 4}},
      {"seed: best Xgemm of the 2026-11-24 quiet search (PoCL, AVX-512 EPYC)",
       {0, 1, 16, 2, 8, 8, 128, 16, 8, 128, 1, 1, 8, 8}},
      {"seed: Xgemm GEMMK 1, 8x8 per work-item, KREG 4", {1, 4, 16, 1, 8, 8, 64, 8, 8, 64, 0, 0, 8, 4}},
      {"seed: Xgemm register blocks, 64x4 per work-item, 16-wide vectors (AVX-512)",
       {0, 1, 16, 1, 1, 1, 64, 16, 16, 64, 0, 0, 16, 1}},
      {"seed: Xgemm register blocks, 48x8 per work-item, 16-wide vectors (AVX-512)",
       {0, 1, 16, 1, 1, 1, 48, 8, 8, 64, 0, 0, 16, 1}}};
  std::vector<Candidate> out;
  for (const auto& [origin, values] : table) {
    Candidate c;
    c.origin = origin;
    auto& x = c.kernels["Xgemm"];
    for (size_t i = 0; i < values.size(); ++i) x[names[i]] = values[i];
    x["SA"] = x["SB"] = 0;
    out.push_back(std::move(c));
  }
  return out;
}

// The plans step 3 tries on the best candidates (host/gemm.hpp): the
// hand-over, then panels of K (CLBlast's kernels do not block K for a cache)
// and of N. 512 / 1024 won on the 125m shapes on this machine.
const host::GemmPlan kPlans[] = {{true, 0, 0},      {true, 512, 0},   {true, 512, 1024}, {true, 256, 1024},
                                 {true, 512, 2048}, {false, 512, 1024}};

std::string plan_name(const host::GemmPlan& p) {
  return fmt::format("{}, K panels {}, N panels {}", p.col_major ? "column-major" : "row-major",
                     p.k_block ? std::to_string(p.k_block) : "whole", p.n_block ? std::to_string(p.n_block) : "whole");
}

// Xgemm candidates run indirect on every shape, XgemmDirect ones direct; the
// plan (TttGemm) is host::gemm's, the rest CLBlast's.
void apply(host::Context& ctx, const Candidate& c) {
  host::set_gemm_plan(ctx, {});
  for (const auto& [k, p] : c.kernels)
    if (k == host::kGemmPlanKernel)
      host::set_gemm_plan(ctx, host::gemm_plan_from_params(p));
    else
      host::clblast_override(ctx, k, p);
  if (!c.kernels.count("GemmRoutine"))
    host::clblast_override(ctx, "GemmRoutine",
                           {{"XGEMM_MIN_INDIRECT_SIZE", c.kernels.count("XgemmDirect") ? 1u << 20 : 64u}});
}

}  // namespace

int tune(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  add_shape_options(opts, "tuned");
  opts.add_options()
      ("budget-min", po::value<double>()->default_value(20), "wall-clock budget of the tuner runs, minutes")
      ("tuner-shapes", po::value<int>()->default_value(2), "clblast_tuner_xgemm runs on this many heaviest shapes")
      ("tuner-size-cap", po::value<int>()->default_value(512), "tuners run on the shape with each size capped to this")
      ("fraction", po::value<double>()->default_value(64), "tuner -fraction: 1.5.3 explores 1/F of each variation")
      ("top", po::value<int>()->default_value(3), "best configurations of each tuner run timed on every shape")
      ("plans", po::value<int>()->default_value(2),
       "the best N candidates are timed again under each GEMM plan (layout, K/N panels); 0: none")
      ("no-tuners", po::bool_switch(), "skip CLBlast's tuners: time the defaults, the seeds and the file's record")
      ("no-direct", po::bool_switch(), "skip clblast_tuner_xgemm_direct")
      ("reps", po::value<int>()->default_value(1), "timed calls per shape and candidate (best of)")
      ("out", po::value<std::string>(), "tuning file to write (default: the one the engine reads); an existing FILE is replaced only if it is a "
       "tuning file (or empty)")
      ("dry-run", po::bool_switch(), "measure and print, write nothing")
      ("verbose", po::bool_switch(), "echo the tuners' output")
      ("json", po::value<std::string>(), "also write the JSON report to this file; an existing FILE is replaced only if this tool wrote it (or it is empty)");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench tune [--preset NAME | -m DIR] [--budget-min M]",
                       "Tunes CLBlast's SGEMM for this device on the model's GEMM shapes: CLBlast's own tuners\n"
                       "(clblast-utils) propose kernels; those, six hand-made seeds and the file's record are checked\n"
                       "against CLBlast's defaults and timed through the real routine, the best again under GEMM plans\n"
                       "(row- or column-major hand-over, K and N panels). The winner goes into the tuning file the\n"
                       "engine applies at its first GEMM; default / tuned / OpenBLAS GFLOP/s per shape print as JSON.\n"
                       "--no-tuners (seeds and plans only) takes a few minutes on a 2-core CPU and is usually enough."))
    return 0;
  const Config cfg = shape_config(vm);
  const double budget = vm["budget-min"].as<double>() * 60.0;
  const int reps = std::max(1, vm["reps"].as<int>()), top = std::max(1, vm["top"].as<int>());
  if (budget < 0 || vm["fraction"].as<double>() < 1) throw Error("--budget-min must be >= 0 and --fraction >= 1");
  const std::string path = vm.count("out") ? vm["out"].as<std::string>() : host::tuning_file_path();
  {  // Outputs first: a bad one fails now, not after minutes of tuning.
    app::Paths paths;
    if (vm.count("model")) paths.input("-m", vm["model"].as<std::string>() + "/config.json");
    // The file keeps other devices' records: it is rewritten, so it must be a tuning file already, or none.
    // Its signature is the "format" key that host/tuning.cpp writes (any version: an old file is ours too).
    const OwnFormat tuning{OwnFormat::json_key, host::kTuningFormat, "format", "a ttt-cl tuning file"};
    if (!vm["dry-run"].as<bool>()) {
      if (vm.count("out"))
        paths.output("--out", path, tuning);
      else  // the default file's directory is created if need be
        check_own_file(path, "the tuning file", tuning);
    }
    paths.output(vm, "json", json_file_format()).check();
  }
  ttt::Runtime rt(ttt::app::device_spec(vm));
  ttt::host::Context& ctx = ttt::host::context(rt);
  const ttt::host::DeviceInfo& dev = ctx.device();
  host::skip_tuning_file(ctx);  // the "default" column is CLBlast's own defaults

  auto shapes = model_gemms(cfg, true);
  std::stable_sort(shapes.begin(), shapes.end(),
                   [](const GemmShape& a, const GemmShape& b) { return a.flops() * a.count > b.flops() * b.count; });
  const auto t_all = std::chrono::steady_clock::now();
  json j = {{"bench", "tune"}, {"device", dev.name}, {"driver", dev.driver_version},
            {"clblast", host::clblast_version()}, {"load_before", load_average()}};
  std::fprintf(stderr, "tune: %zu distinct GEMM shapes, load %s\n", shapes.size(), load_average().c_str());

  GemmBench gb(ctx, shapes);
  OpenBlas blas;
  auto objective = [&](Candidate& c) {
    c.seconds.clear();
    c.objective = 0;
    for (const auto& s : shapes) {
      c.seconds.push_back(gb.clblast_seconds(s, reps));
      c.objective += c.seconds.back() * s.count;
    }
  };
  // 1. CLBlast's defaults, before any override, and OpenBLAS beside them. The
  // defaults' C on the shapes with the longest K and the widest N (the ones a
  // plan cuts into the most panels) is what every candidate must reproduce: a
  // fast but wrong kernel or plan must never reach the tuning file.
  Candidate def;
  def.origin = "CLBlast defaults";
  objective(def);
  auto most = [&](auto key) {
    return *std::min_element(shapes.begin(), shapes.end(), [&](const GemmShape& a, const GemmShape& b) {
      return key(a) != key(b) ? key(a) > key(b) : a.flops() < b.flops();
    });
  };
  const GemmShape probes[] = {most([](const GemmShape& x) { return x.K; }),
                              most([](const GemmShape& x) { return x.N; })};
  std::vector<std::vector<float>> want;
  for (const auto& p : probes) want.push_back(gb.clblast_result(p));
  auto check = [&] {
    for (size_t k = 0; k < 2; ++k) {
      const std::vector<float> got = gb.clblast_result(probes[k]);
      double scale = 0, err = 0;
      for (size_t i = 0; i < want[k].size(); ++i) {
        scale = std::max(scale, double(std::fabs(want[k][i])));
        err = std::max(err, double(std::fabs(got[i] - want[k][i])));
      }
      if (!(err <= 1e-4 * std::max(scale, 1e-30)))
        throw Error(fmt::format("wrong results on {}: largest difference {:.3g} from the defaults' (largest value {:.3g})",
                                probes[k].name(), err, scale));
    }
  };
  std::vector<double> blas_s;
  for (const auto& s : shapes) blas_s.push_back(blas.available() ? blas.seconds(s, reps) : 0);
  std::fprintf(stderr, "  defaults: %.2f s of GEMMs per mini-batch\n", def.objective);

  // 2. The tuners, each under its share of the budget; the record already
  // in the tuning file for this device and the built-in one compete too.
  std::vector<Candidate> cands = seeds();
  // The built-in record for this class of device (what a user without a file
  // gets) competes as it is, plan included: the file's record refines it.
  const char* no_builtin = std::getenv("TTT_TUNING_BUILTIN");
  if (const host::BuiltinRecord* b = host::builtin_record(host::DeviceClass::of(dev));
      b && !(no_builtin && std::string(no_builtin) == "off")) {
    Candidate c;
    c.origin = fmt::format("the built-in record '{}'", b->name);
    c.kernels = b->kernels;
    cands.push_back(std::move(c));
  }
  if (std::ifstream in(path); in) {
    std::stringstream text;
    text << in.rdbuf();
    Candidate c;
    c.origin = "the tuning file's record";
    try {
      if (host::parse_tuning(text.str(), host::TuningKey::of(dev), c.kernels) && !c.kernels.empty())
        cands.push_back(std::move(c));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  ignoring '%s': %s\n", path.c_str(), e.what());
    }
  }
  const auto t_tune = std::chrono::steady_clock::now();
  if (!vm["no-tuners"].as<bool>() && budget > 0) {
    const int nx = std::min<int>(vm["tuner-shapes"].as<int>(), int(shapes.size()));
    const bool direct = !vm["no-direct"].as<bool>();
    const double share = budget / double(nx + (direct ? 1 : 0));
    auto take = [&](std::vector<Candidate> found) {
      std::sort(found.begin(), found.end(),
                [](const Candidate& a, const Candidate& b) { return a.tuner_gflops > b.tuner_gflops; });
      if (found.size() > size_t(top)) found.resize(size_t(top));
      for (auto& f : found) cands.push_back(std::move(f));
    };
    // The tuners time every configuration once: on a CPU a capped size
    // ranks kernels like the full one at a fraction of the cost.
    const int64_t cap = std::max(64, vm["tuner-size-cap"].as<int>());
    auto capped = [&](GemmShape s) {
      s.M = std::min(s.M, cap), s.N = std::min(s.N, cap), s.K = std::min(s.K, cap);
      return s;
    };
    for (int i = 0; i < nx; ++i)
      take(run_tuner("clblast_tuner_xgemm", "Xgemm", capped(shapes[size_t(i)]), dev, vm["fraction"].as<double>(), share,
                     vm["verbose"].as<bool>()));
    if (direct)
      take(run_tuner("clblast_tuner_xgemm_direct", "XgemmDirect", capped(shapes[0]), dev, vm["fraction"].as<double>(), share,
                     vm["verbose"].as<bool>()));
  }
  j["tuner_seconds"] = elapsed(t_tune);

  // 3. Every candidate through the real routine on every shape, then the
  // best few under each GEMM plan.
  const auto t_eval = std::chrono::steady_clock::now();
  json tried = json::array();
  std::vector<Candidate> done;
  auto evaluate = [&](Candidate c) {
    try {
      apply(ctx, c);
      check();
      objective(c);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  %s: rejected (%s)\n", c.origin.c_str(), e.what());
      return;
    }
    std::fprintf(stderr, "  %s: %.2f s per mini-batch\n", c.origin.c_str(), c.objective);
    tried.push_back({{"origin", c.origin}, {"kernels", c.kernels}, {"tuner_gflops", c.tuner_gflops},
                     {"gemm_seconds_per_mini_batch", c.objective}, {"seconds_per_shape", c.seconds}});
    done.push_back(std::move(c));
  };
  for (auto& c : cands) evaluate(c);
  std::vector<Candidate> base = done;
  std::sort(base.begin(), base.end(), [](const Candidate& a, const Candidate& b) { return a.objective < b.objective; });
  base.resize(std::min(base.size(), size_t(std::max(0, vm["plans"].as<int>()))));
  for (const Candidate& b : base)
    for (const host::GemmPlan& p : kPlans) {
      // A record with a plan (the file's, the built-in one) is tried under the others too.
      const auto own = b.kernels.find(host::kGemmPlanKernel);
      if (own != b.kernels.end() && host::gemm_plan_from_params(own->second) == p) continue;
      Candidate c = b;
      c.origin = b.origin + " | " + plan_name(p);
      c.kernels[host::kGemmPlanKernel] = host::gemm_plan_params(p);
      evaluate(std::move(c));
    }
  host::set_gemm_plan(ctx, {});
  const Candidate* best = &def;
  for (const Candidate& c : done)
    if (c.objective < best->objective) best = &c;
  j["evaluation_seconds"] = elapsed(t_eval);
  j["candidates"] = tried;
  j["chosen"] = best->origin;

  // 4. The table: defaults, chosen, OpenBLAS, per shape (the chosen one re-timed now).
  Candidate chosen = *best;
  if (best != &def) {
    apply(ctx, chosen);
    objective(chosen);
  }
  json rows = json::array();
  double f_all = 0, t_def = 0, t_tuned = 0, t_blas = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto& s = shapes[i];
    const double tb = blas_s[i] > 0 ? blas.seconds(s, reps) : 0;  // again, beside the tuned figure
    const double blas_best = tb > 0 ? std::min(tb, blas_s[i]) : 0;
    json r = {{"shape", s.name()}, {"count", s.count}, {"gflop", s.flops() * 1e-9},
              {"default_gflops", s.flops() / def.seconds[i] * 1e-9},
              {"tuned_gflops", s.flops() / chosen.seconds[i] * 1e-9}};
    if (blas_best > 0) {
      r["openblas_gflops"] = s.flops() / blas_best * 1e-9;
      r["tuned_over_openblas"] = blas_best / chosen.seconds[i];
    }
    rows.push_back(r);
    f_all += s.flops() * s.count;
    t_def += def.seconds[i] * s.count;
    t_tuned += chosen.seconds[i] * s.count;
    t_blas += blas_best * s.count;
  }
  j["shapes"] = rows;
  j["mini_batch"] = {{"gflop", f_all * 1e-9},
                     {"default_gflops", f_all / t_def * 1e-9},
                     {"tuned_gflops", f_all / t_tuned * 1e-9}};
  if (t_blas > 0) {
    j["mini_batch"]["openblas_gflops"] = f_all / t_blas * 1e-9;
    j["mini_batch"]["tuned_over_openblas"] = t_blas / t_tuned;
    j["openblas_threads"] = blas.threads();
  } else {
    j["openblas"] = blas.why_not();
  }
  j["load_after"] = load_average();
  j["total_seconds"] = elapsed(t_all);
  // The figure the README quotes comes from this line: the time, the device and the load it ran under.
  std::fprintf(stderr, "tune: took %.0f s on '%s' (load %s before, %s after)\n", elapsed(t_all), dev.name.c_str(),
               j["load_before"].get<std::string>().c_str(), load_average().c_str());

  if (!vm["dry-run"].as<bool>()) {
    ClblastKernels keep;
    if (best != &def) {
      keep = chosen.kernels;
      if (!keep.count("GemmRoutine"))
        keep["GemmRoutine"] = {{"XGEMM_MIN_INDIRECT_SIZE", keep.count("XgemmDirect") ? 1u << 20 : 64u}};
    }
    json extra = {{"origin", chosen.origin}, {"strategy", "clblast tuners (random -fraction, time-capped) + "
                                                          "candidates timed on the model's shapes"},
                  {"model_gemm_gflops_default", j["mini_batch"]["default_gflops"]},
                  {"model_gemm_gflops_tuned", j["mini_batch"]["tuned_gflops"]}};
    host::save_tuning(path, host::TuningKey::of(dev), keep, extra.dump());
    j["tuning_file"] = path;
  }
  emit_json(vm, std::move(j));
  return 0;
}

}  // namespace ttt::bench
