// Kernel sources (embedded or from $TTT_CL_DIR) and the program cache: build
// from source or load a cached binary, and report build failures in full.
#include "host/program.hpp"
#include "host/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace ttt::host {
namespace embedded {
extern const std::pair<std::string_view, std::string_view> kSources[];
extern const int kSourceCount;
}  // namespace embedded

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot read kernel source '{}' (TTT_CL_DIR is set)", p.string()));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string raw_source(const std::string& family) {
  if (const char* dir = std::getenv("TTT_CL_DIR"); dir && *dir) return read_text(fs::path(dir) / (family + ".cl"));
  for (int i = 0; i < embedded::kSourceCount; ++i)
    if (embedded::kSources[i].first == family) return std::string(embedded::kSources[i].second);
  throw Error(fmt::format("no kernel family '{}' is embedded in this build", family));
}

// 64-bit FNV-1a over the fields that decide a binary; fields are separated so
// that ("ab","c") and ("a","bc") differ.
uint64_t fnv1a(std::initializer_list<std::string_view> fields) {
  uint64_t h = 1469598103934665603ull;
  for (auto f : fields) {
    for (unsigned char c : f) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
  }
  return h;
}

std::string build_log(cl_program prog, cl_device_id dev) {
  size_t n = 0;
  clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n);
  std::string log(n, '\0');
  if (n) clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, n, log.data(), nullptr);
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

// PoCL keeps a disk cache of its own, keyed by the source, the options and
// the device: the front end's bitcode and each kernel's work-group function
// for each local size it ran with. Asking it for a binary
// (CL_PROGRAM_BINARY_SIZES) makes it compile every kernel of the program once
// more, in a generic form that only a binary needs: about 5 s of a cold 125m
// start on two cores, for programs it then rebuilds from its cache in 20 ms.
// With PoCL's cache on, ours keeps a stamp instead of the binary.
bool driver_caches(const DeviceInfo& dev) {
  if (dev.platform_name != "Portable Computing Language") return false;
  const char* c = std::getenv("POCL_KERNEL_CACHE");
  return !(c && std::string_view(c) == "0");
}
// Whether PoCL's cache directory (POCL_CACHE_DIR, else $XDG_CACHE_HOME/pocl/kcache or ~/.cache/pocl/kcache)
// holds anything: a stamp is trusted only then, so that an emptied PoCL cache is announced as a compile.
bool driver_cache_present() {
  fs::path dir;
  if (const char* d = std::getenv("POCL_CACHE_DIR"); d && *d) dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = fs::path(x) / "pocl" / "kcache";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = fs::path(h) / ".cache" / "pocl" / "kcache";
  std::error_code ec;
  return !dir.empty() && fs::is_directory(dir, ec) && !fs::is_empty(dir, ec);
}
constexpr std::string_view kStamp = "ttt-cl program stamp 1: built from source, the driver's cache holds the binary\n";
// A stamped program that takes longer than this to build was compiled again
// (the driver's cache was emptied): counted as built, so that tools warm up.
constexpr double kStampedBuildS = 2.0;

// Writes `bytes` to `file` through a temporary name, so that readers see the
// old file or the whole new one; a cache, so failures are ignored.
void store(const fs::path& file, const void* bytes, size_t len) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  const fs::path tmp = file.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(static_cast<const char*>(bytes), std::streamsize(len));
  }
  fs::rename(tmp, file, ec);
  if (ec) fs::remove(tmp, ec);
}

}  // namespace

std::string kernel_source(const std::string& family) {
  // common.cl holds shared helpers; a line "// ttt-include: NAME" is replaced by cl/NAME.cl (a part
  // shared by a few families). #line keeps compiler messages pointing at the family file's lines.
  constexpr std::string_view tag = "// ttt-include: ";
  std::string out = raw_source("common") + "\n#line 1\n", line;
  std::istringstream in(raw_source(family));
  for (int n = 1; std::getline(in, line); ++n)
    out += line.rfind(tag, 0) == 0 ? fmt::format("#line 1\n{}\n#line {}\n", raw_source(line.substr(tag.size())), n + 1)
                                   : line + "\n";
  return out;
}

