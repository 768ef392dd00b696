// What every command-line tool shares: main() turns exceptions into one clear
// line and an exit code (2 for usage errors, 1 for everything else), and the
// --help layout. The library never exits; only these wrappers do.
#pragma once

#include <boost/program_options.hpp>

#include <csignal>
#include <cstdint>
#include <limits>
#include <string>

namespace ttt {
class Runtime;
}

namespace ttt::app {

namespace po = boost::program_options;

// Runs body(argc, argv); prints "NAME: error: ..." on failure.
int run(const char* name, int argc, char** argv, int (*body)(int, char**));

// Parses argv against opts (and positional, if any); --help prints usage +
// opts and returns false (the caller exits 0).
bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm, const char* usage,
           const char* about, const po::positional_options_description* positional = nullptr);

// A bad option value: exits 2 like Boost's own parse errors. The message names the flag.
struct UsageError : po::error {
  explicit UsageError(const std::string& what) : po::error(what) {}
};

// Range-checked numeric options, declared as po::value<int64_t> or <float>:
// a value outside [min, max] (or a NaN) is a UsageError naming --name, so a
// negative count cannot wrap into a huge one.
int64_t int_option(const po::variables_map& vm, const char* name, int64_t min,
                   int64_t max = std::numeric_limits<int64_t>::max());
float nonneg_float_option(const po::variables_map& vm, const char* name);  // finite and >= 0

// Prints "TOOL: compiling kernels for DEVICE (first run only, cached in DIR)"
// on stderr before rt builds its first kernel program from source.
void announce_compiles(Runtime& rt, const char* tool);

// Interrupts: after catch_interrupts(), SIGINT and SIGTERM only raise a flag
// that long loops poll between mini-batches (and say so on stderr); a second
// signal ends the process at once. interrupted() returns the signal (0: none).
// `then` is what the notice says the tool does before it stops.
void catch_interrupts(const char* tool, const char* then = "finishing the current mini-batch, then writing partial results");
int interrupted();

}  // namespace ttt::app
