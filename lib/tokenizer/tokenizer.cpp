// The public Tokenizer: choosing a tokenizer for a file or model directory,
// the encode pipeline (added tokens, UTF-8 runs, regex, BPE) and decode.
//
// Invalid UTF-8: the reference tokenizers only take valid text, where the
// pipeline is theirs exactly. Other input is cut into maximal valid runs and
// the invalid bytes between them; each valid run is pre-tokenised alone (an
// invalid byte acts like the end of the text to the regex) and each stretch
// of invalid bytes is one piece for BPE. Every byte has a token, so decode
// gives back the input byte for byte.
#include "lib/tokenizer/tokenizer_internal.hpp"

#include "ttt/error.hpp"
#include "ttt/config.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ttt {
namespace tok {
namespace {

// The length of the well-formed UTF-8 sequence starting at p[0] (n bytes
// left), or 0 with *part set to the length of its maximal invalid subpart
// (Unicode's definition: the longest prefix that could still have started a
// valid sequence, at least 1).
size_t sequence(const unsigned char* p, size_t n, size_t* part) {
  const unsigned c = p[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF;  // the range allowed for the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    *part = 1;
    return 0;
  }
  size_t k = 1;
  for (; k < len && k < n; ++k) {
    const unsigned b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (k == len) return len;
  *part = k;
  return 0;
}

}  // namespace

size_t valid_utf8_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0, part = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const size_t len = sequence(p + i, n - i, &part);
    if (!len) break;
    i += len;
  }
  return i;
}

size_t invalid_utf8_prefix(std::string_view s) {
  size_t part = 1;
  sequence(reinterpret_cast<const unsigned char*>(s.data()), s.size(), &part);
  return part;
}

void Impl::finish(const std::string& origin) {
  for (size_t i = 0; i < added.size(); ++i) {
    auto [it, fresh] = added_index.emplace(added[i].text, i);
    if (!fresh)
      throw Error(fmt::format("{}: added token \"{}\" appears twice (ids {} and {})", origin, added[i].text,
                              added[it->second].id, added[i].id));
    added_first[static_cast<unsigned char>(added[i].text[0])] = true;
    if (std::find(added_lengths.begin(), added_lengths.end(), added[i].text.size()) == added_lengths.end())
      added_lengths.push_back(added[i].text.size());
    any_always = any_always || !added[i].special;
  }
  std::sort(added_lengths.rbegin(), added_lengths.rend());
  auto id_of = [&](const char* text) {
    auto it = added_index.find(text);
    return it == added_index.end() ? -1 : added[it->second].id;
  };
  bos = id_of("<|begin_of_text|>");
  eos = id_of("<|end_of_text|>");
  if (bos < 0) bos = id_of("<|endoftext|>");  // GPT-2 uses it both to start and to end documents
  if (eos < 0) eos = id_of("<|endoftext|>");
}

void Impl::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
  if (raw_bytes) {
    for (char c : text) out.push_back(static_cast<unsigned char>(c));
    return;
  }
  std::vector<std::string_view> pieces;
  size_t i = 0;
  while (i < text.size()) {
    const size_t valid = valid_utf8_prefix(text.substr(i));
    if (valid > 0) {
      const std::string_view run = text.substr(i, valid);
      for (size_t at = 0; at < run.size();) {
        pieces.clear();
        at = regex->split(run, at, 4096, pieces);
        for (std::string_view p : pieces) bpe.encode_piece(p, out);
      }
      i += valid;
      continue;
    }
    size_t j = i;
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    size_t part = 0;
    while (j < text.size() && sequence(p + j, text.size() - j, &part) == 0) j += part;
    bpe.encode_piece(text.substr(i, j - i), out);
    i = j;
  }
}

}  // namespace tok