std::string program_cache_dir() {
  if (const char* d = std::getenv("TTT_CACHE_DIR"); d && *d) return std::string(d) == "off" ? std::string() : d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "ttt-cl").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "ttt-cl").string();
  return {};
}

ProgramCache::~ProgramCache() {
  for (auto& [k, kern] : kernels_) clReleaseKernel(kern);
  for (auto& [k, prog] : programs_) clReleaseProgram(prog);
}

cl_kernel ProgramCache::kernel(const std::string& family, const std::string& name, const std::string& options) {
  const std::string key = family + '\n' + options + '\n' + name;
  if (auto it = kernels_.find(key); it != kernels_.end()) return it->second;
  cl_program prog = program(family, options);
  cl_int err = CL_SUCCESS;
  cl_kernel k = clCreateKernel(prog, name.c_str(), &err);
  check(err, "clCreateKernel",
        fmt::format("kernel '{}' of family '{}' on '{}'", name, family, ctx_.device().name));
  KernelLimits lim;
  const cl_device_id dev = ctx_.device().id;
  cl_ulong local = 0;
  const std::string where = fmt::format("kernel '{}' of family '{}' on '{}'", name, family, ctx_.device().name);
  err = clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof(lim.work_group), &lim.work_group, nullptr);
  if (err == CL_SUCCESS) err = clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof(local), &local, nullptr);
  if (err != CL_SUCCESS) clReleaseKernel(k);
  check(err, "clGetKernelWorkGroupInfo", where);
  if (clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE, sizeof(lim.preferred_multiple),
                               &lim.preferred_multiple, nullptr) != CL_SUCCESS ||
      lim.preferred_multiple == 0)
    lim.preferred_multiple = 1;
  lim.local_mem = size_t(local);
  kernels_.emplace(key, k);
  limits_.emplace(k, lim);
  return k;
}

void ProgramCache::begin_batch(int steps) {
  batch_planned_ = std::max(steps, 0);
  batch_index_ = 0;
}

void ProgramCache::next_in_batch() {
  if (batch_planned_) batch_planned_ = std::max(batch_planned_, ++batch_index_);  // more steps than planned: it grows
}

void ProgramCache::end_batch() {
  if (batch_planned_ && listener_) listener_({"", batch_index_, batch_planned_, true});
  batch_planned_ = batch_index_ = 0;
}

void ProgramCache::external(const std::string& label, const std::function<void()>& run) {
  const bool cold = built_ > 0 && listener_;
  if (cold) listener_({label, batch_index_, batch_planned_, false});
  run();
  if (cold) listener_({label, batch_index_, batch_planned_, true});
}

cl_program ProgramCache::program(const std::string& family, const std::string& options) {
  auto key = std::make_pair(family, options);
  if (auto it = programs_.find(key); it != programs_.end()) return it->second;
  if (!batch_planned_) unplanned_.push_back(options.empty() ? family : family + " " + options);
  cl_program p = build(family, options);
  programs_.emplace(std::move(key), p);
  return p;
}

bool cpu_forms(const DeviceInfo& dev) {
  const char* forms = std::getenv("TTT_KERNEL_FORMS");
  if (forms && std::string(forms) == "cpu") return true;
  if (forms && std::string(forms) == "gpu") return false;
  // Mesa's llvmpipe (rusticl) is a CPU device that runs work-items as SIMD
  // lanes, and its compiler ends every loop of a kernel once the loops have
  // gone round 65535 times in all (LP_MAX_TGSI_LOOP_ITERATIONS, one budget a
  // kernel invocation, shared by every loop: Mesa 22.3 gallivm), leaving the
  // rest of the work silently undone. The CPU forms' long fixed sweeps (a
  // head-long axpy per key, for every key of the window) run past it on
  // realistic windows; the GPU forms keep per-work-item loops short.
  if (dev.name.find("llvmpipe") != std::string::npos) return false;
  return (dev.type & CL_DEVICE_TYPE_CPU) != 0;
}

