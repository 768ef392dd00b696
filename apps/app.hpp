// What every command-line tool shares: main() turns exceptions into one clear
// line and an exit code (2 for usage errors, 1 for everything else), and the
// --help layout. The library never exits; only these wrappers do.
#pragma once

#include <boost/program_options.hpp>

#include <string>

namespace ttt::app {

namespace po = boost::program_options;

// Runs body(argc, argv); prints "NAME: error: ..." on failure.
int run(const char* name, int argc, char** argv, int (*body)(int, char**));

// Parses argv against opts (and positional, if any); --help prints usage +
// opts and returns false (the caller exits 0).
bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm, const char* usage,
           const char* about, const po::positional_options_description* positional = nullptr);

}  // namespace ttt::app
