// Shared main() wrapper, option parsing and path checks of the command-line tools.
#include "apps/app.hpp"

#include "host/error.hpp"
#include "host/program.hpp"
#include "host/runtime.hpp"
#include "lib/report/progress.hpp"
#include "ttt/config.hpp"
#include "ttt/device.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TTT_VERSION
#define TTT_VERSION "unknown"
#endif

namespace ttt::app {

namespace {

std::string g_tool = "ttt";
char g_quit_notice[128];
size_t g_quit_notice_len = 0;

// Before a tool catches interrupts itself: stop at once, with the status a shell gives an interrupt.
extern "C" void quit_on_signal(int) {
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, g_quit_notice, g_quit_notice_len);
  ::_exit(130);
}

}  // namespace

int run(const char* name, int argc, char** argv, int (*body)(int, char**)) {
  g_tool = name;
#if defined(__GLIBC__)
  // Device buffers on a CPU driver (PoCL) are host allocations of megabytes, made and freed
  // per engine and per GEMM (CLBlast's temporaries). glibc's default mmap threshold rises to
  // 32 MB after the first such free, and later ones then sit in the heaps of PoCL's threads,
  // never returned: 125m prefill peaked at 3.56 GB instead of 2.65 (docs/design.md, Memory).
  // A fixed threshold keeps every buffer of 1 MiB or more in its own mapping.
  if (!std::getenv("TTT_NO_MALLOPT")) mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  const int n = std::snprintf(g_quit_notice, sizeof g_quit_notice, "\n%s: interrupted\n", name);
  g_quit_notice_len = n > 0 ? std::min(size_t(n), sizeof g_quit_notice - 1) : 0;
  struct sigaction sa {};
  sa.sa_handler = quit_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  try {
    return body(argc, argv);
  } catch (const po::error& e) {
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", name, e.what(), name);
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of host memory\n", name);
  } catch (const host::ClError& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    if (e.code() == CL_MEM_OBJECT_ALLOCATION_FAILURE || e.code() == CL_OUT_OF_RESOURCES)
      std::fprintf(stderr, "%s: hint: the device ran out of memory; try a smaller model or another --device\n", name);
  } catch (const Error& e) {  // the library names a setting, not a flag: here it is one
    if (e.setting().empty())
      std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    else
      std::fprintf(stderr, "%s: error: %s (--%s)\n", name, e.what(), e.setting().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
  }
  return 1;
}

bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm, const char* usage,
           const char* about, const po::positional_options_description* positional) {
  // One "Options:" group: help and version, then the tool's own (none for some tools).
  po::options_description all("Options");
  all.add_options()("help,h", "show this help and exit")("version", "show the version and exit");
  for (const auto& o : opts.options()) all.add(o);
  auto parser = po::command_line_parser(argc, argv).options(all);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n" << about << "\n\n" << all << "\n";
    return false;
  }
  if (vm.count("version")) {
    std::cout << g_tool << " (ttt-cl) " << TTT_VERSION << "\n";
    return false;
  }
  po::notify(vm);
  if (vm.count("device") && vm["device"].as<std::string>().empty())
    throw UsageError("--device '': give a device index, P:D indices or part of a device name (see ttt-info)");
  return true;
}

int64_t int_option(const po::variables_map& vm, const char* name, int64_t min, int64_t max) {
  const int64_t v = vm[name].as<int64_t>();
  if (v < min || v > max) {
    if (max == std::numeric_limits<int64_t>::max())
      throw UsageError(fmt::format("--{} {}: must be at least {}", name, v, min));
    throw UsageError(fmt::format("--{} {}: must be between {} and {}", name, v, min, max));
  }
  return v;
}

float nonneg_float_option(const po::variables_map& vm, const char* name) {
  const float v = vm[name].as<float>();
  if (!std::isfinite(v) || v < 0) throw UsageError(fmt::format("--{} {}: must be a finite number >= 0", name, v));
  return v;
}

void add_device_option(po::options_description& opts, const char* what) {
  opts.add_options()("device,d", po::value<std::string>()->value_name("DEV"),
                     fmt::format("{}OpenCL device: N (the N-th device ttt-info lists, from 0), P:D indices, or else "
                                 "part of its name (default: $TTT_DEVICE, else the first GPU, else the first device)",
                                 what ? fmt::format("{}: ", what) : std::string())
                         .c_str());
}

