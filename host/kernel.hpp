// Kernel handle with variadic argument setting and a launch that checks the
// work sizes and local memory against the device before enqueueing.
#pragma once

#include "host/buffer.hpp"
#include "host/program.hpp"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <cstdint>
#include <string>
#include <type_traits>

namespace ttt::host {

// A __local argument of `bytes` bytes.
struct Local {
  size_t bytes;
};

struct Range {
  size_t dims = 1;
  std::array<size_t, 3> v{1, 1, 1};
  Range(size_t x) : dims(1), v{x, 1, 1} {}
  Range(size_t x, size_t y) : dims(2), v{x, y, 1} {}
  Range(size_t x, size_t y, size_t z) : dims(3), v{x, y, z} {}
  size_t product() const { return v[0] * v[1] * v[2]; }
  std::string str() const;
};

// Rounds n up to a multiple of m (m > 0).
inline size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

class Kernel {
 public:
  // Looks up (and builds on first use) kernel `name` of `family` with `options`.
  Kernel(Context& ctx, const std::string& family, const std::string& name, const std::string& options = {});

  // Sets every argument in order. Scalars must be exactly int32_t, uint32_t,
  // int64_t or float, so that a size_t never reaches an `int` parameter.
  template <typename... A>
  Kernel& args(const A&... a) {
    local_args_bytes_ = 0;
    cl_uint i = 0;
    (set(i++, a), ...);
    return *this;
  }

  // Enqueues without waiting. global must be a multiple of local in every dimension.
  void launch(const Range& global, const Range& local);

  const std::string& name() const { return name_; }
  // Largest work-group size this kernel can run with on this context's device:
  // the kernel's own limit (kept from its creation) within the device's
  // work-group and first-dimension limits.
  size_t max_work_group() const;
  // The kernel's preferred multiple of its work-group size (CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE).
  size_t preferred_multiple() const { return lim_->preferred_multiple; }
  // Bytes of local memory the compiled kernel declares (CL_KERNEL_LOCAL_MEM_SIZE).
  size_t local_mem() const { return lim_->local_mem; }
  // The work-group size of a 1-D group (or a group's first dimension) for a
  // launcher that wants `want` items: want when this kernel takes it, else the
  // largest power of two it takes (reductions need powers of two). Launchers
  // round their global size up to it.
  size_t fit(size_t want) const;

 private:
  void set(cl_uint i, const Buffer& b);
  void set(cl_uint i, const Local& l);
  template <typename T>
  void set(cl_uint i, const T& v) {
    static_assert(std::is_same_v<T, int32_t> || std::is_same_v<T, uint32_t> || std::is_same_v<T, int64_t> ||
                      std::is_same_v<T, float>,
                  "kernel scalars must be int32_t, uint32_t, int64_t or float");
    set_raw(i, sizeof(T), &v);
  }
  void set_raw(cl_uint i, size_t size, const void* value);

  Context& ctx_;
  cl_kernel k_;
  const KernelLimits* lim_;
  std::string name_;
  size_t local_args_bytes_ = 0;
};

// What a family's kernels, built with one option string, allow: the smallest
// of their work-group limits and the most local memory any of them declares.
struct Probe {
  size_t work_group = 0, local_mem = 0;
};
Probe probe(Context& ctx, const std::string& family, std::initializer_list<const char*> names,
            const std::string& options);

// Work-group shapes that are compile-time constants of a program (-D, as in
// CLBlast): starting from the largest wanted `shape`, each candidate's program
// is built with options(shape) and probed; while some kernel of `names` takes
// fewer than items(shape) work-items, or more local memory than the device
// has, shrink(shape, probe) moves to the next smaller candidate (returning
// false when there is none: the last candidate is kept and launch() refuses
// it with the sizes named). Each candidate costs a program build, so callers
// keep the result (Context::memo): it depends only on the device.
template <typename Shape, typename Options, typename Items, typename Shrink>
Shape fit_shape(Context& ctx, const std::string& family, std::initializer_list<const char*> names, Shape shape,
                Options options, Items items, Shrink shrink) {
  // Every candidate after the first is a retry of one planned program (the compile progress numbers it once).
  struct Retries {
    ProgramCache& programs;
    ~Retries() { programs.set_retry(false); }
  } retries{ctx.programs()};
  for (;;) {
    const Probe p = probe(ctx, family, names, options(shape));
    const size_t wg = std::min({p.work_group, ctx.device().max_work_group, ctx.device().max_work_item[0]});
    if ((size_t(items(shape)) <= wg && p.local_mem <= ctx.device().local_mem) || !shrink(shape, p)) return shape;
    ctx.programs().set_retry(true);
  }
}

}  // namespace ttt::host
