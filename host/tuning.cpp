// The CLBlast tuning file: path, per-device records, parse/save, and the
// once-per-Context load that hands the parameters to clblast_override().
#include "host/tuning.hpp"
#include "host/gemm.hpp"
#include "host/program.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <unistd.h>

namespace ttt::host {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr const char* kFormat = kTuningFormat;
constexpr int kVersion = 1;

// $TTT_TUNING_FILE as set ("" when not): "off" is no file and no built-in record, "none" no file.
std::string tuning_env() {
  const char* f = std::getenv("TTT_TUNING_FILE");
  return f ? f : "";
}
bool tuning_off() { return tuning_env() == "off"; }
}  // namespace

std::string tuning_file_path() {
  if (const std::string f = tuning_env(); !f.empty()) return f == "off" || f == "none" ? std::string() : f;
  const std::string dir = program_cache_dir();
  return dir.empty() ? std::string() : (fs::path(dir) / "clblast-tuning.json").string();
}

TuningKey TuningKey::of(const DeviceInfo& d) {
  return {d.name, d.platform_version, d.driver_version, clblast_version()};
}

DeviceClass DeviceClass::of(const DeviceInfo& d) {
  DeviceClass c;
  c.cpu = (d.type & CL_DEVICE_TYPE_CPU) != 0;
  c.pocl = d.platform_name == "Portable Computing Language";
  cl_uint w = 0;
  if (d.id && clGetDeviceInfo(d.id, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof w, &w, nullptr) == CL_SUCCESS)
    c.vector_width = w;
  return c;
}

const BuiltinRecord* builtin_record(const DeviceClass& c) {
  // PoCL on a CPU with 16-wide float vectors (AVX-512, 32 vector registers):
  // an indirect Xgemm whose work-items each keep a 64 x 4 block of C in 16
  // registers (four 16-wide vectors of A times four broadcast values of B per
  // k: a register-blocked inner loop that LLVM compiles as written, with no
  // local memory and no barrier), sixteen such work-items a work-group (PoCL
  // runs them one after the other on one core, so the panel of A they share
  // stays in its cache), handed over column-major in K panels of 512. 64
  // divides every 125m and 1b dimension, so no weight is padded. On the 125m
  // shapes it took 2.55 s per mini-batch of GEMMs where the 8-wide record
  // below took 3.8-4.2, in one series (docs/performance.md). Valid on any
  // CLBlast 1.5: only the speed depends on the device.
  static const BuiltinRecord pocl_cpu_vec16{
      "pocl-cpu-vec16",
      "one-item-block seed timed by ttt-bench tune --no-tuners --preset 125m on PoCL 3.1 (LLVM 15), AVX-512 EPYC, "
      "2 cores (docs/performance.md)",
      {{"Xgemm", {{"GEMMK", 0}, {"KREG", 1}, {"KWG", 16}, {"KWI", 1}, {"MDIMA", 1}, {"MDIMC", 1}, {"MWG", 64},
                  {"NDIMB", 16}, {"NDIMC", 16}, {"NWG", 64}, {"SA", 0}, {"SB", 0}, {"STRM", 0}, {"STRN", 0},
                  {"VWM", 16}, {"VWN", 1}}},
       {"GemmRoutine", {{"XGEMM_MIN_INDIRECT_SIZE", 64}}},
       {kGemmPlanKernel, {{"COL_MAJOR", 1}, {"K_BLOCK", 512}, {"N_BLOCK", 0}}}}};
  // PoCL on a CPU with 8-wide float vectors (AVX2: 16 registers, too few for
  // the block above): an indirect Xgemm without local memory (PoCL's local
  // memory is ordinary memory, its tiles only copy), 128x128 work-group tiles,
  // 8-wide vectors, handed over column-major in K panels of 512. It is the
  // seed `ttt-bench tune --no-tuners` picked on the 125m shapes before the
  // record above existed, and valid on any CLBlast 1.5.
  static const BuiltinRecord pocl_cpu_vec8{
      "pocl-cpu-vec8",
      "ttt-bench tune --no-tuners --preset 125m on PoCL 3.1, AVX-512 EPYC, 2 cores (docs/performance.md)",
      {{"Xgemm", {{"GEMMK", 0}, {"KREG", 1}, {"KWG", 16}, {"KWI", 2}, {"MDIMA", 8}, {"MDIMC", 8}, {"MWG", 128},
                  {"NDIMB", 16}, {"NDIMC", 8}, {"NWG", 128}, {"SA", 0}, {"SB", 0}, {"STRM", 1}, {"STRN", 1},
                  {"VWM", 8}, {"VWN", 8}}},
       {"GemmRoutine", {{"XGEMM_MIN_INDIRECT_SIZE", 64}}},
       {kGemmPlanKernel, {{"COL_MAJOR", 1}, {"K_BLOCK", 512}, {"N_BLOCK", 0}}}}};
  if (!c.cpu || !c.pocl) return nullptr;
  if (c.vector_width >= 16) return &pocl_cpu_vec16;
  if (c.vector_width >= 8) return &pocl_cpu_vec8;
  return nullptr;
}

