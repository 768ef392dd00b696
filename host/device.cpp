// Device discovery and selection, the Context and the Profiler.
#include "host/device.hpp"
#include "host/error.hpp"

#include "host/gemm.hpp"
#include "host/program.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace ttt::host {
namespace {

std::string platform_str(cl_platform_id p, cl_platform_info what) {
  size_t n = 0;
  if (clGetPlatformInfo(p, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::string s(n, '\0');
  clGetPlatformInfo(p, what, n, s.data(), nullptr);
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string device_str(cl_device_id d, cl_device_info what) {
  size_t n = 0;
  if (clGetDeviceInfo(d, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::string s(n, '\0');
  clGetDeviceInfo(d, what, n, s.data(), nullptr);
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

template <typename T>
T device_val(cl_device_id d, cl_device_info what) {
  T v{};
  clGetDeviceInfo(d, what, sizeof(T), &v, nullptr);
  return v;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

DeviceInfo device_info(cl_platform_id platform, cl_device_id device, int p, int d) {
  DeviceInfo info;
  info.platform = platform;
  info.id = device;
  info.platform_index = p;
  info.device_index = d;
  info.platform_name = platform_str(platform, CL_PLATFORM_NAME);
  info.platform_version = platform_str(platform, CL_PLATFORM_VERSION);
  info.name = device_str(device, CL_DEVICE_NAME);
  info.vendor = device_str(device, CL_DEVICE_VENDOR);
  info.driver_version = device_str(device, CL_DRIVER_VERSION);
  info.device_version = device_str(device, CL_DEVICE_VERSION);
  info.opencl_c_version = device_str(device, CL_DEVICE_OPENCL_C_VERSION);
  info.type = device_val<cl_device_type>(device, CL_DEVICE_TYPE);
  info.Device::type = info.type & CL_DEVICE_TYPE_GPU           ? DeviceType::GPU
                      : info.type & CL_DEVICE_TYPE_CPU         ? DeviceType::CPU
                      : info.type & CL_DEVICE_TYPE_ACCELERATOR ? DeviceType::Accelerator
                                                               : DeviceType::Other;
  info.compute_units = device_val<cl_uint>(device, CL_DEVICE_MAX_COMPUTE_UNITS);
  info.clock_mhz = device_val<cl_uint>(device, CL_DEVICE_MAX_CLOCK_FREQUENCY);
  info.global_mem = device_val<cl_ulong>(device, CL_DEVICE_GLOBAL_MEM_SIZE);
  info.local_mem = device_val<cl_ulong>(device, CL_DEVICE_LOCAL_MEM_SIZE);
  info.max_alloc = device_val<cl_ulong>(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  info.max_work_group = device_val<size_t>(device, CL_DEVICE_MAX_WORK_GROUP_SIZE);
  clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof(info.max_work_item),
                  info.max_work_item, nullptr);
  const std::string ext = device_str(device, CL_DEVICE_EXTENSIONS);
  info.fp16 = ext.find("cl_khr_fp16") != std::string::npos;
  info.fp64 = ext.find("cl_khr_fp64") != std::string::npos;
  return info;
}

}  // namespace

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  cl_uint np = 0;
  // No ICD at all answers CL_PLATFORM_NOT_FOUND_KHR: that is "no devices", not an error.
  if (clGetPlatformIDs(0, nullptr, &np) != CL_SUCCESS || np == 0) return out;
  std::vector<cl_platform_id> platforms(np);
  check(clGetPlatformIDs(np, platforms.data(), nullptr), "clGetPlatformIDs");
  for (cl_uint p = 0; p < np; ++p) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, nullptr, &nd) != CL_SUCCESS) continue;
    std::vector<cl_device_id> devs(nd);
    check(clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, nd, devs.data(), nullptr), "clGetDeviceIDs");
    for (cl_uint d = 0; d < nd; ++d) out.push_back(device_info(platforms[p], devs[d], int(p), int(d)));
  }
  return out;
}

DeviceInfo select_device(const std::string& spec_in) {
  std::string spec = spec_in;
  std::string source = "--device";
  if (spec.empty()) {
    if (const char* env = std::getenv("TTT_DEVICE"); env && *env) {
      spec = env;
      source = "TTT_DEVICE";
    }
  }
  const auto devices = list_devices();
  if (devices.empty())
    throw Error("no OpenCL device found: install an OpenCL driver (ICD), e.g. pocl-opencl-icd for the CPU");
  if (spec.empty()) {
    for (const auto& d : devices)
      if (d.type & CL_DEVICE_TYPE_GPU) return d;
    return devices.front();
  }
  // A number is an index, never part of a name ("1" must not pick a device named "...avx512"):
  // "N" the N-th device of the list (ttt-info's order, from 0), "P:D" platform and device indices.
  int p = -1, d = -1, consumed = 0;
  const bool digits = spec.find_first_not_of("0123456789") == std::string::npos;
  if (digits) {
    const unsigned long long n = spec.size() <= 9 ? std::stoull(spec) : ~0ull;
    if (n < devices.size()) return devices[size_t(n)];
  } else if (std::sscanf(spec.c_str(), "%d:%d%n", &p, &d, &consumed) == 2 && size_t(consumed) == spec.size()) {
    for (const auto& dev : devices)
      if (dev.platform_index == p && dev.device_index == d) return dev;
  } else {
    const std::string want = lower(spec);
    for (const auto& dev : devices)
      if (lower(dev.name).find(want) != std::string::npos) return dev;
  }
  throw Error(fmt::format("{} '{}' matches no OpenCL device; available devices:\n{}", source, spec,
                          describe_devices(std::vector<Device>(devices.begin(), devices.end()))));
}

// ---------------------------------------------------------------------------

void Profiler::record(const std::string& name, cl_event ev) {
  pending_.emplace_back(name, ev);
  if (pending_.size() > 4096) collect();  // bound the number of live events
}

void Profiler::add(const std::string& name, double ms) { totals_ms_[name] += ms; }

void Profiler::collect() {
  for (auto& [name, ev] : pending_) {
    cl_ulong t0 = 0, t1 = 0;
    if (clWaitForEvents(1, &ev) == CL_SUCCESS &&
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof(t0), &t0, nullptr) == CL_SUCCESS &&
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof(t1), &t1, nullptr) == CL_SUCCESS &&
        t1 >= t0)
      totals_ms_[name] += double(t1 - t0) * 1e-6;
    clReleaseEvent(ev);
  }
  pending_.clear();
}

