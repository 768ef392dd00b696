// ttt-bench copies: what CLBlast's pad/transpose copies cost on the model's
// GEMMs (see gemm_copies.hpp).
#include "bench/gemm_copies.hpp"
#include "bench/gemm_timing.hpp"
#include "bench/model_flops.hpp"
#include "bench/model_options.hpp"
#include "apps/app.hpp"
#include "host/gemm.hpp"
#include "host/runtime.hpp"
#include "host/tuning.hpp"
#include "ttt/config.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <ctime>

namespace ttt::bench {

using json = nlohmann::json;
using host::Trans;

namespace {

// Where the engine keeps each GEMM's operands (lib/engine/block.cpp, lib/ops/xent.cpp):
// which operand is a weight, and at what element offset the engine passes it.
struct Operands {
  bool b_weight = false;   // B is a weight (the A operands are activations)
  size_t b_off = 0;        // a vocabulary tile after the first sits at v0 * D in the embedding
  size_t lda = 0;          // the logits tile's row stride is the full tile even for the last one
};

Operands operands_of(const GemmShape& s, int64_t tile) {
  Operands o;
  const bool vocab = s.label == "gemm_logits" || s.label == "gemm_xent_bwd";
  o.b_weight = s.label != "gemm_dw2" && s.label != "gemm_dw13";
  o.lda = size_t(s.ta ? s.M : s.K);
  if (vocab) o.b_off = size_t(tile) * size_t(s.label == "gemm_logits" ? s.K : s.N);  // the second tile
  if (s.label == "gemm_xent_bwd") o.lda = size_t(tile);
  return o;
}

// CLBlast 1.5's choice for one call (src/routines/level3/xgemm.hpp: ProcessArguments,
// CalculateInternalDimensions, NoTempBuffer) in host::gemm's hand-over: which of
// the row-major op(A), op(B), C it copies into a temporary before or after its kernel.
struct Copies {
  bool direct = false, a = false, b = false, c = false;
};

Copies predict(const host::ClblastKernels& rec, const host::GemmPlan& plan, bool ta, bool tb, size_t M, size_t N,
               size_t K, size_t a_off, size_t lda, size_t b_off, size_t ldb, size_t c_off, size_t ldc,
               size_t align) {
  auto param = [&](const char* kernel, const char* name, size_t dflt) {
    auto k = rec.find(kernel);
    if (k == rec.end()) return dflt;
    auto p = k->second.find(name);
    return p == k->second.end() ? dflt : p->second;
  };
  const size_t mwg = param("Xgemm", "MWG", 64), nwg = param("Xgemm", "NWG", 64),
               kwg = param("Xgemm", "KWG", 32) * param("Xgemm", "KREG", 1), gemmk = param("Xgemm", "GEMMK", 0),
               min_ind = param("GemmRoutine", "XGEMM_MIN_INDIRECT_SIZE", 384);
  auto ceil = [](size_t x, size_t m) { return (x + m - 1) / m * m; };
  auto offset = [&](size_t off) { return plan.views && off % (align / sizeof(float)) == 0 ? 0 : off; };
  Copies out;
  const size_t kb = plan.k_block && K > plan.k_block ? plan.k_block : K;
  const size_t nb = plan.n_block && N > plan.n_block ? plan.n_block : N;
  for (size_t n0 = 0; n0 < N; n0 += nb)
    for (size_t k0 = 0; k0 < K; k0 += kb) {
      const size_t n = std::min(nb, N - n0), k = std::min(kb, K - k0);
      const size_t ao = offset(a_off + (ta ? k0 * lda : k0)), bo = offset(b_off + (tb ? n0 * ldb + k0 : k0 * ldb + n0));
      const size_t co = offset(c_off + n0);
      // The column-major hand-over asks CLBlast for C^T = op(B)^T op(A)^T: its A is ours B.
      const bool col = plan.col_major;
      const size_t m_ = col ? n : M, n_ = col ? M : n;
      const bool ta_ = col ? tb : ta, tb_ = col ? ta : tb;
      const size_t ao_ = col ? bo : ao, lda_ = col ? ldb : lda, bo_ = col ? ao : bo, ldb_ = col ? lda : ldb;
      if (m_ * n_ * k < min_ind * min_ind * min_ind) {
        out.direct = true;
        continue;
      }
      const bool a_rot = col ? ta_ : !ta_, b_rot = col ? tb_ : !tb_, c_rot = !col;
      const bool a_want = gemmk == 1, b_want = true, c_want = gemmk == 1;
      const size_t mc = ceil(m_, mwg), nc = ceil(n_, nwg), kc = ceil(k, kwg);
      auto temp = [](size_t one, size_t one_i, size_t two, size_t two_i, size_t ld, size_t off, bool transpose) {
        return !(one == one_i && two == two_i && ld == one && off == 0 && !transpose);
      };
      const bool a_ = temp(a_rot ? k : m_, a_want ? kc : mc, a_rot ? m_ : k, a_want ? mc : kc, lda_, ao_,
                           a_rot != a_want);
      const bool b_ = temp(b_rot ? n_ : k, b_want ? nc : kc, b_rot ? k : n_, b_want ? kc : nc, ldb_, bo_,
                           b_rot != b_want);
      const bool c_ = temp(c_rot ? n_ : m_, c_want ? nc : mc, c_rot ? m_ : n_, c_want ? mc : nc, ldc, co,
                           c_rot != c_want);
      (col ? out.b : out.a) |= a_;
      (col ? out.a : out.b) |= b_;
      out.c |= c_;
    }
  return out;
}

std::string copies_name(const Copies& c) {
  std::string s;
  if (c.a) s += "A";
  if (c.b) s += s.empty() ? "B" : "+B";
  if (c.c) s += s.empty() ? "C" : "+C";
  if (c.direct) s += s.empty() ? "direct" : "+direct";
  return s.empty() ? "none" : s;
}

// CPU time of the whole process (PoCL's worker threads included), ms: on a CPU
// device shared with other jobs it counts the work done, not the waits for a core.
double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e3 + double(t.tv_nsec) * 1e-6;
}

host::Buffer random_buffer(host::Context& ctx, size_t n, const char* what, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& x : v) x = u(rng);
  host::Buffer b(ctx, std::max<size_t>(n, 1) * sizeof(float), what);
  b.write(v.data(), n * sizeof(float));
  return b;
}

}  // namespace

