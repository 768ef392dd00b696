// ttt-info: the OpenCL platforms and devices of this machine, with what
// matters for running a model, and which one ttt-cl picks by default.
#include "apps/app.hpp"
#include "ttt/device.hpp"
#include "host/program.hpp"
#include "host/tuning.hpp"

#include <fmt/format.h>

#include <cstdlib>

namespace {

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-info",
                       "Lists every OpenCL platform and device (type, compute units, memory, fp16/fp64, OpenCL C\n"
                       "version) and the device the other tools use by default (--device, else $TTT_DEVICE, else\n"
                       "the first GPU, else the first device)."))
    return 0;
  const auto devices = ttt::list_devices();
  if (devices.empty()) {
    fmt::print("No OpenCL device found. Install an OpenCL driver (ICD), e.g. pocl-opencl-icd for the CPU.\n");
    return 1;
  }
  int last_platform = -1;
  for (const auto& d : devices) {
    if (d.platform_index != last_platform) {
      fmt::print("Platform {}: {} ({})\n", d.platform_index, d.platform_name, d.platform_version);
      last_platform = d.platform_index;
    }
    fmt::print("  Device {}  {}\n", d.spec(), d.name);
    fmt::print("    type               {}\n", d.type_name());
    fmt::print("    vendor / driver    {} / {}\n", d.vendor, d.driver_version);
    fmt::print("    compute units      {} @ {} MHz\n", d.compute_units, d.clock_mhz);
    fmt::print("    global memory      {:.2f} GiB (largest buffer {:.2f} GiB)\n", d.global_mem / 1073741824.0,
               d.max_alloc / 1073741824.0);
    fmt::print("    local memory       {} KiB\n", d.local_mem / 1024);
    fmt::print("    max work-group     {}\n", d.max_work_group);
    fmt::print("    fp16 / fp64        {} / {}\n", d.fp16 ? "yes" : "no", d.fp64 ? "yes" : "no");
    fmt::print("    version            {}, {}\n", d.device_version, d.opencl_c_version);
  }
  const auto chosen = ttt::select_device();
  const char* env = std::getenv("TTT_DEVICE");
  fmt::print("\nDefault device: {} ({})\n", chosen.label(),
             env && *env ? fmt::format("TTT_DEVICE={}", env) : std::string("first GPU, else first device"));
  const std::string cache = ttt::host::program_cache_dir();
  fmt::print("Kernel cache:   {}\n", cache.empty() ? "disabled" : cache);
  fmt::print("GEMM tuning:    {}\n", ttt::host::describe_tuning(ttt::host::select_device()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-info", argc, argv, body); }