std::string device_spec(const po::variables_map& vm) {
  if (!vm.count("device")) return {};
  const std::string s = vm["device"].as<std::string>();
  if (s.empty()) throw UsageError("--device '': give a device index, P:D indices or part of a device name");
  // A device that is not there is a bad option value (exit 2), said before any work.
  try {
    select_device(s);
  } catch (const Error& e) {
    std::string what = e.what();
    while (!what.empty() && std::isspace(static_cast<unsigned char>(what.back()))) what.pop_back();
    const bool a_name = s.find_first_not_of("0123456789:") != std::string::npos;
    std::error_code ec;
    if (a_name && !std::getenv("RUSTICL_ENABLE") && std::filesystem::exists("/etc/OpenCL/vendors/rusticl.icd", ec))
      what += "\n(Mesa's rusticl is installed but lists no device until enabled: RUSTICL_ENABLE=llvmpipe for its "
              "CPU driver)";
    throw UsageError(what);
  }
  return s;
}

void add_weight_dtype_option(po::options_description& opts) {
  opts.add_options()("weight-dtype", po::value<std::string>()->default_value("auto")->value_name("T"),
                     "storage of the weight matrices on the device: auto (the model file's type), f32, f16 or bf16; "
                     "computed in f32 either way (test-time trained weights and norm gains stay f32)");
}

std::optional<DType> weight_dtype(const po::variables_map& vm) {
  const std::string s = vm.count("weight-dtype") ? vm["weight-dtype"].as<std::string>() : "auto";
  if (s == "auto") return std::nullopt;
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  throw UsageError(fmt::format("--weight-dtype '{}': give auto, f32, f16 or bf16", s));
}


std::string weight_label(const std::optional<DType>& choice, DType file) {
  return fmt::format("{} weights", dtype_flag(choice.value_or(file)));
}

void add_kv_dtype_option(po::options_description& opts) {
  opts.add_options()("kv-dtype", po::value<std::string>()->default_value("f32")->value_name("T"),
                     "storage of the key/value rings on the device: f32 or f16 (half the bytes; keys and values "
                     "rounded to nearest even as stored, attention computed in f32)");
}

DType kv_dtype(const po::variables_map& vm) {
  const std::string s = vm.count("kv-dtype") ? vm["kv-dtype"].as<std::string>() : "f32";
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  throw UsageError(fmt::format("--kv-dtype '{}': give f32 or f16", s));
}

std::string kv_label(DType t) { return fmt::format("{} kv", dtype_flag(t)); }

void add_head_tiles_option(po::options_description& opts) {
  opts.add_options()("head-tiles", po::bool_switch(),
                     "keep a second copy of an f32 output embedding laid out per logits tile, so that CLBlast does "
                     "not transpose each tile on every call: the same numbers, V x D floats more device memory (376 "
                     "MB for 125m) for 6-8% less CPU time per prefill; taken only where CLBlast would transpose (the "
                     "CPU tuning records). $TTT_HEAD_TILES=on|off overrides it");
}

bool head_tiles(const po::variables_map& vm) { return vm.count("head-tiles") && vm["head-tiles"].as<bool>(); }

std::string read_text(const std::string& path, const std::string& flag) {
  std::ostringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    if (std::cin.bad()) throw Error(fmt::format("{} -: cannot read standard input", flag));
    return ss.str();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{} {}: cannot open: {}", flag, path, std::strerror(errno)));
  ss << f.rdbuf();
  if (f.bad()) throw Error(fmt::format("{} {}: cannot read: {}", flag, path, std::strerror(errno)));
  return ss.str();
}

Tokenizer tokenizer_for(const std::string& path, const Config& cfg) {
  Tokenizer t = [&] {
    try {
      return Tokenizer::from_file(path);
    } catch (const Error& e) {
      throw Error(fmt::format("--tokenizer: {}", e.what()));
    }
  }();
  if (const std::string why = tokenizer_mismatch(t, cfg); !why.empty())
    throw Error(fmt::format("--tokenizer {}: {}", path, why));
  return t;
}

namespace {

namespace fs = std::filesystem;

bool same_file(const std::string& a, const std::string& b) {
  if (canonical_path(a) == canonical_path(b)) return true;
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);  // hard links
}

}  // namespace

