// GEMM timing for the benchmarks: CLBlast on the device, OpenBLAS on the host.
#include "bench/gemm_timing.hpp"
#include "host/gemm.hpp"

#include <algorithm>
#include <chrono>
#include <dlfcn.h>
#include <fstream>
#include <random>

namespace ttt::bench {

namespace {

using clock_t_ = std::chrono::steady_clock;

size_t elems_a(const GemmShape& s) { return size_t(s.M * s.K); }
size_t elems_b(const GemmShape& s) { return size_t(s.K * s.N); }
size_t elems_c(const GemmShape& s) { return size_t(s.M * s.N); }

template <typename F>
size_t max_of(const std::vector<GemmShape>& v, F f) {
  size_t m = 1;
  for (const auto& s : v) m = std::max(m, f(s));
  return m;
}

host::Buffer random_buffer(host::Context& ctx, size_t n, const char* what, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& x : v) x = u(rng);
  host::Buffer b(ctx, n * sizeof(float), what);
  b.write(v.data(), n * sizeof(float));
  return b;
}

}  // namespace

GemmBench::GemmBench(host::Context& ctx, const std::vector<GemmShape>& shapes)
    : ctx_(ctx),
      a_(random_buffer(ctx, max_of(shapes, elems_a), "bench A", 1)),
      b_(random_buffer(ctx, max_of(shapes, elems_b), "bench B", 2)),
      c_(random_buffer(ctx, max_of(shapes, elems_c), "bench C", 3)) {}

void GemmBench::call(const GemmShape& s) {
  using host::Trans;
  const size_t lda = s.ta ? size_t(s.M) : size_t(s.K), ldb = s.tb ? size_t(s.K) : size_t(s.N);
  host::gemm(ctx_, s.ta ? Trans::T : Trans::N, s.tb ? Trans::T : Trans::N, size_t(s.M), size_t(s.N), size_t(s.K), 1.f,
             a_, 0, lda, b_, 0, ldb, 0.f, c_, 0, size_t(s.N), s.label.c_str());
}

std::vector<float> GemmBench::clblast_result(const GemmShape& s) {
  call(s);
  std::vector<float> c(elems_c(s));
  c_.read(c.data(), c.size() * sizeof(float));
  return c;
}

double GemmBench::clblast_seconds(const GemmShape& s, int reps) {
  auto call = [&] { this->call(s); };
  call();
  ctx_.finish();
  double best = 1e30;
  for (int r = 0; r < std::max(1, reps); ++r) {
    const auto t0 = clock_t_::now();
    call();
    ctx_.finish();
    best = std::min(best, std::chrono::duration<double>(clock_t_::now() - t0).count());
  }
  return best;
}

// cblas enums (cblas.h): row-major 101, no-trans 111, trans 112.
using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                          int);
using threads_fn = int (*)();

OpenBlas::OpenBlas() {
  for (const char* name : {"libopenblas.so.0", "libopenblas.so"}) {
    handle_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle_) break;
  }
  if (!handle_) {
    why_not_ = "libopenblas.so.0 not found (apt-get install libopenblas0)";
    return;
  }
  fn_ = dlsym(handle_, "cblas_sgemm");
  threads_fn_ = dlsym(handle_, "openblas_get_num_threads");
  if (!fn_) why_not_ = "libopenblas has no cblas_sgemm";
}

OpenBlas::~OpenBlas() {
  if (handle_) dlclose(handle_);
}

int OpenBlas::threads() const { return threads_fn_ ? reinterpret_cast<threads_fn>(threads_fn_)() : 0; }

double OpenBlas::seconds(const GemmShape& s, int reps) {
  if (!fn_) return 0;
  auto grow = [](std::vector<float>& v, size_t n) {
    if (v.size() < n) {
      std::mt19937 rng{uint32_t(n)};
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      v.resize(n);
      for (auto& x : v) x = u(rng);
    }
  };
  grow(a_, elems_a(s));
  grow(b_, elems_b(s));
  grow(c_, elems_c(s));
  const int lda = int(s.ta ? s.M : s.K), ldb = int(s.tb ? s.K : s.N);
  auto f = reinterpret_cast<sgemm_fn>(fn_);
  auto call = [&] {
    f(101, s.ta ? 112 : 111, s.tb ? 112 : 111, int(s.M), int(s.N), int(s.K), 1.f, a_.data(), lda, b_.data(), ldb, 0.f,
      c_.data(), int(s.N));
  };
  call();
  double best = 1e30;
  for (int r = 0; r < std::max(1, reps); ++r) {
    const auto t0 = clock_t_::now();
    call();
    best = std::min(best, std::chrono::duration<double>(clock_t_::now() - t0).count());
  }
  return best;
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a.empty() ? std::string("?") : a + " " + b + " " + c;
}

}  // namespace ttt::bench
