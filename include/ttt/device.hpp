// The devices the library runs on and the Runtime that holds one: listing,
// selection by index or name (the tools' --device / TTT_DEVICE rules) and a
// description of each. No OpenCL type appears here: ttt/opencl.hpp is the one
// header that does, for callers who bring their own context and queue.
#pragma once

#include "ttt/error.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ttt {

enum class DeviceType { GPU, CPU, Accelerator, Other };

struct Device {
  int platform_index = 0, device_index = 0;  // -1: a device list_devices() does not list (see ttt/opencl.hpp)
  std::string platform_name, platform_version;
  std::string name, vendor, driver_version, device_version, opencl_c_version;
  DeviceType type = DeviceType::Other;
  unsigned compute_units = 0, clock_mhz = 0;
  uint64_t global_mem = 0, local_mem = 0, max_alloc = 0;  // bytes
  size_t max_work_group = 0;
  bool fp16 = false, fp64 = false;

  std::string type_name() const;  // "GPU", "CPU", "accelerator", "other"
  std::string spec() const;       // "P:D", accepted by select_device
  std::string label() const;      // "P:D 'name' (platform)"
};

// Every device of every platform, in platform order. Empty when no OpenCL driver is installed.
std::vector<Device> list_devices();

// spec: "P:D" indices or a case-insensitive substring of the device name. An
// empty spec falls back to $TTT_DEVICE, then the first GPU, then the first
// device. Throws ttt::Error listing the available devices when nothing matches.
Device select_device(const std::string& spec = {});

// One line per device, for error messages and ttt-info.
std::string describe_devices(const std::vector<Device>& devices);

namespace detail {
struct RuntimeAccess;
}

// One device, ready to run on: its context, an in-order queue and the cache of
// compiled kernels. Engines (ttt/engine.hpp) run on a Runtime, which must
// outlive them and stay where it is while they do. Used by one thread at a time
// (mark_progress and reached excepted).
class Runtime {
 public:
  explicit Runtime(const Device& device);
  // select_device(spec): "" is $TTT_DEVICE, else the first GPU, else the first device.
  explicit Runtime(const std::string& spec = {});
  ~Runtime();
  Runtime(Runtime&&) noexcept;
  Runtime& operator=(Runtime&&) noexcept;

  const Device& device() const;
  // Waits for all enqueued work; throws ttt::Error naming the device when it failed.
  void finish();
  // Called with the kernel family's name before a kernel program is compiled
  // from source (a cache miss: slow, so a tool can say why it waits).
  void on_compile(std::function<void(const std::string& family)> hook);
  // Progress inside long device work, for displays on slow devices (where one
  // mini-batch can take a minute). While on, the engines enqueue a marker after
  // each block of a forward and of a backward, after the loss and after the
  // update (no host wait: the work stays queued as it was), and reached() says
  // which the device has passed last since the work was last waited for, e.g.
  // "tokens 0-63: forward, block 7/12 done" ("" when none). These two are the
  // calls another thread may make while the runtime works (a display's timer).
  void mark_progress(bool on);
  std::string reached() const;

  struct Impl;

 private:
  friend struct detail::RuntimeAccess;
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ttt
