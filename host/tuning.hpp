// CLBlast tuning parameters found by `ttt-bench tune`, stored per device in a
// JSON file and applied (CLBlast's OverrideParameters) before a Context's
// first GEMM. A device with no record of its own in the file starts from a
// built-in record when one fits its class (PoCL on a CPU with wide vectors);
// otherwise CLBlast's defaults. A missing file or one written for another
// device, driver or CLBlast changes nothing but speed; a corrupt one is one
// warning on stderr.
#pragma once

#include "host/gemm.hpp"
#include "host/device.hpp"

#include <map>
#include <string>
#include <vector>

namespace ttt::host {

// One CLBlast kernel's parameters ("Xgemm", "XgemmDirect", "GemmRoutine", ...), all of them by name.
using ClblastParams = std::map<std::string, size_t>;
using ClblastKernels = std::map<std::string, ClblastParams>;

// A record's pseudo-kernel that is not CLBlast's: host::gemm's GemmPlan, as
// COL_MAJOR (0/1), K_BLOCK and N_BLOCK (0 = whole). Checked before anything is applied.
inline constexpr const char* kGemmPlanKernel = "TttGemm";
GemmPlan gemm_plan_from_params(const ClblastParams& params);  // throws Error naming the bad parameter
ClblastParams gemm_plan_params(const GemmPlan& plan);

// $TTT_TUNING_FILE when set, else <program_cache_dir()>/clblast-tuning.json;
// empty when there is none. Two values name no file: "none" (no file; the
// built-in record still applies, as out of the box) and "off" (no file and no
// built-in record either: CLBlast's defaults, several times slower on a CPU
// that has one, which a note on stderr says).
std::string tuning_file_path();
// The "format" a tuning file's JSON object names: how ttt-bench tune knows a file it may rewrite.
inline constexpr const char* kTuningFormat = "ttt-cl clblast tuning";

// What a device's record is matched on: name, platform version, driver
// version and CLBlast version. Another value of any of them makes the record stale.
struct TuningKey {
  std::string device, platform, driver, clblast;
  static TuningKey of(const DeviceInfo& d);
};

// What a built-in record is matched on: the class of device it is valid
// for, not one driver string. Read from the device by of().
struct DeviceClass {
  bool cpu = false;            // CL_DEVICE_TYPE_CPU
  bool pocl = false;           // platform "Portable Computing Language"
  unsigned vector_width = 0;   // CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT (AVX2: 8, AVX-512: 16)
  static DeviceClass of(const DeviceInfo& d);
};

// A record built into ttt-cl: what `ttt-bench tune --no-tuners` picks on a
// class of devices, used when the tuning file has no record of the device's own.
struct BuiltinRecord {
  const char* name;      // shown by the tools: "pocl-cpu-vec8"
  const char* measured;  // where and how its parameters were chosen
  ClblastKernels kernels;
};
// The built-in record for this class of device, or nullptr (GPUs, other CPU
// drivers, CPUs with narrower vectors: CLBlast's defaults there).
const BuiltinRecord* builtin_record(const DeviceClass& c);

struct TuningState {
  // The file's state: Off ($TTT_TUNING_FILE=off: no file and no built-in),
  // NoFile ($TTT_TUNING_FILE=none, or no cache directory: the built-in still
  // applies), Missing, Stale (no record for this device), Applied, Invalid.
  enum Kind { Off, Missing, Stale, Applied, Invalid, NoFile };
  // Whose parameters the GEMMs run with: none (CLBlast's defaults), the
  // built-in record (when the file has none for this device), the user's file.
  enum Source { None, Builtin, File };
  Kind kind = Off;
  Source source = None;
  std::string path;
  std::string message;             // why Stale/Invalid; the kernels when Applied
  std::string builtin;             // the built-in record's name when source == Builtin
  std::vector<std::string> kernels;  // applied kernels
  GemmPlan plan;                     // the record's (TttGemm), else the default
  const char* name() const;
  // "user file '/path'", "built-in 'pocl-cpu-vec8'" or "none (CLBlast defaults)": what tools print.
  std::string record() const;
  const char* source_name() const;  // "file", "built-in", "none"
};

// Reads the file, picks this device's record and applies it, once per
// Context (the first GEMM calls it); with no usable record in the file, the
// built-in one for the device's class ($TTT_TUNING_BUILTIN=off: none). Never
// throws for a bad file: an Invalid state prints one line "ttt-cl: warning: ..."
// to stderr.
const TuningState& tuning_state(Context& ctx);

// Which record a Context on device d would run its GEMMs with, without
// applying anything: "user file '...'", "built-in '...' (...)" or "none (...)". For ttt-info.
std::string describe_tuning(const DeviceInfo& d);

// Marks this Context as untuned (CLBlast defaults from here on unless the
// caller overrides): what `ttt-bench tune` uses to measure the defaults.
void skip_tuning_file(Context& ctx);

// Parses a tuning file's text and returns this key's kernels; throws Error on
// malformed content, returns false when there is no record for the key.
bool parse_tuning(const std::string& text, const TuningKey& key, ClblastKernels& out);

// Writes (or replaces) key's record in the file at path, keeping other
// devices' records; `extra` (a JSON object as text, may be empty) is stored
// beside the parameters for the reader (strategy, measured GFLOP/s).
void save_tuning(const std::string& path, const TuningKey& key, const ClblastKernels& kernels,
                 const std::string& extra_json);

}  // namespace ttt::host
