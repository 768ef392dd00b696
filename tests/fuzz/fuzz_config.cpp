// config.json of a model directory: parse, type checks and validation. A
// config that loads must survive a round trip through to_json.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/config.hpp"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ttt::fuzz::scratch_file(data, size, ".json");
  ttt::fuzz::rejects_cleanly([&] {
    const ttt::Config c = ttt::Config::load(path);
    const ttt::Config back = ttt::Config::from_json(c.to_json(), "round trip");
    if (back.to_json() != c.to_json()) __builtin_trap();
  });
  return 0;
}