void Profiler::reset() {
  collect();
  totals_ms_.clear();
}

Profiler::~Profiler() {
  for (auto& p : pending_) clReleaseEvent(p.second);
}

// ---------------------------------------------------------------------------

Context::Context(const DeviceInfo& device) : device_(device) {
  cl_int err = CL_SUCCESS;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, cl_context_properties(device.platform), 0};
  context_ = clCreateContext(props, 1, &device_.id, nullptr, nullptr, &err);
  check(err, "clCreateContext", fmt::format("on '{}'", device_.name));
  queue_ = clCreateCommandQueue(context_, device_.id, CL_QUEUE_PROFILING_ENABLE, &err);
  if (err != CL_SUCCESS) {
    clReleaseContext(context_);
    check(err, "clCreateCommandQueue", fmt::format("on '{}'", device_.name));
  }
  programs_ = std::make_unique<ProgramCache>(*this);
}

Context::Context(cl_context context, cl_command_queue queue) {
  if (!context || !queue) throw Error("an OpenCL context and command queue to wrap must not be null");
  cl_context of_queue = nullptr;
  cl_device_id id = nullptr;
  cl_command_queue_properties props = 0;
  check(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof(of_queue), &of_queue, nullptr), "clGetCommandQueueInfo",
        "CL_QUEUE_CONTEXT of the queue to wrap");
  check(clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof(id), &id, nullptr), "clGetCommandQueueInfo",
        "CL_QUEUE_DEVICE of the queue to wrap");
  check(clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof(props), &props, nullptr), "clGetCommandQueueInfo",
        "CL_QUEUE_PROPERTIES of the queue to wrap");
  if (of_queue != context) throw Error("the command queue to wrap belongs to another OpenCL context");
  // The engine orders its work by the queue alone (no events between launches).
  if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
    throw Error("the command queue to wrap is out of order; ttt needs an in-order queue");
  // The device's indices and names as list_devices() gives them; a device it
  // does not list (a sub-device, say) keeps indices -1.
  bool found = false;
  for (const DeviceInfo& d : list_devices())
    if (d.id == id) {
      device_ = d;
      found = true;
    }
  if (!found) {
    cl_platform_id platform = nullptr;
    check(clGetDeviceInfo(id, CL_DEVICE_PLATFORM, sizeof(platform), &platform, nullptr), "clGetDeviceInfo",
          "CL_DEVICE_PLATFORM of the queue's device");
    device_ = device_info(platform, id, -1, -1);
  }
  // Held until this Context goes: the caller may release its own references at any time.
  check(clRetainContext(context), "clRetainContext", fmt::format("on '{}'", device_.name));
  if (const cl_int err = clRetainCommandQueue(queue); err != CL_SUCCESS) {
    clReleaseContext(context);
    check(err, "clRetainCommandQueue", fmt::format("on '{}'", device_.name));
  }
  context_ = context;
  queue_ = queue;
  programs_ = std::make_unique<ProgramCache>(*this);
}

