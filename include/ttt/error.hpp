// ttt::Error, the one exception type of ttt-cl. It needs no OpenCL: the CPU-only
// layers (format, tokenizer, reference, report) throw it too. host/error.hpp
// derives ClError from it for failed OpenCL calls.
#pragma once

#include <stdexcept>
#include <string>

namespace ttt {

// Every failure the library reports is a ttt::Error (or derives from it).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ttt
