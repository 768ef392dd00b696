// The engine's work counted analytically: every GEMM of one mini-batch with
// its shape and how often it runs (what `ttt-bench tune` tunes and the
// prefill roofline measures), and the FLOPs and bytes of a whole prefill.
// Mirrors lib/engine/{forward,backward}.cpp and lib/ops/xent.cpp: keep in step.
#pragma once

#include "ttt/config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ttt::bench {

struct GemmShape {
  std::string label;     // the engine's profiling label, e.g. "gemm_w13"
  bool ta = false, tb = false;  // row-major op(A) is M x K, op(B) is K x N
  int64_t M = 0, N = 0, K = 0;
  int count = 0;         // times per full mini-batch
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  std::string name() const;  // "gemm_w13 NN 1024x3328x768"
};

// The GEMMs of one full mini-batch of B tokens (with TTT: forward, xent
// backward, the suffix blocks' backward), vocabulary tiles of `vocab_tile`.
std::vector<GemmShape> model_gemms(const Config& c, bool ttt, int vocab_tile = 8192);

struct Work {
  double gemm = 0, attention = 0, other = 0;  // FLOPs
  double bytes = 0;                           // device memory traffic, lower bound (each operand once)
  double total() const { return gemm + attention + other; }
};

// A prefill of n_inputs tokens (a document of n_inputs + 1), mini-batch by
// mini-batch: the last partial one only scores, as Config::takes_update says.
Work prefill_work(const Config& c, int64_t n_inputs, bool ttt, int vocab_tile = 8192);

// One row per kernel family or GEMM label: the work of one full mini-batch
// in steady state (every query sees W keys), FLOPs and compulsory bytes
// (each operand read or written once, as a GPU roofline assumes).
struct KernelWork {
  std::string name;
  int launches = 0;
  double flops = 0, bytes = 0;
};
std::vector<KernelWork> kernel_table(const Config& c, bool ttt, int vocab_tile = 8192);

}  // namespace ttt::bench