Context::~Context() {
  if (queue_) clFinish(queue_);
  drop_marks(true);
  clear_gemm_cache();
  programs_.reset();
  profiler_.reset();
  if (queue_) clReleaseCommandQueue(queue_);
  if (context_) clReleaseContext(context_);
}

void Context::finish() {
  check(clFinish(queue_), "clFinish", fmt::format("on '{}'", device_.name));
  std::lock_guard<std::mutex> lock(marks_mutex_);
  drop_marks(true);
  passed_.clear();  // nothing is in flight: the next work has passed no mark yet
}

void Context::mark(std::string label) {
  if (!marking_) return;
  cl_event ev = nullptr;
  check(clEnqueueMarkerWithWaitList(queue_, 0, nullptr, &ev), "clEnqueueMarkerWithWaitList",
        fmt::format("mark '{}' on '{}'", label, device_.name));
  // Sent on now: a driver may run what it holds as one batch and set every
  // status in it at the end (rusticl), which would pass all the marks at once.
  flush();
  std::lock_guard<std::mutex> lock(marks_mutex_);
  marks_.emplace_back(ev, std::move(label));
  if (marks_.size() > 256) drop_marks(false);  // a long queue between finishes: bound the live events
}

// Releases the events of the markers passed (all of them when all_passed: after a clFinish), newest label kept.
void Context::drop_marks(bool all_passed) {
  size_t last = marks_.size();  // the newest passed, if any; markers pass in order (in-order queue)
  if (all_passed) {
    last = marks_.empty() ? last : marks_.size() - 1;
  } else {
    for (size_t i = marks_.size(); i-- > 0;) {
      cl_int status = CL_QUEUED;
      if (clGetEventInfo(marks_[i].first, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, nullptr) ==
              CL_SUCCESS &&
          status == CL_COMPLETE) {
        last = i;
        break;
      }
    }
  }
  if (last == marks_.size()) return;
  passed_ = std::move(marks_[last].second);
  for (size_t i = 0; i <= last; ++i) clReleaseEvent(marks_[i].first);
  marks_.erase(marks_.begin(), marks_.begin() + std::ptrdiff_t(last) + 1);
}

std::string Context::passed() {
  std::lock_guard<std::mutex> lock(marks_mutex_);
  drop_marks(false);
  return passed_;
}
void Context::flush() { check(clFlush(queue_), "clFlush", fmt::format("on '{}'", device_.name)); }

std::optional<bool> env_switch(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  const std::string s(v);
  if (s == "on" || s == "off") return s == "on";
  throw Error(fmt::format("${}='{}': give on or off (or leave it unset)", name, s));
}

}  // namespace ttt::host
