// .npy token arrays: magic, header versions, dtype, shape and data size.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/token_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  ttt::fuzz::rejects_cleanly([&] { ttt::read_token_npy(bytes, "fuzz.npy"); });
  // read_token_file tells .npy from text by the magic: both paths, from a file.
  const std::string path = ttt::fuzz::scratch_file(data, size, ".tokens");
  ttt::fuzz::rejects_cleanly([&] { ttt::read_token_file(path); });
  return 0;
}