Tokenizer::Tokenizer(std::shared_ptr<const tok::Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::bytes() {
  static const std::shared_ptr<const tok::Impl> impl = tok::make_bytes();
  return Tokenizer(impl);
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(fmt::format("{}: is a directory; expected a tokenizer.json or tokenizer.model file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open tokenizer file", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string content = ss.str();
  if (f.bad()) throw Error(fmt::format("{}: read error", path));
  if (content.empty()) throw Error(fmt::format("{}: empty tokenizer file", path));
  const size_t first = content.find_first_not_of(" \t\r\n");
  const bool json = fs::path(path).extension() == ".json" || (first != std::string::npos && content[first] == '{');
  try {
    return Tokenizer(json ? tok::load_hf_json(path, content) : tok::load_tiktoken(path, content));
  } catch (const nlohmann::json::exception& e) {
    // A member of an unexpected type (e.g. "type": 5) that no explicit check caught.
    throw Error(fmt::format("{}: unexpected tokenizer.json structure: {}", path, e.what()));
  }
}

std::string tokenizer_hint(const Config& config, const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string where = (fs::path(dir) / "tokenizer.json").string();
  if (config.vocab_size == 128256)  // the official presets: Llama-3's 128,000 tokens and 256 special ones
    return fmt::format("this vocabulary is Llama-3's: fetch tokenizer.json from huggingface.co/meta-llama/"
                       "Meta-Llama-3-8B (under the Llama 3 Community License) and put it at {}, or give "
                       "the tokenizer file",
                       where);
  return fmt::format("put the model's tokenizer.json (or tokenizer.model) at {}, or give the tokenizer file", where);
}

Tokenizer Tokenizer::for_model(const std::string& dir, const Config& config) {
  namespace fs = std::filesystem;
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string model_path = (fs::path(dir) / "tokenizer.model").string();
  Tokenizer t = bytes();
  if (config.tokenizer == "bytes") {
    // the built-in one
  } else if (!config.tokenizer.empty()) {
    throw Error(fmt::format("{}: key 'tokenizer' = \"{}\" is unknown: the built-in tokenizer is \"bytes\"; leave "
                            "the key out to use tokenizer.json or tokenizer.model",
                            (fs::path(dir) / "config.json").string(), config.tokenizer));
  } else if (fs::exists(json_path)) {
    t = from_file(json_path);
  } else if (fs::exists(model_path)) {
    t = from_file(model_path);
  } else {
    throw Error(fmt::format("{}: no tokenizer: looked for {} and {} (a byte-level model says \"tokenizer\": "
                            "\"bytes\" in config.json); {}",
                            dir, json_path, model_path, tokenizer_hint(config, dir)),
                "tokenizer");
  }
  if (const std::string why = tokenizer_mismatch(t, config); !why.empty())
    throw Error(fmt::format("{}: {} (config.json)", dir, why));
  return t;
}

std::string tokenizer_mismatch(const Tokenizer& t, const Config& config) {
  const int v = config.vocab_size, n = t.vocab_size();
  if (v <= 0) return {};
  if (n > v)
    return fmt::format("tokenizer {}: {} ids, more than the model's vocab_size {} (it could not embed them)",
                       t.name(), n, v);
  if (t.name() == "bytes" && config.tokenizer == "bytes") return {};
  if (2 * int64_t(n) < int64_t(v))
    return fmt::format("tokenizer {}: {} ids, fewer than half the model's vocab_size {}, so it is not the model's "
                       "tokenizer (its numbers would be wrong)",
                       t.name(), n, v);
  return {};
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const tok::Impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 16);
  if (t.added.empty() || !(parse_special || t.any_always)) {
    t.encode_ordinary(text, out);
    return out;
  }
  // Added tokens are found before pre-tokenisation, leftmost first and the
  // longest at a position, like HF's AddedVocabulary; the text between them
  // is encoded on its own.
  const size_t n = text.size();
  size_t start = 0, i = 0;
  while (i < n) {
    if (!t.added_first[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const tok::AddedToken* hit = nullptr;
    for (size_t len : t.added_lengths) {
      if (i + len > n) continue;
      auto it = t.added_index.find(text.substr(i, len));
      if (it == t.added_index.end()) continue;
      const tok::AddedToken& a = t.added[it->second];
      if (a.special && !parse_special) continue;
      hit = &a;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    t.encode_ordinary(text.substr(start, i - start), out);
    out.push_back(hit->id);
    i += hit->text.size();
    start = i;
  }
  t.encode_ordinary(text.substr(start), out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const tok::Impl& t = *impl_;
  std::string out;
  out.reserve(ids.size() * 4);
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    if (id < 0 || size_t(id) >= t.token_bytes.size())
      throw Error(fmt::format("decode: token id {} (position {}) is outside 0..{} of tokenizer {}", id, k,
                              t.token_bytes.size() - 1, t.name));
    if (!t.has_token[id])
      throw Error(fmt::format("decode: token id {} (position {}) has no token in tokenizer {}", id, k, t.name));
    out += t.token_bytes[id];
  }
  return out;
}

int Tokenizer::vocab_size() const { return int(impl_->token_bytes.size()); }
int Tokenizer::bos_id() const { return impl_->bos; }
int Tokenizer::eos_id() const { return impl_->eos; }
std::string Tokenizer::name() const { return impl_->name; }

int Tokenizer::special_id(std::string_view text) const {
  auto it = impl_->added_index.find(text);
  return it == impl_->added_index.end() ? -1 : impl_->added[it->second].id;
}

}  // namespace ttt
