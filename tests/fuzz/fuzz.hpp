// Shared by the libFuzzer targets: inputs that the parsers take from a file go
// through one scratch file per process, and only ttt::Error may escape a
// parser (any other exception, a crash or a sanitizer report is a bug).
#pragma once

#include "ttt/error.hpp"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace ttt::fuzz {

// Writes the input to $TMPDIR/ttt-fuzz-<pid><suffix> and returns the path.
inline std::string scratch_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("ttt-fuzz-" + std::to_string(::getpid()) + suffix)).string();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs f; a ttt::Error is the expected way to reject an input.
template <typename F>
void rejects_cleanly(F&& f) {
  try {
    f();
  } catch (const ttt::Error&) {
  }
}

}  // namespace ttt::fuzz
