// safetensors: the header (length, JSON, dtypes, shapes, offsets) and the
// tensor data of any file; every tensor that loads is converted to float32.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ttt::fuzz::scratch_file(data, size, ".safetensors");
  ttt::fuzz::rejects_cleanly([&] {
    ttt::SafeTensors st(path);
    for (const auto& t : st.tensors()) {
      const auto v = ttt::SafeTensors::to_f32(t);
      if (int64_t(v.size()) != t.numel()) __builtin_trap();
      if (st.find(t.name) != &t) __builtin_trap();
    }
  });
  return 0;
}
