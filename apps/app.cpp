// Shared main() wrapper and option parsing of the command-line tools.
#include "apps/app.hpp"

#include "host/error.hpp"

#include <cstdio>
#include <iostream>
#include <new>

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

}  // namespace ttt::app
