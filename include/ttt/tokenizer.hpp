// Text <-> token ids: byte-level BPE (Llama-3, GPT-2) loaded from an HF
// tokenizer.json or a tiktoken rank file, and the built-in byte tokenizer.
// Encoding matches HF `tokenizers` / tiktoken exactly; decode(encode(x)) == x
// for any bytes, including invalid UTF-8 (see tokenizer.cpp for how).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ttt {

struct Config;

namespace tok {
struct Impl;
}

// Immutable once loaded; copies share the tables. encode/decode are safe to
// call from several threads at once.
class Tokenizer {
 public:
  // ids 0..255 are the raw bytes; no special tokens, no BOS.
  static Tokenizer bytes();
  // An HF tokenizer.json (a JSON object) or a tiktoken rank file ("base64 rank"
  // per line), told apart by content. Throws ttt::Error naming the file.
  static Tokenizer from_file(const std::string& path);
  // The tokenizer of a model directory: "tokenizer": "bytes" in config.json
  // selects the byte tokenizer; else dir/tokenizer.json; else
  // dir/tokenizer.model; else an Error naming the files looked for. Also an
  // Error when the tokenizer has more ids than config.vocab_size.
  static Tokenizer for_model(const std::string& dir, const Config& config);

  // parse_special = false: special-token strings in the text are plain text
  // (a document cannot inject control tokens), as tiktoken's
  // encode(text, disallowed_special=()). true: they become their ids, as HF
  // tokenizers' encode(text, add_special_tokens=False). No BOS is added.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const;
  // The exact inverse of encode: token bytes concatenated, special tokens as
  // their text. Throws ttt::Error naming the first id outside 0..vocab_size-1.
  std::string decode(const std::vector<int32_t>& ids) const;

  int vocab_size() const;  // one past the largest id, special tokens included
  int bos_id() const;      // <|begin_of_text|> (Llama-3), <|endoftext|> (GPT-2); -1 if none
  int eos_id() const;      // <|end_of_text|> (Llama-3), <|endoftext|> (GPT-2); -1 if none
  // The id of a special token given its text, e.g. "<|eot_id|>"; -1 if none.
  int special_id(std::string_view text) const;
  // "bytes", or family, file and size: "llama3 dir/tokenizer.json (128256 ids)"
  std::string name() const;

 private:
  explicit Tokenizer(std::shared_ptr<const tok::Impl> impl);
  std::shared_ptr<const tok::Impl> impl_;
};

// Where a model directory without a tokenizer gets one: the file to fetch for
// its vocabulary (Meta's Llama-3 tokenizer for vocab_size 128256) and where
// to put it, or another tokenizer file (Error::setting "tokenizer"). for_model's error ends with it.
std::string tokenizer_hint(const Config& config, const std::string& dir);

// Why tokenizer t cannot serve a model of config's vocabulary ("" when it can, or when vocab_size is 0): more
// ids than vocab_size (the model could not embed them), or fewer than half of them (a tokenizer of another
// family: every number would be wrong). Fewer ids down to half are accepted: vocabularies padded past the
// tokenizer's ids (to a multiple of 64, say) are common. The byte tokenizer fits a model whose config says
// "tokenizer": "bytes" at any vocab_size >= 256.
std::string tokenizer_mismatch(const Tokenizer& t, const Config& config);

}  // namespace ttt
