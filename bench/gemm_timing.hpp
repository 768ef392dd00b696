// Timing one GEMM shape three ways for the benchmarks: CLBlast through
// host::gemm on the device, and OpenBLAS's cblas_sgemm on the host, loaded
// with dlopen so that nothing links it (a comparison, never a dependency).
#pragma once

#include "bench/model_flops.hpp"
#include "host/buffer.hpp"

#include <memory>
#include <string>

namespace ttt::bench {

// Device buffers big enough for every shape given, random contents.
class GemmBench {
 public:
  GemmBench(host::Context& ctx, const std::vector<GemmShape>& shapes);
  // Seconds per call, the best of `reps` after one untimed call (which
  // compiles CLBlast's program for the current parameters).
  double clblast_seconds(const GemmShape& s, int reps);
  // C of one call with the current parameters (to check a candidate's results).
  std::vector<float> clblast_result(const GemmShape& s);

 private:
  void call(const GemmShape& s);
  host::Context& ctx_;
  host::Buffer a_, b_, c_;
};

// cblas_sgemm from libopenblas.so.0, when it can be loaded.
class OpenBlas {
 public:
  OpenBlas();
  ~OpenBlas();
  bool available() const { return fn_ != nullptr; }
  const std::string& why_not() const { return why_not_; }
  int threads() const;
  double seconds(const GemmShape& s, int reps);  // best of reps after one warm-up

 private:
  void* handle_ = nullptr;
  void* fn_ = nullptr;
  void* threads_fn_ = nullptr;
  std::string why_not_;
  std::vector<float> a_, b_, c_;
};

// "1.23 0.98 0.77" from /proc/loadavg, to print beside every figure.
std::string load_average();

}  // namespace ttt::bench
