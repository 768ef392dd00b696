// Tokenizer files: an HF tokenizer.json or a tiktoken rank file (told apart by
// content, as Tokenizer::from_file does). A tokenizer that loads must encode
// and decode a fixed text, with and without special tokens, exactly.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/tokenizer.hpp"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ttt::fuzz::scratch_file(data, size, ".tok");
  ttt::fuzz::rejects_cleanly([&] {
    const ttt::Tokenizer t = ttt::Tokenizer::from_file(path);
    static constexpr std::string_view kText = "Hello, world! 123 <|endoftext|> caf\xc3\xa9\n\xff\xfe  tabs\t";
    for (bool special : {false, true}) {
      const auto ids = t.encode(kText, special);
      if (t.decode(ids) != kText) __builtin_trap();
    }
    (void)t.name();
  });
  return 0;
}
