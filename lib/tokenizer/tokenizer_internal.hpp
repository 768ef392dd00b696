// Internals shared by the tokenizer's source files (not a public header): the
// PCRE2 pre-tokeniser, the byte-level BPE tables and merge, the special-token
// matcher, and the loaders that fill them.
#pragma once

#include "ttt/tokenizer.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pcre2_real_code_8;

namespace ttt::tok {

// The split regexes of the two families we know by heart. A tiktoken file
// carries none, so its loader supplies one of these.
extern const char* const kLlama3Pattern;
extern const char* const kGpt2Pattern;

// A pre-tokenisation regex, compiled once (JIT when available). split() is
// const and reentrant: per-call state lives on the caller's side.
class Regex {
 public:
  // `origin` names the file the pattern came from, for error messages.
  Regex(const std::string& pattern, const std::string& origin);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends to `pieces` the matches of the pattern in `text` (valid UTF-8) and
  // the unmatched gaps between them, in order: HF's Split with behaviour
  // "Isolated". Empty matches yield no piece. Starts at byte `from` and stops
  // once it has `max` pieces, returning where to go on (text.size() at the
  // end), so a huge text never needs all its pieces in memory at once.
  size_t split(std::string_view text, size_t from, size_t max, std::vector<std::string_view>& pieces) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;  // as given, before the rewrite for PCRE2
  std::string origin_;
  pcre2_real_code_8* code_ = nullptr;
};

// Merge priorities keyed by the pair of adjacent token ids: rank (lower merges
// first) and the id of the merged token. Open addressing, as the lookup is the
// inner loop of BPE.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    int32_t id = -1;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);

  void reserve(size_t n);
  // Later inserts of the same pair overwrite earlier ones (as HF's HashMap
  // collect over the merges list does).
  void insert(int32_t left, int32_t right, uint32_t rank, int32_t id);
  const Entry* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t k = key(left, right);
    for (size_t i = hash(k);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == k) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static uint64_t key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  size_t hash(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Entry> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

// A fast hash for short byte strings (words of a few bytes are the common case).
inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xC2B2AE3D27D4EB4Full);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < n; ++i) w |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 29);
}

// Token bytes -> id for the ranked vocabulary, open addressing over ids (the
// bytes themselves stay in Impl::token_bytes).
class PieceTable {
 public:
  // Returns -1, or the id already holding the same bytes as `id` (a duplicate).
  int32_t insert(const std::vector<std::string>& tokens, int32_t id);
  void reserve(size_t n);
  int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(s.data(), s.size());
    const auto tag = uint32_t(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& e = slots_[i];
      if (e.id < 0) return -1;
      if (e.tag == tag && (*tokens_)[e.id] == s) return e.id;
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;  // high hash bits: most mismatches never touch the bytes
    int32_t id = -1;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  const std::vector<std::string>* tokens_ = nullptr;
};

// Words already merged, so repeated words skip the merge: direct-mapped and
// lossy (a newer word evicts an older one in its slot), with words and ids
// stored inline, so memory is fixed and a lookup is one hash and one compare.
class PieceCache {
 public:
  static constexpr size_t kMaxPiece = 30, kMaxIds = 8, kSlots = 1 << 15;
  bool get(std::string_view piece, uint64_t hash, std::vector<int32_t>& out) const;
  void put(std::string_view piece, uint64_t hash, const int32_t* ids, size_t n) const;

 private:
  struct Slot {
    uint64_t hash = 0;
    uint8_t len = 0, n_ids = 0;  // len 0: empty
    char bytes[kMaxPiece];
    int32_t ids[kMaxIds];
  };
  mutable std::mutex mu_;
  mutable std::vector<Slot> slots_;  // allocated on first use
};

// Byte-level BPE over raw bytes: the vocabulary's tokens are byte strings
// (HF's printable byte alphabet is undone at load time).
struct Bpe {
  std::array<int32_t, 256> byte_id{};  // the token of each single byte
  PieceTable piece_id;                 // bytes -> id of the ranked vocabulary
  MergeTable merges;
  // A piece that is itself a token is emitted whole before any merging:
  // HF's ignore_merges, and what tiktoken always does.
  bool whole_piece_first = false;
  PieceCache cache;

  // Appends the ids of one pre-tokenised piece (any bytes, size >= 1).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  // The merge proper: lowest rank first, leftmost among equal ranks.
  void merge(std::string_view piece, std::vector<int32_t>& out) const;
};

// An added token matched verbatim in the text before pre-tokenisation.
// `special` ones only with parse_special; the others (HF added tokens with
// "special": false) always, as HF does.
struct AddedToken {
  std::string text;
  int32_t id = -1;
  bool special = true;
};

struct Impl {
  std::string name;
  bool raw_bytes = false;                // the byte tokenizer: id = byte, nothing else
  std::vector<std::string> token_bytes;  // id -> bytes (specials: their text)
  std::vector<uint8_t> has_token;        // 0 where an id in 0..vocab_size-1 is unassigned
  Bpe bpe;
  std::unique_ptr<Regex> regex;  // null: the whole text is one piece
  std::vector<AddedToken> added;
  std::unordered_map<std::string_view, size_t> added_index;  // text -> index into `added`
  std::array<bool, 256> added_first{};                        // bytes that start some added token
  std::vector<size_t> added_lengths;                          // distinct lengths, longest first
  bool any_always = false;                                    // a non-special added token exists
  int bos = -1, eos = -1;

  // Call once tokens and added tokens are in place: builds the lookup tables.
  void finish(const std::string& origin);
  // Text with no added tokens in it: UTF-8 runs, regex, BPE.
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;
};

// Loaders (tokenizer_load.cpp). Each throws ttt::Error naming `path`.
std::shared_ptr<Impl> load_hf_json(const std::string& path, const std::string& content);
std::shared_ptr<Impl> load_tiktoken(const std::string& path, const std::string& content);
std::shared_ptr<Impl> make_bytes();
// Shared by the loaders: fills bpe.piece_id and bpe.byte_id from token_bytes
// for the ids flagged `ranked` (the model's vocabulary, not added tokens).
void index_vocab(Impl& t, const std::vector<uint8_t>& ranked, const std::string& path);
// "llama3", "gpt2" or "bpe", from the split regex.
std::string family_of(const std::string& pattern);

// UTF-8 (tokenizer.cpp): the length of the longest valid prefix of s, and of
// the maximal invalid subpart at the start of s (>= 1; s is not valid there).
size_t valid_utf8_prefix(std::string_view s);
size_t invalid_utf8_prefix(std::string_view s);

}  // namespace ttt::tok
