// Text token files: whitespace-separated decimal ids with line/column errors.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/token_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ttt::fuzz::rejects_cleanly([&] { ttt::read_token_text(text, "fuzz.txt"); });
  return 0;
}