Paths& Paths::input(const std::string& flag, const std::string& path) {
  if (path != "-") in_.push_back({flag, path});
  return *this;
}

Paths& Paths::inputs(const std::string& flag, const std::vector<std::string>& paths) {
  for (const auto& p : paths) input(flag, p);
  return *this;
}

Paths& Paths::model(const std::string& flag, const std::string& dir) {
  models_.push_back(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model"})
    in_.push_back({flag, (fs::path(dir) / f).string()});
  return *this;
}

Paths& Paths::output(const std::string& flag, const std::string& path) {
  // A file, never standard output: stdout carries the report (ttt-tokenize -o - is its own case).
  if (path == "-")
    throw UsageError(fmt::format("{} -: give a file name; this output is not written to standard output", flag));
  out_.push_back({flag, path});
  return *this;
}

Paths& Paths::output(const std::string& flag, const std::string& path, OwnFormat format) {
  output(flag, path);
  out_.back().format = std::move(format);
  return *this;
}

Paths& Paths::report(const std::string& flag, const std::string& path, const OwnFormat& format) {
  output(flag, path, format);
  if (!path.empty() && !written_through(path)) output(fmt::format("{} (partial results)", flag), partial_path(path), format);
  return *this;
}

Paths& Paths::output_dir(const std::string& flag, const std::string& dir, const std::vector<std::string>& files,
                         bool force) {
  out_.push_back({flag, dir, force ? Entry::dir_force : Entry::dir});
  for (const auto& f : files) out_.push_back({flag, (fs::path(dir) / f).string(), Entry::in_dir});
  return *this;
}

Paths& Paths::input(const po::variables_map& vm, const char* name) {
  return vm.count(name) ? input(fmt::format("--{}", name), vm[name].as<std::string>()) : *this;
}

Paths& Paths::output(const po::variables_map& vm, const char* name) {
  return vm.count(name) ? output(fmt::format("--{}", name), vm[name].as<std::string>()) : *this;
}

Paths& Paths::output(const po::variables_map& vm, const char* name, const OwnFormat& format) {
  return vm.count(name) ? output(fmt::format("--{}", name), vm[name].as<std::string>(), format) : *this;
}

Paths& Paths::report(const po::variables_map& vm, const char* name, const OwnFormat& format) {
  return vm.count(name) ? report(fmt::format("--{}", name), vm[name].as<std::string>(), format) : *this;
}

void Paths::check() const {
  // Directories first: "is the input model directory" says more than a clash of the files in it.
  for (const Entry& o : out_)
    if (o.kind == Entry::dir || o.kind == Entry::dir_force) {
      if (o.path.empty()) throw UsageError(fmt::format("{}: empty directory name", o.flag));
      try {  // a usage error: the command line names one folder twice
        check_not_protected(o.path, o.flag, models_);
      } catch (const Error& e) {
        throw UsageError(e.what());
      }
      check_output_dir(o.path, o.flag, o.kind == Entry::dir_force, models_);
    }
  auto show = [](const Entry& e) { return fmt::format("{} {}", e.flag, e.path); };
  for (size_t i = 0; i < out_.size(); ++i) {
    const Entry& o = out_[i];
    for (const Entry& in : in_)
      if (same_file(o.path, in.path))
        throw UsageError(fmt::format("{} is the input {}: writing it would replace the input; write the output "
                                     "elsewhere",
                                     show(o), show(in)));
    for (size_t k = 0; k < i; ++k)
      if (same_file(o.path, out_[k].path))
        throw UsageError(fmt::format("{} and {} name the same file: one output would replace the other",
                                     show(out_[k]), show(o)));
  }
  for (const Entry& o : out_) {
    if (o.kind != Entry::file) continue;
    if (o.path.empty()) throw UsageError(fmt::format("{}: empty file name", o.flag));
    check_output_file(o.path, o.flag);
    if (o.format) check_own_file(o.path, o.flag, *o.format);
  }
}

std::string written_by() { return fmt::format("{} {} (ttt-cl)", g_tool, TTT_VERSION); }

OwnFormat json_format(const char* what) {
  return {OwnFormat::json_key, g_tool + " ", "written_by", what};
}

OwnFormat svg_format() {
  return {OwnFormat::line, fmt::format("<!-- written by {} ", g_tool), {}, fmt::format("an SVG plot of {}", g_tool)};
}

std::string svg_signed(std::string_view svg) {
  // After the XML declaration, which must come first; a comment may stand anywhere before the root element.
  const size_t at = svg.rfind("<?xml", 0) == 0 && svg.find('\n') != std::string_view::npos ? svg.find('\n') + 1 : 0;
  return fmt::format("{}<!-- written by {} -->\n{}", svg.substr(0, at), written_by(), svg.substr(at));
}

OwnFormat commented_format(const char* what) {
  return {OwnFormat::line, fmt::format("# written by {} ", g_tool), {}, what};
}

std::string comment_header(std::string_view about) { return fmt::format("# written by {}: {}\n", written_by(), about); }

void announce_compiles(Runtime& rt, const char* tool) {
  std::string dir = host::program_cache_dir();
  if (dir.empty()) dir = "nowhere: TTT_CACHE_DIR=off";
  rt.on_compile([tool = std::string(tool), dir, device = rt.device().name, said = false](const std::string&) mutable {
    if (said) return;
    said = true;
    std::fprintf(stderr, "%s: compiling kernels for %s (first run only, cached in %s)\n", tool.c_str(),
                 device.c_str(), dir.c_str());
    std::fflush(stderr);
  });
  // Each build takes seconds: say which program, out of how many, so a long first run is never silent.
  host::context(rt).programs().on_build([tool = std::string(tool), tty = ::isatty(STDERR_FILENO) == 1,
                           open = false](const host::ProgramCache::BuildEvent& e) mutable {
    if (e.family.empty()) {  // the end of a batch
      if (open) std::fputc('\n', stderr);
      open = false;
      return;
    }
    if (e.done) return;
    const std::string what = (e.planned ? fmt::format("{}/{} {}", e.index, e.planned, e.family) : e.family) +
                             (e.retry ? " (a smaller shape)" : "");
    if (tty) {
      std::fprintf(stderr, "\r%s: compiling kernels: %-40s", tool.c_str(), what.c_str());
      open = e.planned > 0;
      if (!open) std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "%s: compiling kernels: %s\n", tool.c_str(), what.c_str());
    }
    std::fflush(stderr);
  });
}

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