size_t loop_budget(const DeviceInfo& dev) {
  if (const char* b = std::getenv("TTT_LOOP_BUDGET"); b && *b) return size_t(std::strtoull(b, nullptr, 10));
  return dev.name.find("llvmpipe") != std::string::npos ? 65535 : 0;
}

cl_program ProgramCache::build(const std::string& family, const std::string& options) {
  const DeviceInfo& dev = ctx_.device();
  const std::string src = kernel_source(family);
  const std::string full_options = std::string("-cl-std=CL1.2 ") + (cpu_forms(dev) ? "-DTTT_CPU=1 " : "") + options;
  const uint64_t h = fnv1a({src, full_options, dev.name, dev.vendor, dev.driver_version, dev.device_version,
                            dev.platform_name, dev.platform_version});
  const std::string dir = program_cache_dir();
  const fs::path file = dir.empty() ? fs::path() : fs::path(dir) / fmt::format("{}-{:016x}.bin", family, h);
  cl_int err = CL_SUCCESS;

  // 1. A cached binary, if one loads and builds; anything wrong with it falls through to source.
  const bool stamp = driver_caches(dev);
  if (!file.empty()) {
    std::ifstream f(file, std::ios::binary);
    if (f) {
      std::vector<unsigned char> bin((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      if (stamp && driver_cache_present() &&
          std::string_view(reinterpret_cast<const char*>(bin.data()), bin.size()) == kStamp) {
        const char* s = src.c_str();
        const size_t n = src.size();
        const auto t0 = std::chrono::steady_clock::now();
        cl_program p = clCreateProgramWithSource(ctx_.context(), 1, &s, &n, &err);
        if (p && err == CL_SUCCESS && clBuildProgram(p, 1, &dev.id, full_options.c_str(), nullptr, nullptr) == CL_SUCCESS) {
          const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          ++(dt > kStampedBuildS ? built_ : loaded_);
          return p;
        }
        if (p) clReleaseProgram(p);
      }
      const unsigned char* ptr = bin.data();
      const size_t len = bin.size();
      cl_int status = CL_SUCCESS;
      cl_program p = len ? clCreateProgramWithBinary(ctx_.context(), 1, &dev.id, &len, &ptr, &status, &err) : nullptr;
      if (p && err == CL_SUCCESS && status == CL_SUCCESS &&
          clBuildProgram(p, 1, &dev.id, full_options.c_str(), nullptr, nullptr) == CL_SUCCESS) {
        ++loaded_;
        return p;
      }
      if (p) clReleaseProgram(p);
    }
  }

  // 2. From source.
  if (ctx_.compile_hook()) ctx_.compile_hook()(family);
  if (listener_) listener_({family, batch_index_, batch_planned_, false, retry_});
  const char* s = src.c_str();
  const size_t n = src.size();
  cl_program p = clCreateProgramWithSource(ctx_.context(), 1, &s, &n, &err);
  check(err, "clCreateProgramWithSource", fmt::format("family '{}' on '{}'", family, dev.name));
  err = clBuildProgram(p, 1, &dev.id, full_options.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    const std::string log = build_log(p, dev.id);
    clReleaseProgram(p);
    check(err, "clBuildProgram",
          fmt::format("family '{}' with options '{}' on '{}' ({}, driver {}); build log:\n{}", family, full_options,
                      dev.name, dev.platform_name, dev.driver_version, log));
  }
  ++built_;
  if (listener_) listener_({family, batch_index_, batch_planned_, true, retry_});

  // 3. Store the binary, or the stamp where the driver keeps it.
  if (!file.empty() && stamp) {
    store(file, kStamp.data(), kStamp.size());
  } else if (!file.empty()) {
    size_t len = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof(len), &len, nullptr) == CL_SUCCESS && len > 0) {
      std::vector<unsigned char> bin(len);
      unsigned char* ptr = bin.data();
      if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof(ptr), &ptr, nullptr) == CL_SUCCESS) store(file, bin.data(), len);
    }
  }
  return p;
}

}  // namespace ttt::host