std::string TuningState::record() const {
  switch (source) {
    case File: return fmt::format("user file '{}'", path);
    case Builtin: return fmt::format("built-in '{}'", builtin);
    case None: break;
  }
  return "none (CLBlast defaults)";
}

const char* TuningState::source_name() const {
  return source == File ? "file" : source == Builtin ? "built-in" : "none";
}

const char* TuningState::name() const {
  switch (kind) {
    case Off: return "off";
    case Missing: return "missing";
    case Stale: return "stale";
    case Applied: return "applied";
    case Invalid: return "invalid";
    case NoFile: return "none";
  }
  return "?";
}

bool parse_tuning(const std::string& text, const TuningKey& key, ClblastKernels& out) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("not JSON ({})", e.what()));
  }
  if (!j.is_object() || j.value("format", "") != kFormat)
    throw Error(fmt::format("not a tuning file (no \"format\": \"{}\")", kFormat));
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kVersion)
    throw Error(fmt::format("unsupported version (this build reads version {})", kVersion));
  if (!j.contains("devices") || !j["devices"].is_array()) throw Error("\"devices\" is not an array");
  for (const auto& d : j["devices"]) {
    auto str = [&](const char* k) {
      if (!d.is_object() || !d.contains(k) || !d[k].is_string())
        throw Error(fmt::format("a device record has no string \"{}\"", k));
      return d[k].get<std::string>();
    };
    const TuningKey k{str("device"), str("platform"), str("driver"), str("clblast")};
    if (k.device != key.device || k.platform != key.platform || k.driver != key.driver || k.clblast != key.clblast)
      continue;
    if (!d.contains("kernels") || !d["kernels"].is_object()) throw Error("the device's \"kernels\" is not an object");
    out.clear();
    for (const auto& [kernel, params] : d["kernels"].items()) {
      if (!params.is_object() || params.empty())
        throw Error(fmt::format("kernel '{}': parameters are not a non-empty object", kernel));
      for (const auto& [name, v] : params.items()) {
        if (!v.is_number_unsigned()) throw Error(fmt::format("kernel '{}': {} is not a non-negative integer", kernel, name));
        out[kernel][name] = v.get<size_t>();
      }
    }
    return true;
  }
  return false;
}

