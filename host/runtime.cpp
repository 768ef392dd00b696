// The public device API (include/ttt/device.hpp) and the OpenCL interop
// (include/ttt/opencl.hpp) over the host layer's devices and Context.
#include "host/runtime.hpp"

#include "ttt/opencl.hpp"

#include <utility>

namespace ttt {
namespace host {

Runtime make_runtime(std::unique_ptr<Context> ctx) {
  auto impl = std::make_unique<Runtime::Impl>();
  impl->ctx = std::move(ctx);
  return detail::RuntimeAccess::make(std::move(impl));
}

namespace {

DeviceInfo host_device(const Device& d) {
  for (const DeviceInfo& h : list_devices())
    if (h.platform_index == d.platform_index && h.device_index == d.device_index) return h;
  return select_device(d.spec());  // throws, listing the devices there are
}

}  // namespace
}  // namespace host

std::string Device::type_name() const {
  switch (type) {
    case DeviceType::GPU: return "GPU";
    case DeviceType::CPU: return "CPU";
    case DeviceType::Accelerator: return "accelerator";
    case DeviceType::Other: break;
  }
  return "other";
}

std::string Device::spec() const { return std::to_string(platform_index) + ":" + std::to_string(device_index); }
std::string Device::label() const { return spec() + " '" + name + "' (" + platform_name + ")"; }

std::vector<Device> list_devices() {
  std::vector<Device> out;
  for (const host::DeviceInfo& d : host::list_devices()) out.push_back(d);
  return out;
}

Device select_device(const std::string& spec) { return host::select_device(spec); }

std::string describe_devices(const std::vector<Device>& devices) {
  if (devices.empty()) return "  (no OpenCL devices: is an ICD such as pocl-opencl-icd installed?)\n";
  std::string s;
  for (const Device& d : devices) s += "  " + d.label() + "  [" + d.type_name() + "]\n";
  return s;
}

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::Runtime(const Device& device)
    : Runtime(host::make_runtime(std::make_unique<host::Context>(host::host_device(device)))) {}
Runtime::Runtime(const std::string& spec)
    : Runtime(host::make_runtime(std::make_unique<host::Context>(host::select_device(spec)))) {}
Runtime::~Runtime() = default;
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;

const Device& Runtime::device() const { return impl_->ctx->device(); }
void Runtime::finish() { impl_->ctx->finish(); }
void Runtime::on_compile(std::function<void(const std::string& family)> hook) {
  impl_->ctx->on_compile(std::move(hook));
}

void Runtime::mark_progress(bool on) { impl_->ctx->set_marking(on); }
std::string Runtime::reached() const { return impl_->ctx->passed(); }

namespace opencl {

Runtime wrap(cl_context context, cl_command_queue queue) {
  return host::make_runtime(std::make_unique<host::Context>(context, queue));
}

cl_context context(const Runtime& rt) { return host::context(rt).context(); }
cl_command_queue queue(const Runtime& rt) { return host::context(rt).queue(); }
cl_device_id device(const Runtime& rt) { return host::context(rt).device().id; }

}  // namespace opencl
}  // namespace ttt
