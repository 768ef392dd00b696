// The host layer's devices: discovery, selection (--device / TTT_DEVICE) and
// the Context that owns the OpenCL context, the profiling queue, the program
// cache and the profiler. Nothing here knows about models; the public API
// (include/ttt/device.hpp) wraps it as ttt::Device and ttt::Runtime.
#pragma once

#include "ttt/device.hpp"
#include "ttt/error.hpp"

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ttt::host {

// An on/off switch read from the environment: nullopt when $name is unset or
// empty, true for "on", false for "off"; any other value is an Error naming
// the variable (a misspelt switch must not silently measure the other path).
std::optional<bool> env_switch(const char* name);

// A device as the public API describes it (ttt::Device: names, type, limits),
// and what only the host layer needs: its OpenCL handles, its type bits and
// its per-dimension work-item limits. The public Device is this one, sliced.
struct DeviceInfo : Device {
  cl_platform_id platform = nullptr;
  cl_device_id id = nullptr;
  // CL_DEVICE_TYPE bits, as the launchers test them; Device::type is the same as the public enum.
  cl_device_type type = 0;
  size_t max_work_item[3] = {0, 0, 0};
};

// Every device of every platform, in platform order. Empty when no ICD is installed.
std::vector<DeviceInfo> list_devices();

// spec: "P:D" indices or a case-insensitive substring of the device name. An
// empty spec falls back to $TTT_DEVICE, then the first GPU, then the first
// device. Throws an Error that lists the available devices when nothing matches.
DeviceInfo select_device(const std::string& spec = {});

class ProgramCache;

// Kernel execution times gathered from profiling events, by kernel name.
class Profiler {
 public:
  bool enabled() const { return enabled_; }
  void enable(bool on) { enabled_ = on; }
  void record(const std::string& name, cl_event ev);  // takes ownership of ev
  void add(const std::string& name, double ms);      // a time measured some other way
  void collect();                                     // waits for and sums pending events
  const std::map<std::string, double>& totals_ms() const { return totals_ms_; }
  void reset();
  ~Profiler();

 private:
  bool enabled_ = false;
  std::vector<std::pair<std::string, cl_event>> pending_;
  std::map<std::string, double> totals_ms_;
};

// OpenCL context + in-order profiling queue on one device.
class Context {
 public:
  explicit Context(const DeviceInfo& device);
  // Wraps a caller's context and in-order queue (both retained, released by the
  // destructor); kernel times need the queue created with CL_QUEUE_PROFILING_ENABLE.
  Context(cl_context context, cl_command_queue queue);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const DeviceInfo& device() const { return device_; }
  cl_context context() const { return context_; }
  cl_command_queue queue() const { return queue_; }
  ProgramCache& programs() { return *programs_; }
  Profiler& profiler() { return profiler_; }
  void finish();  // clFinish, with the device named on failure
  void flush();   // clFlush: start queued work without waiting for it

  // Marks: how far the device has got in the work enqueued so far, seen
  // without waiting for it, for progress displays on slow devices. While
  // marking is on, mark(label) enqueues a marker after everything enqueued
  // before it (no host wait: the queue stays full), and passed() gives the
  // label of the last marker the device has passed since the last finish() ("" when
  // none has). Off, mark() costs one test. passed() and set_marking() may be
  // called from another thread; the rest is the queue's thread's.
  void set_marking(bool on) { marking_ = on; }
  bool marking() const { return marking_; }
  void mark(std::string label);
  std::string passed();

  // Launch choices that depend only on this device (a kernel's work-group size,
  // say), computed once per context under `key`. A Context is used by one
  // thread at a time, like its queue; the memo lives and dies with it.
  template <typename T, typename Make>
  const T& memo(const std::string& key, Make make) {
    auto it = memo_.find(key);
    if (it == memo_.end()) it = memo_.emplace(key, std::make_shared<T>(make())).first;
    return *static_cast<const T*>(it->second.get());
  }

  // Called with the family name before a kernel program is compiled from
  // source (a program-cache miss: slow, so a tool can say why it waits).
  using CompileHook = std::function<void(const std::string& family)>;
  void on_compile(CompileHook hook) { compile_hook_ = std::move(hook); }
  const CompileHook& compile_hook() const { return compile_hook_; }

 private:
  DeviceInfo device_;
  cl_context context_ = nullptr;
  cl_command_queue queue_ = nullptr;
  std::unique_ptr<ProgramCache> programs_;
  Profiler profiler_;
  std::map<std::string, std::shared_ptr<void>> memo_;

  CompileHook compile_hook_;

  std::atomic<bool> marking_{false};
  std::mutex marks_mutex_;
  std::deque<std::pair<cl_event, std::string>> marks_;  // enqueued, not yet seen passed, oldest first
  std::string passed_;                                   // the label of the last marker seen passed
  void drop_marks(bool all_passed);                      // with marks_mutex_ held
};

}  // namespace ttt::host