int gemm_copies(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  add_shape_options(opts, "timed");
  opts.add_options()                                                                                  //
      ("repeat", po::value<int>()->default_value(3), "timed calls per variant and shape (best of)")          //
      ("rounds", po::value<int>()->default_value(2), "rounds over every variant, alternated (best of)")      //
      ("only", po::value<std::string>(), "time only the shapes whose label contains this");
  ttt::app::add_device_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-bench copies [--preset NAME | -m DIR] [--repeat N]",
                       "What CLBlast's pad/transpose copies cost on the model's GEMMs of one TTT mini-batch, under\n"
                       "the GEMM plan the tuning record picks. Each shape is timed four ways, alternated:\n"
                       "  passed      the operands as the engine passes them, no sub-buffer views (before views)\n"
                       "  views       the same, aligned panels handed over as sub-buffers (what host::gemm does)\n"
                       "  weight_laid the weight already in the orientation CLBlast's kernel wants\n"
                       "  laid        both operands laid out as the kernel wants: the kernel alone, no copies\n"
                       "and each row says which operands CLBlast copies in each (from its 1.5 source's rules)."))
    return 0;
  const int reps = vm["repeat"].as<int>(), rounds = vm["rounds"].as<int>();
  if (reps < 1 || reps > 100 || rounds < 1 || rounds > 20) throw Error("--repeat must be in 1..100, --rounds in 1..20");
  const Config cfg = shape_config(vm);
  ttt::Runtime rt(ttt::app::device_spec(vm));
  host::Context& ctx = host::context(rt);
  const host::TuningState& ts = host::tuning_state(ctx);
  const host::GemmPlan plan0 = host::gemm_plan(ctx);
  const host::BuiltinRecord* rec = host::builtin_record(host::DeviceClass::of(ctx.device()));
  const size_t align = host::Buffer::view_align(ctx);
  const int64_t tile = std::min<int64_t>(8192, cfg.vocab_size);
  std::vector<GemmShape> shapes = model_gemms(cfg, true, int(tile));
  if (vm.count("only")) {
    const std::string only = vm["only"].as<std::string>();
    std::erase_if(shapes, [&](const GemmShape& s) { return s.label.find(only) == std::string::npos; });
  }
  size_t na = 1, nb = 1, nc = 1;
  for (const auto& s : shapes) {
    const Operands o = operands_of(s, tile);
    na = std::max(na, size_t(s.M) * o.lda + size_t(s.K) * size_t(s.M));
    nb = std::max(nb, o.b_off + size_t(s.K * s.N));
    nc = std::max(nc, size_t(s.M * s.N));
  }
  host::Buffer A = random_buffer(ctx, na, "copies A", 1), B = random_buffer(ctx, nb, "copies B", 2),
               C = random_buffer(ctx, nc, "copies C", 3);
  json rows = json::array();
  double tot[4] = {0, 0, 0, 0}, tot_cpu[4] = {0, 0, 0, 0};
  const char* names[4] = {"passed", "views", "weight_laid", "laid"};
  for (const auto& s : shapes) {
    const Operands o = operands_of(s, tile);
    const size_t M = size_t(s.M), N = size_t(s.N), K = size_t(s.K);
    struct Variant {
      bool views, ta, tb;
      size_t lda, b_off, ldb;
    };
    const size_t ldb = s.tb ? K : N;
    Variant v[4] = {
        {false, s.ta, s.tb, o.lda, o.b_off, ldb},
        {true, s.ta, s.tb, o.lda, o.b_off, ldb},
        {true, s.ta, o.b_weight ? false : s.tb, o.lda, o.b_off, o.b_weight ? N : ldb},
        {true, true, o.b_weight ? false : s.tb, M, o.b_off, o.b_weight ? N : ldb},
    };
    double best[4] = {1e30, 1e30, 1e30, 1e30}, cpu[4] = {1e30, 1e30, 1e30, 1e30};
    Copies cp[4];
    for (int r = 0; r < rounds; ++r)
      for (int i = 0; i < 4; ++i) {
        host::GemmPlan p = plan0;
        p.views = v[i].views;
        host::set_gemm_plan(ctx, p);
        auto call = [&] {
          host::gemm(ctx, v[i].ta ? Trans::T : Trans::N, v[i].tb ? Trans::T : Trans::N, M, N, K, 1.f, A, 0,
                     v[i].lda, B, v[i].b_off, v[i].ldb, 0.f, C, 0, N, s.label.c_str());
        };
        if (r == 0) {
          call();
          ctx.finish();
          if (rec) cp[i] = predict(rec->kernels, p, v[i].ta, v[i].tb, M, N, K, 0, v[i].lda, v[i].b_off, v[i].ldb, 0,
                                   N, align);
        }
        for (int k = 0; k < reps; ++k) {
          const auto t0 = std::chrono::steady_clock::now();
          const double c0 = cpu_ms();
          call();
          ctx.finish();
          cpu[i] = std::min(cpu[i], cpu_ms() - c0);
          best[i] = std::min(best[i], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
      }
    host::set_gemm_plan(ctx, plan0);
    json row = {{"shape", s.name()}, {"per_mini_batch", s.count}, {"weight", o.b_weight ? "B" : "none"}};
    for (int i = 0; i < 4; ++i) {
      row[std::string(names[i]) + "_ms"] = best[i];
      row[std::string(names[i]) + "_cpu_ms"] = cpu[i];
      if (rec) row[std::string(names[i]) + "_copies"] = copies_name(cp[i]);
      tot[i] += best[i] * s.count;
      tot_cpu[i] += cpu[i] * s.count;
    }
    row["weight_copy_ms"] = best[0] - best[2];
    row["activation_copy_ms"] = best[2] - best[3];
    row["weight_copy_cpu_ms"] = cpu[0] - cpu[2];
    row["activation_copy_cpu_ms"] = cpu[2] - cpu[3];
    row["kernel_gflops"] = s.flops() / (best[3] * 1e6);
    std::fprintf(stderr,
                 "%-34s x%-2d wall ms %7.2f %7.2f %7.2f %7.2f  cpu ms %7.2f %7.2f %7.2f %7.2f  [%s | %s | %s | %s]\n",
                 s.name().c_str(), s.count, best[0], best[1], best[2], best[3], cpu[0], cpu[1], cpu[2], cpu[3],
                 rec ? copies_name(cp[0]).c_str() : "?", rec ? copies_name(cp[1]).c_str() : "?",
                 rec ? copies_name(cp[2]).c_str() : "?", rec ? copies_name(cp[3]).c_str() : "?");
    rows.push_back(row);
  }
  json j = {{"bench", "copies"},
            {"device", ctx.device().name},
            {"tuning", ts.record()},
            {"plan", {{"col_major", plan0.col_major}, {"k_block", plan0.k_block}, {"n_block", plan0.n_block}}},
            {"copies_from", rec ? fmt::format("CLBlast 1.5 rules with the built-in record '{}'", rec->name) : "none"},
            {"load_average", load_average()},
            {"shapes", rows}};
  for (int i = 0; i < 4; ++i) {
    j[std::string("mini_batch_") + names[i] + "_ms"] = tot[i];
    j[std::string("mini_batch_") + names[i] + "_cpu_ms"] = tot_cpu[i];
  }
  std::cout << j.dump(2) << "\n";
  return 0;
}

}  // namespace ttt::bench
