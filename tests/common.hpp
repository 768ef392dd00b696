// Shared helpers of the test suite: data locations, golden cases, file
// readers, the OpenCL fixture (skips only when no device exists) and the
// tolerance comparison that prints the first mismatches.
#pragma once

#include "host/buffer.hpp"
#include "host/runtime.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ttt::test {

// An environment variable set (or, with nullptr, unset) for a scope, then restored.
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(const char* n, const char* v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    if (v)
      ::setenv(n, v, 1);
    else
      ::unsetenv(n);
  }
  ScopedEnv(const char* n, const std::string& v) : ScopedEnv(n, v.c_str()) {}
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

inline std::string data_dir() { return TTT_TEST_DATA_DIR; }
inline std::string golden_dir(const std::string& name) { return data_dir() + "/golden/" + name; }
inline const std::vector<std::string>& golden_cases() {
  static const std::vector<std::string> c = {"tiny", "partial-chunk", "bf16-weights", "medium"};
  return c;
}

inline std::vector<int32_t> read_ints(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<int32_t> v;
  long long x;
  while (f >> x) v.push_back(int32_t(x));
  return v;
}

inline std::vector<double> read_doubles(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<double> v;
  double x;
  while (f >> x) v.push_back(x);
  return v;
}

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |a - b| <= atol + rtol * |ref| elementwise; on failure reports the first
// mismatches and the largest difference.
template <typename A, typename B>
::testing::AssertionResult all_close(const std::vector<A>& got, const std::vector<B>& ref, double atol, double rtol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != reference size " << ref.size();
  size_t bad = 0;
  double max_diff = 0;
  size_t max_at = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double a = double(got[i]), b = double(ref[i]), d = std::fabs(a - b);
    const bool ok = d <= atol + rtol * std::fabs(b);
    if (!(d <= max_diff) || std::isnan(d)) {
      max_diff = d;
      max_at = i;
    }
    if (!ok) {
      if (bad < 5) first << "\n  [" << i << "] got " << a << " want " << b << " (diff " << d << ")";
      ++bad;
    }
  }
  if (!bad) return ::testing::AssertionSuccess() << "max diff " << max_diff;
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements differ (atol " << atol
                                       << ", rtol " << rtol << "); max diff " << max_diff << " at [" << max_at
                                       << "]" << first.str();
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

// d with its limits lowered to at most `work_group` work-items per group (and
// per dimension: NVIDIA's 1024 x 1024 x 64 at most) and `local_mem` bytes of
// local memory: launchers size their groups and tiles from these, and
// launch() refuses what exceeds them, so a device with small limits can be
// played on any device.
inline host::DeviceInfo clamped(host::DeviceInfo d, size_t local_mem, size_t work_group) {
  d.max_work_group = std::min(d.max_work_group, work_group);
  const size_t item[3] = {1024, 1024, 64};
  for (int i = 0; i < 3; ++i) d.max_work_item[i] = std::min(d.max_work_item[i], std::min(item[i], work_group));
  d.local_mem = std::min<cl_ulong>(d.local_mem, local_mem);
  return d;
}

// $TTT_TEST_LIMITS = "WORK_ITEMS,LOCAL_BYTES" (e.g. "32,16384": the smallest
// limits ttt-cl meets, rusticl on llvmpipe caps some kernels at 32): the test
// binaries' context is clamped to them (the ctest entries labelled limits).
inline host::DeviceInfo test_device() {
  host::DeviceInfo d = host::select_device();
  const char* lim = std::getenv("TTT_TEST_LIMITS");
  if (!lim || !*lim) return d;
  size_t wg = 0, mem = 0;
  if (std::sscanf(lim, "%zu,%zu", &wg, &mem) != 2 || wg == 0 || mem == 0)
    throw std::runtime_error(std::string("TTT_TEST_LIMITS='") + lim + "': expected WORK_ITEMS,LOCAL_BYTES");
  return clamped(d, mem, wg);
}

// One OpenCL context for the whole test binary; tests skip when no device
// exists. The context is released when RUN_ALL_TESTS ends, not by a static
// destructor: at exit the thread-local state of the OpenCL runtime is already
// gone (Oclgrind's per-thread API call stack is, and every later OpenCL call
// corrupts the heap: "corrupted double-linked list").
class DeviceEnvironment : public ::testing::Environment {
 public:
  static std::unique_ptr<Runtime>& runtime() {
    static std::unique_ptr<Runtime> r;
    return r;
  }
  void TearDown() override { runtime().reset(); }
};
inline ::testing::Environment* const kDeviceEnvironment =
    ::testing::AddGlobalTestEnvironment(new DeviceEnvironment);

class DeviceTest : public ::testing::Test {
 protected:
  static Runtime* runtime() {
    static bool tried = false;
    auto& r = DeviceEnvironment::runtime();
    if (!tried) {
      tried = true;
      if (!host::list_devices().empty())
        r = std::make_unique<Runtime>(host::make_runtime(std::make_unique<host::Context>(test_device())));
    }
    return r.get();
  }
  void SetUp() override {
    if (!runtime()) GTEST_SKIP() << "no OpenCL device on this machine";
  }
  Runtime& rt() { return *runtime(); }                 // what Engine and the public API take
  host::Context& dev() { return host::context(rt()); }  // what the host layer and the ops take
};

}  // namespace ttt::test

namespace ttt::test {

// A device buffer holding n floats followed by canary floats that no kernel may touch.
struct Canaried {
  static constexpr size_t kCanary = 37;
  static constexpr float kValue = -12345.678f;
  host::Buffer buf;
  size_t n = 0;
  Canaried(host::Context& ctx, const std::vector<float>& init) : buf(ctx, (init.size() + kCanary) * 4, "test"), n(init.size()) {
    std::vector<float> all(init);
    all.resize(n + kCanary, kValue);
    buf.write(all.data(), all.size() * 4);
  }
  Canaried(host::Context& ctx, size_t count, float fill = 0.f) : Canaried(ctx, std::vector<float>(count, fill)) {}
  std::vector<float> get() const { return buf.download<float>(n); }
  ::testing::AssertionResult canary_intact() const {
    auto c = buf.download<float>(kCanary, n);
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i] != kValue) return ::testing::AssertionFailure() << "canary overwritten at element " << n + i;
    return ::testing::AssertionSuccess();
  }
};

inline host::Buffer int_buffer(host::Context& ctx, const std::vector<int32_t>& v) {
  host::Buffer b(ctx, std::max<size_t>(v.size(), 1) * 4, "test ints");
  if (!v.empty()) b.write(v.data(), v.size() * 4);
  return b;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Central finite difference of f at x along every coordinate (double precision).
template <typename Fn>
std::vector<double> numeric_grad(std::vector<double> x, Fn f, double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double fp = f(x);
    x[i] = x0 - eps;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace ttt::test
