// HF tokenizer.json loader for byte-level BPE: a one-pass SAX read that puts
// model.vocab and model.merges (nearly all of the file) straight into flat
// vectors, then the checks that the rest describes what we implement.
#include "lib/tokenizer/tokenizer_internal.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <climits>

namespace ttt::tok {
namespace {

using json = nlohmann::json;

// GPT-2's byte-level alphabet: each byte stands for a printable code point
// (itself for printable Latin-1, 256+n for the others, in byte order). HF
// vocabularies and merges are written in it; we store raw bytes instead.
struct ByteAlphabet {
  std::array<int, 324> byte_of{};  // code point -> byte, -1 if not in the alphabet
  ByteAlphabet() {
    byte_of.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_of[printable ? b : next++] = b;
    }
  }
};

// "Ġthe" -> " the". Throws naming `what` when a character is not in the alphabet.
std::string unbyte(const std::string& s, const std::string& path, const std::string& what) {
  static const ByteAlphabet alpha;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int cp = -1;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
      i += 2;
    } else {
      i = s.size();  // three- and four-byte characters are never in the alphabet
    }
    if (cp < 0 || cp >= int(alpha.byte_of.size()) || alpha.byte_of[cp] < 0)
      throw Error(fmt::format("{}: {} \"{}\" has a character outside the byte-level alphabet (not a byte-level BPE?)",
                              path, what, s));
    out += char(alpha.byte_of[cp]);
  }
  return out;
}

const json& member(const json& j, const char* key, const std::string& path, const char* where) {
  auto it = j.find(key);
  if (it == j.end()) throw Error(fmt::format("{}: {} has no key '{}'", path, where, key));
  return *it;
}

bool flag(const json& j, const char* key, bool dflt, const std::string& path, const char* where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) throw Error(fmt::format("{}: {}.{} must be true or false, got {}", path, where, key, it->dump()));
  return it->get<bool>();
}

// Reads a tokenizer.json in one pass. model.vocab and model.merges go
// straight into flat vectors: as a DOM they would be 400k map nodes and json
// strings, most of the load time. Everything else becomes `rest`.
class Reader final : public nlohmann::json_sax<json> {
 public:
  struct Merge {
    std::string first, second;  // second unused for the "a b" form
    bool pair;                  // the ["a", "b"] form
  };
  json rest;
  std::vector<std::pair<std::string, number_integer_t>> vocab;
  std::vector<Merge> merges;
  bool has_vocab = false, has_merges = false;
  std::string error;  // why parsing stopped, when it did

  bool null() override { return value(json()); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override {
    if (mode_ != Mode::kVocab) return value(v);
    vocab.emplace_back(std::move(key_), v);
    return true;
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ != Mode::kVocab) return value(v);
    vocab.emplace_back(std::move(key_), v > number_unsigned_t(INT_MAX) ? -1 : number_integer_t(v));
    return true;
  }
  bool number_float(number_float_t v, const string_t&) override { return value(v); }
  bool string(string_t& v) override {
    if (mode_ == Mode::kMerges) merges.push_back(Merge{std::move(v), {}, false});
    else if (mode_ == Mode::kMergePair) pair_.push_back(std::move(v));
    else return value(std::move(v));
    return true;
  }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::kDom) return fail(bad_entry());
    if (under_model() && key_ == "vocab") {
      mode_ = Mode::kVocab;
      has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) mode_ = Mode::kDom;
    else stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::kDom) return fail(bad_entry());
    if (under_model() && key_ == "merges") {
      mode_ = Mode::kMerges;
      has_merges = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::kMergePair) {
      if (pair_.size() != 2) return fail(fmt::format("model.merges entry {} is not a pair of strings", merges.size()));
      merges.push_back(Merge{std::move(pair_[0]), std::move(pair_[1]), true});
      mode_ = Mode::kMerges;
    } else if (mode_ == Mode::kMerges) {
      mode_ = Mode::kDom;
    } else {
      stack_.pop_back();
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = ex.what();
    return false;
  }

 private:
  enum class Mode { kDom, kVocab, kMerges, kMergePair };
  Mode mode_ = Mode::kDom;
  std::vector<json*> stack_;  // open containers of `rest`, outermost first
  std::vector<std::string> stack_keys_;  // the key each container sits under
  std::string key_;                      // key of the next value in the innermost object
  std::vector<std::string> pair_;

  bool under_model() const { return stack_.size() == 2 && stack_keys_[1] == "model" && stack_[1]->is_object(); }
  std::string bad_entry() const {
    return mode_ == Mode::kVocab ? "model.vocab values must be integer ids"
                                 : fmt::format("model.merges entry {} is neither \"a b\" nor [\"a\", \"b\"]",
                                               merges.size());
  }
  bool fail(const std::string& why) {
    error = why;
    return false;
  }
  json* place(json&& v) {
    if (stack_.empty()) {
      rest = std::move(v);
      return &rest;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json&& v) {
    if (mode_ != Mode::kDom) return fail(bad_entry());
    place(std::move(v));
    return true;
  }
  bool open(json&& v) {
    const std::string k = stack_.empty() || stack_.back()->is_array() ? std::string() : key_;
    stack_.push_back(place(std::move(v)));
    stack_keys_.resize(stack_.size());
    stack_keys_.back() = k;
    return true;
  }
};

