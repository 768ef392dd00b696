// Kernel argument setting and checked launches.
#include "host/kernel.hpp"
#include "host/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

namespace ttt::host {

std::string Range::str() const {
  if (dims == 1) return fmt::format("[{}]", v[0]);
  if (dims == 2) return fmt::format("[{},{}]", v[0], v[1]);
  return fmt::format("[{},{},{}]", v[0], v[1], v[2]);
}

Kernel::Kernel(Context& ctx, const std::string& family, const std::string& name, const std::string& options)
    : ctx_(ctx), k_(ctx.programs().kernel(family, name, options)), lim_(&ctx.programs().limits(k_)), name_(name) {}

void Kernel::set_raw(cl_uint i, size_t size, const void* value) {
  check(clSetKernelArg(k_, i, size, value), "clSetKernelArg",
        fmt::format("kernel '{}' argument {} on '{}'", name_, i, ctx_.device().name));
}

void Kernel::set(cl_uint i, const Buffer& b) {
  if (!b) throw Error(fmt::format("kernel '{}' argument {}: empty buffer", name_, i));
  cl_mem m = b.get();
  set_raw(i, sizeof(cl_mem), &m);
}

void Kernel::set(cl_uint i, const Local& l) {
  local_args_bytes_ += l.bytes;
  set_raw(i, l.bytes, nullptr);
}

size_t Kernel::max_work_group() const {
  const DeviceInfo& dev = ctx_.device();
  return std::max<size_t>(1, std::min({lim_->work_group, dev.max_work_group, dev.max_work_item[0]}));
}

size_t Kernel::fit(size_t want) const {
  const size_t limit = max_work_group();
  if (want <= limit) return want;
  size_t wg = 1;
  while (wg * 2 <= limit) wg *= 2;
  return wg;
}

Probe probe(Context& ctx, const std::string& family, std::initializer_list<const char*> names,
            const std::string& options) {
  Probe p{SIZE_MAX, 0};
  for (const char* name : names) {
    const Kernel k(ctx, family, name, options);
    p.work_group = std::min(p.work_group, k.max_work_group());
    p.local_mem = std::max(p.local_mem, k.local_mem());
  }
  return p;
}

namespace {

// $TTT_LOG_LAUNCH=1: one line on stderr for the first launch of each (kernel,
// work-group size, device), with the sizes as passed to clEnqueueNDRangeKernel.
void log_launch(const std::string& name, const Range& global, const Range& local, const std::string& device) {
  static const bool on = [] {
    const char* e = std::getenv("TTT_LOG_LAUNCH");
    return e && *e && std::string(e) != "0";
  }();
  if (!on) return;
  static std::mutex mu;
  static std::set<std::string> seen;
  const std::string key = name + ' ' + local.str() + ' ' + device;
  const std::lock_guard<std::mutex> lock(mu);
  if (!seen.insert(key).second) return;
  std::fprintf(stderr, "ttt launch: kernel '%s' global=%s local=%s on '%s'\n", name.c_str(), global.str().c_str(),
               local.str().c_str(), device.c_str());
}

}  // namespace

void Kernel::launch(const Range& global, const Range& local) {
  const DeviceInfo& dev = ctx_.device();
  auto where = [&] {
    return fmt::format("kernel '{}' global={} local={} on '{}'", name_, global.str(), local.str(), dev.name);
  };
  const size_t local_args = local_args_bytes_;
  if (global.dims != local.dims)
    throw ClError(CL_INVALID_WORK_DIMENSION, "CL_INVALID_WORK_DIMENSION (-53) before clEnqueueNDRangeKernel: " + where());
  for (size_t d = 0; d < global.dims; ++d) {
    if (local.v[d] == 0 || global.v[d] % local.v[d] != 0)
      throw ClError(CL_INVALID_WORK_GROUP_SIZE,
                    "CL_INVALID_WORK_GROUP_SIZE (-54) before clEnqueueNDRangeKernel (global not a multiple of local): " +
                        where());
    if (local.v[d] > dev.max_work_item[d])
      throw ClError(CL_INVALID_WORK_ITEM_SIZE,
                    fmt::format("CL_INVALID_WORK_ITEM_SIZE (-55) before clEnqueueNDRangeKernel (device allows {} in "
                                "dimension {}): {}",
                                dev.max_work_item[d], d, where()));
  }
  if (global.product() == 0) return;  // nothing to do
  const size_t wg_limit = std::min(lim_->work_group, dev.max_work_group);
  if (local.product() > wg_limit)
    throw ClError(CL_INVALID_WORK_GROUP_SIZE,
                  fmt::format("CL_INVALID_WORK_GROUP_SIZE (-54) before clEnqueueNDRangeKernel (at most {} work-items "
                              "per group): {}",
                              wg_limit, where()));
  const cl_ulong static_local = lim_->local_mem;
  // Kept from before any argument was set: the kernel's own __local arrays; its __local arguments add to them.
  const cl_ulong need = static_local + local_args;
  if (need > dev.local_mem)
    throw ClError(CL_OUT_OF_RESOURCES,
                  fmt::format("CL_OUT_OF_RESOURCES (-5) before clEnqueueNDRangeKernel ({} bytes of local memory, "
                              "device has {}): {}",
                              need, dev.local_mem, where()));
  log_launch(name_, global, local, dev.name);
  cl_event ev = nullptr;
  Profiler& prof = ctx_.profiler();
  check(clEnqueueNDRangeKernel(ctx_.queue(), k_, cl_uint(global.dims), nullptr, global.v.data(), local.v.data(), 0,
                               nullptr, prof.enabled() ? &ev : nullptr),
        "clEnqueueNDRangeKernel", where());
  if (ev) prof.record(name_, ev);
}

}  // namespace ttt::host
