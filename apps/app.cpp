// Shared main() wrapper and option parsing of the command-line tools.
#include "apps/app.hpp"

#include "host/error.hpp"
#include "host/program.hpp"
#include "ttt/device.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <unistd.h>

namespace ttt::app {

int run(const char* name, int argc, char** argv, int (*body)(int, char**)) {
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
  }
  return 1;
}

bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm, const char* usage,
           const char* about, const po::positional_options_description* positional) {
  po::options_description all;
  all.add_options()("help,h", "show this help and exit");
  all.add(opts);
  auto parser = po::command_line_parser(argc, argv).options(all);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n" << about << "\n\n" << all << "\n";
    return false;
  }
  po::notify(vm);
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

}  // namespace ttt::app