// A literal split string as a PCRE2 pattern: escape ASCII punctuation.
std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x80 && !std::isalnum(static_cast<unsigned char>(c))) out += '\\';
    out += c;
  }
  return out;
}

// The split regex of a byte-level pre_tokenizer: one Split (behaviour
// "Isolated") followed by ByteLevel without its own regex, or a ByteLevel
// alone that applies GPT-2's regex. Anything else would not be byte-level
// BPE as we implement it, so it is refused rather than approximated.
std::string split_pattern(const json& pt, const std::string& path) {
  if (!pt.is_object())
    throw Error(fmt::format("{}: pre_tokenizer is {}; a byte-level BPE needs a ByteLevel pre-tokenizer", path, pt.dump()));
  std::vector<const json*> steps;
  if (pt.value("type", "") == "Sequence") {
    const json& list = member(pt, "pretokenizers", path, "pre_tokenizer");
    if (!list.is_array()) throw Error(fmt::format("{}: pre_tokenizer.pretokenizers must be a list", path));
    for (const json& s : list) steps.push_back(&s);
  } else {
    steps.push_back(&pt);
  }
  std::string pattern;
  int splits = 0, byte_levels = 0;
  for (const json* s : steps) {
    const std::string type = s->is_object() ? s->value("type", "") : "";
    if (type == "Split") {
      const json& p = member(*s, "pattern", path, "pre_tokenizer Split");
      if (p.contains("Regex") && p["Regex"].is_string()) pattern = p["Regex"].get<std::string>();
      else if (p.contains("String") && p["String"].is_string()) pattern = escape_literal(p["String"].get<std::string>());
      else throw Error(fmt::format("{}: pre_tokenizer Split pattern {} is neither Regex nor String", path, p.dump()));
      const std::string behavior = s->value("behavior", "");
      if (behavior != "Isolated")
        throw Error(fmt::format("{}: pre_tokenizer Split behavior \"{}\" is not supported (only \"Isolated\")", path,
                                behavior));
      if (flag(*s, "invert", false, path, "Split"))
        throw Error(fmt::format("{}: pre_tokenizer Split with invert: true is not supported", path));
      ++splits;
    } else if (type == "ByteLevel") {
      if (flag(*s, "add_prefix_space", false, path, "ByteLevel"))
        throw Error(fmt::format("{}: ByteLevel add_prefix_space: true is not supported", path));
      if (flag(*s, "use_regex", true, path, "ByteLevel")) {
        pattern = kGpt2Pattern;
        ++splits;
      }
      ++byte_levels;
    } else {
      throw Error(fmt::format("{}: pre-tokenizer {} is not supported (byte-level BPE takes Split and ByteLevel)",
                              path, s->dump().substr(0, 200)));
    }
  }
  if (byte_levels != 1 || splits != 1)
    throw Error(fmt::format("{}: pre_tokenizer must hold one split regex and one ByteLevel step, got {}", path,
                            pt.dump().substr(0, 300)));
  return pattern;
}

}  // namespace