void save_tuning(const std::string& path, const TuningKey& key, const ClblastKernels& kernels,
                 const std::string& extra_json) {
  if (path.empty()) throw Error("no tuning file path (TTT_TUNING_FILE is off or none, or no cache directory)");
  json j = {{"format", kFormat}, {"version", kVersion}, {"devices", json::array()}};
  if (std::ifstream in(path); in) {  // keep other devices' records of a readable file
    try {
      json old = json::parse(in);
      if (old.is_object() && old.value("format", "") == kFormat && old.value("version", 0) == kVersion &&
          old.contains("devices") && old["devices"].is_array())
        for (const auto& d : old["devices"])
          if (d.is_object() && !(d.value("device", "") == key.device && d.value("platform", "") == key.platform &&
                                 d.value("driver", "") == key.driver && d.value("clblast", "") == key.clblast))
            j["devices"].push_back(d);
    } catch (const json::exception&) {
    }
  }
  json rec = {{"device", key.device}, {"platform", key.platform}, {"driver", key.driver}, {"clblast", key.clblast},
              {"precision", 32}, {"kernels", kernels}};
  if (!extra_json.empty()) rec["measured"] = json::parse(extra_json);
  j["devices"].push_back(rec);
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  const fs::path tmp = p.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) throw Error(fmt::format("cannot write tuning file '{}'", tmp.string()));
  }
  fs::rename(tmp, p);  // readers see the old file or the new one, never half of one
}

GemmPlan gemm_plan_from_params(const ClblastParams& params) {
  GemmPlan p;
  for (const auto& [name, v] : params) {
    if (name == "COL_MAJOR" && v <= 1) p.col_major = v == 1;
    else if ((name == "K_BLOCK" || name == "N_BLOCK") && (v == 0 || (v >= 16 && v <= (size_t(1) << 24))))
      (name == "K_BLOCK" ? p.k_block : p.n_block) = v;
    else
      throw Error(fmt::format("kernel '{}': {} = {} is not one of COL_MAJOR (0 or 1), K_BLOCK and N_BLOCK (0, or "
                              "16 to 2^24)",
                              kGemmPlanKernel, name, v));
  }
  return p;
}

ClblastParams gemm_plan_params(const GemmPlan& p) {
  return {{"COL_MAJOR", p.col_major ? 1 : 0}, {"K_BLOCK", p.k_block}, {"N_BLOCK", p.n_block}};
}

namespace {

// Applies a record's kernels (the plan checked first); returns its plan and
// the kernels applied. Throws on parameters the plan or CLBlast refuses.
GemmPlan apply_record(Context& ctx, const ClblastKernels& kernels, std::vector<std::string>& applied) {
  const auto plan = kernels.find(kGemmPlanKernel);
  const GemmPlan p = plan == kernels.end() ? GemmPlan{} : gemm_plan_from_params(plan->second);  // checks first
  for (const auto& [kernel, params] : kernels) {
    if (kernel == kGemmPlanKernel) continue;
    clblast_override(ctx, kernel, params);  // throws on parameters this CLBlast does not know
    applied.push_back(kernel);
  }
  if (plan != kernels.end()) applied.push_back(kGemmPlanKernel);
  return p;
}

// The built-in record for ctx's device when the file gave none (and
// $TTT_TUNING_BUILTIN is not "off"); a CLBlast that refuses it leaves the defaults.
void apply_builtin(Context& ctx, TuningState& st) {
  if (const char* b = std::getenv("TTT_TUNING_BUILTIN"); b && std::string(b) == "off") return;
  const BuiltinRecord* rec = builtin_record(DeviceClass::of(ctx.device()));
  if (!rec) return;
  std::vector<std::string> applied;
  try {
    st.plan = apply_record(ctx, rec->kernels, applied);
  } catch (const std::exception& e) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true))
      std::fprintf(stderr, "ttt-cl: warning: the built-in CLBlast record '%s' does not apply (%s); GEMMs use "
                   "CLBlast's defaults\n", rec->name, e.what());
    return;
  }
  st.kernels = applied;
  st.source = TuningState::Builtin;
  st.builtin = rec->name;
}

