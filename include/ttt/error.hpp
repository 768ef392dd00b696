// ttt::Error, the one exception type of ttt-cl. It needs no OpenCL: the CPU-only
// layers (format, tokenizer, reference, report) throw it too. host/error.hpp
// derives ClError from it for failed OpenCL calls.
#pragma once

#include <stdexcept>
#include <utility>
#include <string>

namespace ttt {

// Every failure the library reports is a ttt::Error (or derives from it).
// Messages name no command-line flag (Python users read them too): where a
// setting would change the outcome, setting() names it ("force", "resume",
// "field", "tokenizer") and each front end says it its own way (the tools
// add "--force" to their error line).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  Error(const std::string& what, std::string setting) : std::runtime_error(what), setting_(std::move(setting)) {}
  const std::string& setting() const { return setting_; }

 private:
  std::string setting_;
};

}  // namespace ttt