std::shared_ptr<Impl> load_hf_json(const std::string& path, const std::string& content) {
  Reader r;
  if (!json::sax_parse(content, &r)) throw Error(fmt::format("{}: invalid tokenizer.json: {}", path, r.error));
  const json& j = r.rest;
  if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object (HF tokenizer.json)", path));
  const json& model = member(j, "model", path, "tokenizer.json");
  const std::string type = model.value("type", "");
  if (type != "BPE") throw Error(fmt::format("{}: model.type is \"{}\"; only BPE is supported", path, type));
  if (model.contains("dropout") && !model["dropout"].is_null())
    throw Error(fmt::format("{}: model.dropout is set; BPE dropout is not supported", path));
  if (flag(model, "byte_fallback", false, path, "model"))
    throw Error(fmt::format("{}: model.byte_fallback: true is not supported (not a byte-level BPE)", path));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      throw Error(fmt::format("{}: model.{} {} is not supported", path, key, model[key].dump()));
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    throw Error(fmt::format("{}: normalizer {} is not supported (byte-level BPE has none)", path,
                            j["normalizer"].dump().substr(0, 200)));
  if (!r.has_vocab) throw Error(fmt::format("{}: model has no object 'vocab'", path));
  if (!r.has_merges) throw Error(fmt::format("{}: model has no list 'merges'", path));
  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) throw Error(fmt::format("{}: added_tokens must be a list", path));

  constexpr size_t kMaxUnusedIds = 1024;
  auto check_id = [&](long long id, const std::string& what) {
    if (id < 0 || id >= INT_MAX / 2)
      throw Error(fmt::format("{}: {} has id {}, expected a non-negative integer", path, what, id));
    return int32_t(id);
  };
  int32_t max_id = -1;
  for (const auto& [k, id] : r.vocab) max_id = std::max(max_id, check_id(id, fmt::format("vocabulary token \"{}\"", k)));
  for (const json& a : added) {
    const json id = a.value("id", json());
    if (!id.is_number_integer()) throw Error(fmt::format("{}: added token {} has no integer id", path, a.dump()));
    max_id = std::max(max_id, check_id(id.get<long long>(), "added token"));
  }
  // Real vocabularies number their tokens 0..N-1. Ids far past the number of tokens are a
  // broken file, and would make the id tables below as large as the biggest id.
  const size_t defined = r.vocab.size() + added.size();
  if (size_t(max_id) >= defined + kMaxUnusedIds)
    throw Error(fmt::format("{}: ids run up to {} but only {} tokens are defined; a vocabulary numbers its tokens "
                            "0..N-1 (at most {} ids may go unused)",
                            path, max_id, defined, kMaxUnusedIds));

  auto t = std::make_shared<Impl>();
  t->token_bytes.resize(size_t(max_id) + 1);
  t->has_token.assign(size_t(max_id) + 1, 0);
  std::vector<uint8_t> ranked(size_t(max_id) + 1, 0);
  for (const auto& [k, id] : r.vocab) {
    if (t->has_token[id]) throw Error(fmt::format("{}: id {} appears twice in model.vocab", path, id));
    t->token_bytes[id] = unbyte(k, path, "vocabulary token");
    t->has_token[id] = ranked[id] = 1;
  }
  index_vocab(*t, ranked, path);

  t->bpe.whole_piece_first = flag(model, "ignore_merges", false, path, "model");
  t->bpe.merges.reserve(r.merges.size());
  for (size_t rank = 0; rank < r.merges.size(); ++rank) {
    const Reader::Merge& m = r.merges[rank];
    std::string_view a = m.first, b = m.second;
    if (!m.pair) {  // "a b": the byte-level alphabet has no space, so one space separates
      const size_t sp = a.find(' ');
      if (sp == std::string::npos || a.find(' ', sp + 1) != std::string::npos)
        throw Error(fmt::format("{}: merge {} (\"{}\") is not two tokens separated by a space", path, rank, a));
      b = a.substr(sp + 1);
      a = a.substr(0, sp);
    }
    const std::string ab = unbyte(std::string(a), path, "merge token"), bb = unbyte(std::string(b), path, "merge token");
    auto id_of = [&](const std::string& bytes, const std::string& shown) {
      const int32_t id = t->bpe.piece_id.find(bytes);
      if (id < 0)
        throw Error(fmt::format("{}: merge {} ({} {}) uses \"{}\", which is not in model.vocab", path, rank, a, b,
                                shown));
      return id;
    };
    t->bpe.merges.insert(id_of(ab, std::string(a)), id_of(bb, std::string(b)), uint32_t(rank),
                         id_of(ab + bb, std::string(a) + std::string(b)));
  }

  for (const json& a : added) {
    AddedToken tok;
    tok.id = a["id"].get<int32_t>();
    if (!a.contains("content") || !a["content"].is_string() || a["content"].get<std::string>().empty())
      throw Error(fmt::format("{}: added token {} has no content", path, tok.id));
    tok.text = a["content"].get<std::string>();
    tok.special = flag(a, "special", false, path, "added token");
    for (const char* key : {"lstrip", "rstrip", "single_word"})
      if (flag(a, key, false, path, "added token"))
        throw Error(fmt::format("{}: added token \"{}\" has {}: true, which is not supported", path, tok.text, key));
    if (t->has_token[tok.id] && t->token_bytes[tok.id] != tok.text)
      throw Error(fmt::format("{}: added token \"{}\" reuses id {} of another vocabulary token", path, tok.text, tok.id));
    if (!t->has_token[tok.id]) {  // a vocabulary token keeps its bytes
      t->token_bytes[tok.id] = tok.text;
      t->has_token[tok.id] = 1;
    }
    t->added.push_back(std::move(tok));
  }

  const std::string pattern = split_pattern(j.value("pre_tokenizer", json()), path);
  t->regex = std::make_unique<Regex>(pattern, path);
  t->name = fmt::format("{} {} ({} ids)", family_of(pattern), path, t->token_bytes.size());
  t->finish(path);
  return t;
}

}  // namespace ttt::tok
