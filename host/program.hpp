// Program build with an on-disk binary cache. A program is one kernel family
// (cl/<family>.cl, prefixed by cl/common.cl) built with one option string; it
// is built lazily, once per Context, and its binary is cached on disk keyed by
// source, options, device, driver and platform.
#pragma once

#include "host/device.hpp"

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ttt::host {

// Source of cl/<family>.cl: from $TTT_CL_DIR when set (kernel work without
// relinking), otherwise from the copy embedded at build time.
std::string kernel_source(const std::string& family);

// Directory of the on-disk program cache: $TTT_CACHE_DIR, else
// $XDG_CACHE_HOME/ttt-cl, else ~/.cache/ttt-cl. Empty when none can be used
// (TTT_CACHE_DIR=off disables the cache).
// Whether kernels take their CPU loop shapes (-DTTT_CPU=1, cl/common.cl):
// on CPU devices other than Mesa's llvmpipe (whose loop budget the CPU
// forms exceed: see program.cpp), unless $TTT_KERNEL_FORMS = cpu | gpu says
// otherwise (the Oclgrind checks run both shapes with it).
bool cpu_forms(const DeviceInfo& dev);

// How many times, in all, a kernel's loops may go round in one work-item
// before the device's compiler ends them early (silently: the rest of the
// work is left undone), or 0 for no limit. Mesa's llvmpipe: 65535
// (LP_MAX_TGSI_LOOP_ITERATIONS, one budget shared by every loop of a kernel).
// $TTT_LOOP_BUDGET = N overrides it (tests run the split paths on PoCL).
size_t loop_budget(const DeviceInfo& dev);

std::string program_cache_dir();

// What a compiled kernel allows on its device, queried once when the kernel is
// created and kept: its own work-group limit (CL_KERNEL_WORK_GROUP_SIZE, which
// can be far below the device's: rusticl on llvmpipe caps some kernels at 32),
// the preferred multiple of its group size, and the local memory it declares.
struct KernelLimits {
  size_t work_group = 0, preferred_multiple = 1, local_mem = 0;
};

class ProgramCache {
 public:
  explicit ProgramCache(Context& ctx) : ctx_(ctx) {}
  ~ProgramCache();
  ProgramCache(const ProgramCache&) = delete;
  ProgramCache& operator=(const ProgramCache&) = delete;

  // A kernel of family's program built with options. The cl_kernel stays
  // owned by the cache; one object per (family, options, name).
  cl_kernel kernel(const std::string& family, const std::string& name, const std::string& options);
  // The same kernel's limits (created with it, kept for the cache's lifetime).
  const KernelLimits& limits(cl_kernel k) const { return limits_.at(k); }

  // Progress of builds from source, which take seconds each (PoCL: ~11 s). A
  // batch of steps announced ahead (ops::prepare_kernels: each step asks for
  // one program, and maybe smaller shapes of it) numbers them "index of
  // planned"; outside a batch planned is 0. The listener hears of
  // each build from source when it starts (done = false) and ends (done =
  // true), and, with an empty family, of the end of a batch.
  struct BuildEvent {
    std::string family;
    int index = 0, planned = 0;
    bool done = false;
    bool retry = false;  // another shape of the same planned program (host::fit_shape's smaller tiles)
  };
  using BuildListener = std::function<void(const BuildEvent&)>;
  void on_build(BuildListener fn) { listener_ = std::move(fn); }
  // A batch of `steps` steps, each begun by next_in_batch(); end_batch() closes it.
  void begin_batch(int steps);
  void next_in_batch();
  void end_batch();
  // While set, a program asked for is a retry of the last one (a smaller
  // shape of it: host::fit_shape) and takes no number of its own in the batch.
  void set_retry(bool on) { retry_ = on; }
  // A build this cache does not see (CLBlast's GEMM program, built inside its
  // first call): announced like a build from source when this cache has built
  // from source already (a cold cache), then run.
  void external(const std::string& label, const std::function<void()>& run);

  // Counters for tests: programs built from source vs loaded from the disk cache.
  int built_from_source() const { return built_; }
  int loaded_from_cache() const { return loaded_; }
  // Programs asked for outside any batch ("family options" each): the ones a
  // compile progress could not number. An engine's batch plans every one its
  // sessions use, so after it this stays empty (tests check it).
  const std::vector<std::string>& unplanned() const { return unplanned_; }

 private:
  cl_program program(const std::string& family, const std::string& options);
  cl_program build(const std::string& family, const std::string& options);

  Context& ctx_;
  std::map<std::pair<std::string, std::string>, cl_program> programs_;
  std::map<std::string, cl_kernel> kernels_;
  std::map<cl_kernel, KernelLimits> limits_;
  int built_ = 0, loaded_ = 0;
  BuildListener listener_;
  int batch_planned_ = 0, batch_index_ = 0;
  bool retry_ = false;
  std::vector<std::string> unplanned_;
};

}  // namespace ttt::host