TuningState load_and_apply(Context& ctx) {
  TuningState st;
  st.path = tuning_file_path();
  if (st.path.empty() && tuning_off()) {  // Off: no file and no built-in record
    // Said once per context (a tool has one): "off" reads as "no file" and yet costs the built-in record.
    const char* b = std::getenv("TTT_TUNING_BUILTIN");
    if (const BuiltinRecord* rec = builtin_record(DeviceClass::of(ctx.device())); rec && !(b && std::string(b) == "off"))
      std::fprintf(stderr,
                   "ttt-cl: note: TTT_TUNING_FILE=off: GEMMs run with CLBlast's defaults, without the built-in "
                   "record '%s' either (several times slower here); TTT_TUNING_FILE=none reads no file and keeps "
                   "it\n",
                   rec->name);
    return st;
  }
  if (st.path.empty()) {  // NoFile: no file by choice or for want of a cache directory
    st.kind = TuningState::NoFile;
    apply_builtin(ctx, st);
    return st;
  }
  std::ifstream in(st.path, std::ios::binary);
  if (!in) {
    st.kind = TuningState::Missing;
    apply_builtin(ctx, st);
    return st;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  ClblastKernels kernels;
  try {
    if (!parse_tuning(ss.str(), TuningKey::of(ctx.device()), kernels)) {
      st.kind = TuningState::Stale;
      st.message = fmt::format("no record for '{}' with driver {} and CLBlast {}", ctx.device().name,
                               ctx.device().driver_version, clblast_version());
      apply_builtin(ctx, st);
      return st;
    }
    st.plan = apply_record(ctx, kernels, st.kernels);
    st.kind = TuningState::Applied;
    st.source = TuningState::File;
    st.message = fmt::format("{} kernel(s)", st.kernels.size());
  } catch (const std::exception& e) {
    st.kind = TuningState::Invalid;
    st.message = e.what();
    st.kernels.clear();
    st.plan = {};
    apply_builtin(ctx, st);
    // Once per file and process: every Context of a run would say the same.
    static std::mutex mu;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(mu);
    if (warned.insert(st.path).second)
      std::fprintf(stderr,
                   "ttt-cl: warning: ignoring CLBlast tuning file '%s': %s; GEMMs use %s "
                   "(re-run 'ttt-bench tune' or delete the file)\n",
                   st.path.c_str(), st.message.c_str(),
                   st.source == TuningState::Builtin ? ("the built-in record '" + st.builtin + "'").c_str()
                                                     : "CLBlast's defaults");
  }
  return st;
}

}  // namespace

std::string describe_tuning(const DeviceInfo& d) {
  const std::string path = tuning_file_path();
  const BuiltinRecord* builtin = builtin_record(DeviceClass::of(d));
  if (path.empty() && tuning_off())
    return builtin ? fmt::format("none (TTT_TUNING_FILE=off: CLBlast's defaults, without the built-in record '{}'; "
                                 "TTT_TUNING_FILE=none keeps it)",
                                 builtin->name)
                   : "none (TTT_TUNING_FILE=off: CLBlast's defaults)";
  std::string why = !path.empty()              ? fmt::format("no file '{}'", path)
                    : tuning_env() == "none" ? std::string("TTT_TUNING_FILE=none")
                                             : std::string("no cache directory");
  if (std::ifstream in(path, std::ios::binary); !path.empty() && in) {
    std::ostringstream ss;
    ss << in.rdbuf();
    ClblastKernels kernels;
    try {
      if (parse_tuning(ss.str(), TuningKey::of(d), kernels)) return fmt::format("user file '{}'", path);
      why = fmt::format("no record for this device in '{}'", path);
    } catch (const std::exception& e) {
      why = fmt::format("'{}' is unusable: {}", path, e.what());
    }
  }
  const char* off = std::getenv("TTT_TUNING_BUILTIN");
  if (builtin && !(off && std::string(off) == "off"))
    return fmt::format("built-in '{}' ({}; 'ttt-bench tune --no-tuners' refines it)", builtin->name, why);
  return fmt::format("none ({}: CLBlast's defaults; 'ttt-bench tune --no-tuners' writes one)", why);
}

const TuningState& tuning_state(Context& ctx) {
  return ctx.memo<TuningState>("clblast-tuning", [&] { return load_and_apply(ctx); });
}

void skip_tuning_file(Context& ctx) {
  ctx.memo<TuningState>("clblast-tuning", [] { return TuningState{}; });
}

}  // namespace ttt::host
