// What the public ttt::Runtime holds (include/ttt/device.hpp): a host::Context.
// Internal code that launches kernels reaches it through host::context(rt).
#pragma once

#include "host/device.hpp"
#include "ttt/device.hpp"

#include <memory>

namespace ttt {

struct Runtime::Impl {
  std::unique_ptr<host::Context> ctx;  // its device() is the public Device too (host::DeviceInfo derives from it)
};

namespace detail {
struct RuntimeAccess {
  static Runtime::Impl& impl(const Runtime& rt) { return *rt.impl_; }
  static Runtime make(std::unique_ptr<Runtime::Impl> impl) { return Runtime(std::move(impl)); }
};
}  // namespace detail

namespace host {

inline Context& context(const Runtime& rt) { return *detail::RuntimeAccess::impl(rt).ctx; }
// A Runtime owning ctx.
Runtime make_runtime(std::unique_ptr<Context> ctx);

}  // namespace host
}  // namespace ttt