DeviceProgress::DeviceProgress(Progress& progress, Runtime& rt) : progress_(progress), rt_(rt) {
  if (progress.mode() == Progress::Mode::Quiet) return;
  watching_ = true;
  last_ = steady_seconds();
  rt.mark_progress(true);
  progress.watch([&rt] {  // called only once a step is slow
    rt.mark_progress(true);
    return rt.reached();
  });
}

void DeviceProgress::update(size_t done) {
  progress_.update(done);
  if (!watching_) return;
  const double t = steady_seconds();
  rt_.mark_progress(t - last_ >= kSlowStep);
  last_ = t;
}

namespace {

std::atomic<int> g_signal{0};
char g_notice[256];
size_t g_notice_len = 0;

extern "C" void on_signal(int sig) {
  g_signal.store(sig);
  // write() is async-signal-safe; the message was formatted in advance.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, g_notice, g_notice_len);
}

}  // namespace

void catch_interrupts(const char* tool, const char* then) {
  const int n = std::snprintf(g_notice, sizeof g_notice, "\n%s: interrupted: %s (interrupt again to quit at once)\n",
                              tool, then);
  g_notice_len = n > 0 ? std::min(size_t(n), sizeof g_notice - 1) : 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_RESTART;  // a second signal takes the default action: the process ends
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int interrupted() { return g_signal.load(); }

std::string partial_path(const std::string& path) { return path + ".partial"; }

std::string output_target(const std::string& path) {
  std::error_code ec;
  if (!interrupted() || !std::filesystem::exists(path, ec) || written_through(path)) return path;
  const std::string partial = partial_path(path);
  std::fprintf(stderr, "%s: %s kept (the run was interrupted); partial results written to %s\n", g_tool.c_str(),
               path.c_str(), partial.c_str());
  return partial;
}

void write_output(const std::string& path, std::string_view data) { write_file_atomic(output_target(path), data); }

}  // namespace ttt::app
