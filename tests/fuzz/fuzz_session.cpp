// Session files (ttt-generate --load-session): header, checksum, options,
// tokens, rings and prime weights. Each input is tried as it is and with a
// valid checksum appended, so that the fuzzer reaches past the checksum.
#include "lib/generate/session_file.hpp"
#include "tests/fuzz/fuzz.hpp"

#include <string>

namespace {

// The key the seeds in tests/fuzz/session/ were written for.
const ttt::SessionKey kKey{0x1234, true, 1.f, 4, 2, 16};

uint64_t fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  ttt::fuzz::rejects_cleanly([&] { ttt::parse_session(raw, "fuzz", kKey); });
  std::string summed = raw;
  const uint64_t h = fnv(raw);
  summed.append(reinterpret_cast<const char*>(&h), sizeof h);
  ttt::fuzz::rejects_cleanly([&] {
    const ttt::Decoder::Saved s = ttt::parse_session(summed, "fuzz", kKey);
    // What parses is whole: every ring as long as the first, every token in the vocabulary.
    for (const auto& k : s.session.keys)
      if (k.size() != s.session.keys[0].size()) __builtin_trap();
    for (int32_t t : s.tokens)
      if (t < 0 || t >= kKey.vocab) __builtin_trap();
  });
  return 0;
}
