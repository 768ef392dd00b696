// Loaders for tiktoken rank files (with the Llama-3 or GPT-2 regex and the
// special tokens that such files leave out) and the built-in byte tokenizer,
// and the vocabulary indexing that every loader ends with.
#include "lib/tokenizer/tokenizer_internal.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <climits>

namespace ttt::tok {
namespace {

using json = nlohmann::json;

constexpr int kLlama3Ranks = 128000;  // ids 128000..128255 are the specials
constexpr int kGpt2Ranks = 50256;     // id 50256 is <|endoftext|>

}  // namespace

// Builds piece_id and byte_id from token_bytes for the ids flagged `ranked`
// (the model's vocabulary, not the added tokens).
void index_vocab(Impl& t, const std::vector<uint8_t>& ranked, const std::string& path) {
  t.bpe.piece_id.reserve(t.token_bytes.size());
  for (size_t id = 0; id < t.token_bytes.size(); ++id) {
    if (!ranked[id]) continue;
    if (const int32_t other = t.bpe.piece_id.insert(t.token_bytes, int32_t(id)); other >= 0)
      throw Error(fmt::format("{}: ids {} and {} have the same bytes {}", path, other, id,
                              json(t.token_bytes[id]).dump(-1, ' ', false, json::error_handler_t::replace)));
  }
  for (int b = 0; b < 256; ++b) {
    const char c = char(b);
    t.bpe.byte_id[b] = t.bpe.piece_id.find(std::string_view(&c, 1));
    if (t.bpe.byte_id[b] < 0)
      throw Error(fmt::format("{}: the vocabulary has no token for the byte 0x{:02X}; a byte-level BPE needs all 256",
                              path, b));
  }
}

std::string family_of(const std::string& pattern) {
  if (pattern == kLlama3Pattern) return "llama3";
  if (pattern == kGpt2Pattern) return "gpt2";
  return "bpe";
}

// --- tiktoken rank files -----------------------------------------------------

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool base64_decode(std::string_view s, std::string& out) {
  out.clear();
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  unsigned acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = base64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | unsigned(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xFF);
    }
  }
  return !out.empty();
}

// Meta's names for the 256 Llama-3 specials (those of Llama 3.1, as in the
// added_tokens of its tokenizer.json): ten named ones with reserved slots
// between them, then reserved_special_token_3..247.
std::vector<std::string> llama3_specials() {
  std::vector<std::string> s = {"<|begin_of_text|>",
                                "<|end_of_text|>",
                                "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>",
                                "<|finetune_right_pad_id|>",
                                "<|reserved_special_token_2|>",
                                "<|start_header_id|>",
                                "<|end_header_id|>",
                                "<|eom_id|>",
                                "<|eot_id|>",
                                "<|python_tag|>"};
  for (int i = 3; s.size() < 256; ++i) s.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  return s;
}

}  // namespace

std::shared_ptr<Impl> load_tiktoken(const std::string& path, const std::string& content) {
  std::vector<std::pair<std::string, long long>> ranks;
  std::string bytes;
  size_t line_no = 0;
  for (size_t pos = 0; pos < content.size();) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    std::string_view line(content.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    long long rank = -1;
    bool ok = sp != std::string_view::npos && sp + 1 < line.size() && base64_decode(line.substr(0, sp), bytes);
    if (ok) {
      rank = 0;
      for (char c : line.substr(sp + 1)) {
        if (c < '0' || c > '9' || rank > INT_MAX / 20) {
          ok = false;
          break;
        }
        rank = rank * 10 + (c - '0');
      }
    }
    if (!ok)
      throw Error(fmt::format("{}:{}: expected \"<base64 token> <rank>\", got \"{}\"", path, line_no,
                              std::string(line.substr(0, 80))));
    ranks.emplace_back(bytes, rank);
  }
  const int n = int(ranks.size());
  std::vector<std::string> specials;
  std::string pattern, family;
  if (n == kLlama3Ranks) {
    specials = llama3_specials();
    pattern = kLlama3Pattern;
    family = "llama3";
  } else if (n == kGpt2Ranks) {
    specials = {"<|endoftext|>"};
    pattern = kGpt2Pattern;
    family = "gpt2";
  } else {
    throw Error(fmt::format("{}: {} ranks; a tiktoken file carries no regex and no special tokens, so only the "
                            "Llama-3 ({}) and GPT-2 ({}) sizes are known",
                            path, n, kLlama3Ranks, kGpt2Ranks));
  }

  auto t = std::make_shared<Impl>();
  t->token_bytes.resize(size_t(n) + specials.size());
  t->has_token.assign(t->token_bytes.size(), 0);
  std::vector<uint8_t> ranked(t->token_bytes.size(), 0);
  for (auto& [b, rank] : ranks) {
    if (rank >= n) throw Error(fmt::format("{}: rank {} is not below the number of tokens ({})", path, rank, n));
    if (t->has_token[rank]) throw Error(fmt::format("{}: rank {} appears twice", path, rank));
    t->token_bytes[rank] = std::move(b);
    t->has_token[rank] = ranked[rank] = 1;
  }
  index_vocab(*t, ranked, path);

  // tiktoken merges the adjacent pair whose concatenation has the lowest rank.
  // Listing every way to cut each token into two tokens gives the same
  // priorities as a pair table, so one merge routine serves both formats.
  t->bpe.whole_piece_first = true;
  t->bpe.merges.reserve(size_t(n) * 4);
  for (int id = 0; id < n; ++id) {
    const std::string_view tb = t->token_bytes[id];
    for (size_t cut = 1; cut < tb.size(); ++cut) {
      const int32_t l = t->bpe.piece_id.find(tb.substr(0, cut));
      if (l < 0) continue;
      const int32_t r = t->bpe.piece_id.find(tb.substr(cut));
      if (r < 0) continue;
      t->bpe.merges.insert(l, r, uint32_t(id), id);
    }
  }

  for (size_t i = 0; i < specials.size(); ++i) {
    const int32_t id = int32_t(n + i);
    t->token_bytes[id] = specials[i];
    t->has_token[id] = 1;
    t->added.push_back(AddedToken{specials[i], id, true});
  }
  t->regex = std::make_unique<Regex>(pattern, path);
  t->name = fmt::format("{} {} ({} ids)", family, path, t->token_bytes.size());
  t->finish(path);
  return t;
}

std::shared_ptr<Impl> make_bytes() {
  auto t = std::make_shared<Impl>();
  t->raw_bytes = true;
  t->name = "bytes";
  t->token_bytes.resize(256);
  t->has_token.assign(256, 1);
  for (int b = 0; b < 256; ++b) {
    t->token_bytes[b] = std::string(1, char(b));
    t->bpe.byte_id[b] = b;
  }
  t->finish("bytes");
  return t;
}

}  // namespace ttt::tok