// encode/decode of arbitrary bytes with the real Llama-3 and GPT-2
// vocabularies (HF json and tiktoken forms) and the byte tokenizer: decode
// must invert encode exactly, and decode must reject out-of-range ids cleanly.
// The first input byte picks the tokenizer and whether special tokens parse.
#include "tests/fuzz/fuzz.hpp"
#include "ttt/tokenizer.hpp"

#include <cstring>
#include <memory>
#include <vector>

namespace {

std::vector<ttt::Tokenizer>& tokenizers() {
  static std::vector<ttt::Tokenizer> all = [] {
    std::vector<ttt::Tokenizer> v{ttt::Tokenizer::bytes()};
    const char* dir = std::getenv("TTT_TOKENIZER_FIXTURES");
    const std::string root = dir && *dir ? dir : TTT_TOKENIZER_FIXTURES;
    for (const char* f : {"llama3/tokenizer.json", "llama3/tokenizer.model", "gpt2/tokenizer.json", "gpt2/tokenizer.model"})
      if (std::filesystem::exists(root + "/" + f)) v.push_back(ttt::Tokenizer::from_file(root + "/" + f));
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& all = tokenizers();
  const ttt::Tokenizer& t = all[data[0] % all.size()];
  const bool special = data[0] & 0x80;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto ids = t.encode(text, special);
  for (auto id : ids)
    if (id < 0 || id >= t.vocab_size()) __builtin_trap();
  if (t.decode(ids) != text) __builtin_trap();
  // The same bytes read as ids: decode either succeeds or names the bad id.
  std::vector<int32_t> raw((size - 1) / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data + 1, raw.size() * 4);
  ttt::fuzz::rejects_cleanly([&] { (void)t.decode(raw); });
  return 0;
}
