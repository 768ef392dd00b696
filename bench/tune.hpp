// Subcommands of ttt-bench that live in their own files.
#pragma once

namespace ttt::bench {

int tune(int argc, char** argv);     // bench/tune.cpp
int compare(int argc, char** argv);  // bench/compare.cpp

}  // namespace ttt::bench
