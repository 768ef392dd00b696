// Tokenizer tests: the byte tokenizer, small hand-made vocabularies (merge
// order, ignore_merges, errors) written to a temporary directory, and the
// Llama-3 / GPT-2 fixtures of ../shared (skipped where a clone lacks them):
// hand-checked ids, special tokens, and lossless round trips on random bytes.
// Exact agreement with the reference tokenizers is tokenizer_oracle.py's job.
#include "ttt/error.hpp"
#include "ttt/config.hpp"
#include "ttt/tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using ttt::Tokenizer;
using Ids = std::vector<int32_t>;

namespace {

// A fresh directory under the system temp dir, removed with the object.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("ttt-test-tokenizer-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    const std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

// GPT-2's byte -> printable character map, written out independently of the
// library so the test checks the loader rather than reusing it.
std::string byte_char(unsigned char b) {
  int cp = b, n = 0;
  const auto printable = [](int x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE); };
  if (!printable(b)) {
    for (int x = 0; x < b; ++x) n += !printable(x);
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) s += char(cp);
  else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string byte_chars(const std::string& bytes) {
  std::string s;
  for (unsigned char b : bytes) s += byte_char(b);
  return s;
}

// A byte-level BPE tokenizer.json: the 256 bytes (ids 0..255 in byte order),
// then `merges` in rank order, each making the next id.
nlohmann::json tiny_json(const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges) {
  nlohmann::json vocab = nlohmann::json::object(), m = nlohmann::json::array();
  for (int b = 0; b < 256; ++b) vocab[byte_char(static_cast<unsigned char>(b))] = b;
  int id = 256;
  for (const auto& [a, b] : merges) {
    m.push_back(byte_chars(a) + " " + byte_chars(b));
    if (!vocab.contains(byte_chars(a + b))) vocab[byte_chars(a + b)] = id++;
  }
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", id}, {"content", "<|end|>"}, {"special", true}, {"lstrip", false}, {"rstrip", false},
             {"single_word", false}, {"normalized", false}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model",
           {{"type", "BPE"}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", m}}}};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ttt::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Random test strings. Mode 0: any bytes (invalid UTF-8, NULs); 1: valid
// UTF-8 from all planes mixed with stray bytes; 2: pieces that stress the
// regex and the special-token matcher.
std::string random_text(std::mt19937& rng, size_t n, int mode) {
  static const std::vector<std::string> bits = {
      " ",  "  ",  "\t", "\n", "\r\n", "\n\n", "   \n", "'s", "'S", "'ll", "a",  "Z",  "the",  " of", "123",
      "4567", ".",  "!!", "<|", "|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|end", "é",
      "e\u0301", "中文", "한국어", "👍🏽", "👨‍👩‍👧", "\u00a0", "\u3000", "\u0085", "\u180e", "\u017f", std::string(1, '\0'),
      "\xff", "\xc3", "\xe4\xb8", "\xed\xa0\x80"};
  std::string s;
  std::uniform_int_distribution<int> byte(0, 255);
  while (s.size() < n) {
    if (mode == 0) {
      s += char(byte(rng));
    } else if (mode == 1) {
      const int kind = byte(rng) % 8;
      const uint32_t r = uint32_t(rng());
      uint32_t cp = kind < 3 ? r % 0x80 : kind < 5 ? 0x80 + r % 0x780 : kind < 7 ? 0x800 + r % 0xF800 : 0x10000 + r % 0x100000;
      if (kind == 7 && byte(rng) < 32) {
        s += char(0x80 + byte(rng) % 0x80);  // a stray continuation byte
        continue;
      }
      if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
      if (cp < 0x80) s += char(cp);
      else if (cp < 0x800) s += {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
      else if (cp < 0x10000) s += {char(0xE0 | (cp >> 12)), char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
      else
        s += {char(0xF0 | (cp >> 18)), char(0x80 | ((cp >> 12) & 0x3F)), char(0x80 | ((cp >> 6) & 0x3F)),
              char(0x80 | (cp & 0x3F))};
    } else {
      s += bits[rng() % bits.size()];
    }
  }
  s.resize(n);  // may cut a character: more invalid UTF-8 at the end
  return s;
}

const std::vector<size_t> kLengths = {0, 1, 2, 3, 7, 93, 144, 1023, 1024, 1025, 4096};

}  // namespace

// --- the byte tokenizer ------------------------------------------------------

TEST(ByteTokenizer, IdsAreTheBytes) {
  const Tokenizer t = Tokenizer::bytes();
  EXPECT_EQ(t.vocab_size(), 256);
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_EQ(t.name(), "bytes");
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  Ids want(256);
  for (int b = 0; b < 256; ++b) want[b] = b;
  EXPECT_EQ(t.encode(all), want);
  EXPECT_EQ(t.encode(all, true), want);
  EXPECT_EQ(t.decode(want), all);
  EXPECT_EQ(t.encode("<|endoftext|>").size(), 13u);  // no specials at all
}

TEST(ByteTokenizer, RandomRoundTrip) {
  const Tokenizer t = Tokenizer::bytes();
  std::mt19937 rng(7);
  for (size_t n : kLengths) {
    const std::string s = random_text(rng, n, 0);
    ASSERT_EQ(t.decode(t.encode(s)), s) << "length " << n;
  }
}

TEST(ByteTokenizer, DecodeRejectsIdsAbove255) {
  const std::string e = error_of([] { Tokenizer::bytes().decode({65, 256}); });
  EXPECT_NE(e.find("256"), std::string::npos) << e;
  EXPECT_NE(e.find("position 1"), std::string::npos) << e;
}

// --- small hand-made vocabularies --------------------------------------------

TEST(TokenizerTinyBpe, MergesLowestRankFirstAndLeftmostOnTies) {
  TempDir d;
  // ranks: "b c" 0, "a b" 1, "a bc" 2, "a a" 3
  const auto j = tiny_json({{"b", "c"}, {"a", "b"}, {"a", "bc"}, {"a", "a"}}, false);
  const Tokenizer t = Tokenizer::from_file(d.file("tokenizer.json", j.dump()));
  const int bc = 256, ab = 257, abc = 258, aa = 259;
  EXPECT_EQ(t.encode("abc"), (Ids{abc}));      // b c first, then a bc
  EXPECT_EQ(t.encode("abb"), (Ids{ab, 'b'}));  // no "ab b" merge
  EXPECT_EQ(t.encode("aaa"), (Ids{aa, 'a'}));  // leftmost pair of equal rank
  EXPECT_EQ(t.encode("aaaa"), (Ids{aa, aa}));
  EXPECT_EQ(t.encode("abab"), (Ids{ab, ab}));
  EXPECT_EQ(t.encode(" abc"), (Ids{' ', abc}));  // GPT-2 regex: " abc" is one piece, no merge with the space
  EXPECT_EQ(t.vocab_size(), 261);                // 256 bytes, 4 merges, <|end|>
  EXPECT_EQ(t.special_id("<|end|>"), 260);
  EXPECT_EQ(t.encode("x<|end|>", true), (Ids{'x', 260}));
  EXPECT_EQ(t.decode({'x', 260, bc}), "x<|end|>bc");
}

TEST(TokenizerTinyBpe, IgnoreMergesTakesWholeWords) {
  TempDir d;
  // "ab c" makes "abc", but only after "b c" (rank 0) has taken the b: the
  // merge path never reaches "abc"; ignore_merges takes it directly.
  const auto merges = std::vector<std::pair<std::string, std::string>>{{"b", "c"}, {"a", "b"}, {"ab", "c"}};
  const int bc = 256, abc = 258;
  const Tokenizer merging = Tokenizer::from_file(d.file("merging.json", tiny_json(merges, false).dump()));
  const Tokenizer ignoring = Tokenizer::from_file(d.file("ignoring.json", tiny_json(merges, true).dump()));
  EXPECT_EQ(merging.encode("abc"), (Ids{'a', bc}));
  EXPECT_EQ(ignoring.encode("abc"), (Ids{abc}));
  EXPECT_EQ(ignoring.encode("abcabc"), (Ids{'a', bc, 'a', bc}));  // not a token: merged as usual
}

TEST(TokenizerTinyBpe, ModelDirectorySelection) {
  TempDir d;
  ttt::Config c;
  std::string e = error_of([&] { Tokenizer::for_model(d.path.string(), c); });
  EXPECT_NE(e.find((d.path / "tokenizer.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find((d.path / "tokenizer.model").string()), std::string::npos) << e;

  c.tokenizer = "bytes";
  EXPECT_EQ(Tokenizer::for_model(d.path.string(), c).name(), "bytes");
  c.tokenizer = "sentencepiece";
  e = error_of([&] { Tokenizer::for_model(d.path.string(), c); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("sentencepiece"), std::string::npos) << e;

  c.tokenizer.clear();
  d.file("tokenizer.json", tiny_json({{"a", "b"}}, false).dump());
  EXPECT_EQ(Tokenizer::for_model(d.path.string(), c).vocab_size(), 258);
  c.vocab_size = 257;  // the model could not embed id 257
  e = error_of([&] { Tokenizer::for_model(d.path.string(), c); });
  EXPECT_NE(e.find("vocab_size 257"), std::string::npos) << e;
}

// A tokenizer must fit the model: not more ids than vocab_size, nor fewer than half (another family's).
TEST(TokenizerTinyBpe, MismatchedVocabularyIsRefused) {
  TempDir d;
  ttt::Config c;
  d.file("tokenizer.json", tiny_json({{"a", "b"}}, false).dump());  // 258 ids
  c.vocab_size = 320;                                                // padded: fine
  EXPECT_EQ(Tokenizer::for_model(d.path.string(), c).vocab_size(), 258);
  EXPECT_EQ(ttt::tokenizer_mismatch(Tokenizer::for_model(d.path.string(), c), c), "");
  c.vocab_size = 517;  // 258 < 517 / 2: not this model's tokenizer
  std::string e = error_of([&] { Tokenizer::for_model(d.path.string(), c); });
  EXPECT_NE(e.find("258 ids"), std::string::npos) << e;
  EXPECT_NE(e.find("517"), std::string::npos) << e;
  EXPECT_NE(ttt::tokenizer_mismatch(Tokenizer::bytes(), c), "");  // 256 bytes on a model that is not byte-level
  c.tokenizer = "bytes";  // a byte-level model: the byte tokenizer fits any larger vocabulary
  EXPECT_EQ(ttt::tokenizer_mismatch(Tokenizer::bytes(), c), "");
  EXPECT_EQ(Tokenizer::for_model(d.path.string(), c).name(), "bytes");
  c.vocab_size = 255;
  EXPECT_NE(ttt::tokenizer_mismatch(Tokenizer::bytes(), c), "");
}

TEST(TokenizerTinyBpe, BadFilesNameTheFileAndTheFault) {
  TempDir d;
  auto err = [&](const std::string& name, const std::string& content) {
    const std::string p = d.file(name, content);
    const std::string e = error_of([&] { Tokenizer::from_file(p); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    return e;
  };
  EXPECT_NE(err("a.json", "{\"model\": ").find("invalid"), std::string::npos);
  auto j = tiny_json({{"a", "b"}}, false);
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(err("b.json", j.dump()).find("only BPE"), std::string::npos);
  j = tiny_json({{"a", "b"}}, false);
  j["model"]["merges"].push_back("x yz");
  EXPECT_NE(err("c.json", j.dump()).find("not in model.vocab"), std::string::npos);
  j = tiny_json({{"a", "b"}}, false);
  j["model"]["merges"].push_back("xyz");
  EXPECT_NE(err("d.json", j.dump()).find("merge 1"), std::string::npos);
  j = tiny_json({}, false);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_NE(err("e.json", j.dump()).find("not supported"), std::string::npos);
  j = tiny_json({}, false);
  j["model"]["vocab"].erase(byte_char(0x41));
  EXPECT_NE(err("f.json", j.dump()).find("0x41"), std::string::npos);
  // An id far past the number of tokens (fuzzing found one of 39,999,997 in a 300-token file:
  // 1.3 GB of id tables before this check).
  j = tiny_json({}, false);
  j["added_tokens"] = nlohmann::json::array({{{"id", 39999997}, {"content", "<|x|>"}, {"special", true}}});
  EXPECT_NE(err("j.json", j.dump()).find("ids run up to 39999997"), std::string::npos);
  EXPECT_NE(err("g.model", "YQ== 0\nYg== 1\n").find("2 ranks"), std::string::npos);
  EXPECT_NE(err("h.model", "YQ== 0\n!!! 1\n").find("h.model:2:"), std::string::npos);
  EXPECT_NE(err("i.model", "").find("empty"), std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_file(d.path.string()); }).find("directory"), std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_file((d.path / "none.json").string()); }).find("cannot open"),
            std::string::npos);
}

// --- the Llama-3 and GPT-2 fixtures ------------------------------------------

namespace {

struct Fixture {
  std::string label;
  Tokenizer tok;
};

// Loaded once for all tests below; empty when ../shared is absent.
const std::vector<Fixture>& fixtures() {
  static const std::vector<Fixture> all = [] {
    std::vector<Fixture> v;
    const fs::path dir = TTT_TOKENIZER_FIXTURES;
    if (!fs::is_directory(dir)) return v;
    for (const char* vocab : {"llama3", "gpt2"})
      for (const char* file : {"tokenizer.json", "tokenizer.model"})
        v.push_back({std::string(vocab) + "/" + file, Tokenizer::from_file((dir / vocab / file).string())});
    return v;
  }();
  return all;
}

class TokenizerVocab : public ::testing::Test {
 protected:
  void SetUp() override {
    if (fixtures().empty())
      GTEST_SKIP() << "no tokenizer fixtures at " << TTT_TOKENIZER_FIXTURES << " (a clone without ../shared)";
  }
  static const Tokenizer& get(const std::string& label) {
    for (const auto& f : fixtures())
      if (f.label == label) return f.tok;
    throw std::runtime_error("no fixture " + label);
  }
};

}  // namespace

TEST_F(TokenizerVocab, SizesAndSpecialIds) {
  for (const char* f : {"llama3/tokenizer.json", "llama3/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    EXPECT_EQ(t.vocab_size(), 128256) << f;
    EXPECT_EQ(t.bos_id(), 128000) << f;
    EXPECT_EQ(t.eos_id(), 128001) << f;
    EXPECT_EQ(t.special_id("<|eot_id|>"), 128009) << f;
    EXPECT_EQ(t.special_id("<|start_header_id|>"), 128006) << f;
    EXPECT_EQ(t.special_id("<|reserved_special_token_247|>"), 128255) << f;
    EXPECT_EQ(t.special_id("<|endoftext|>"), -1) << f;
    EXPECT_EQ(t.name().rfind("llama3 ", 0), 0u) << t.name();
  }
  for (const char* f : {"gpt2/tokenizer.json", "gpt2/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    EXPECT_EQ(t.vocab_size(), 50257) << f;
    EXPECT_EQ(t.bos_id(), 50256) << f;
    EXPECT_EQ(t.eos_id(), 50256) << f;
    EXPECT_EQ(t.name().rfind("gpt2 ", 0), 0u) << t.name();
  }
  // Both formats of a vocabulary carry the same specials, with the same text.
  for (int id = 128000; id < 128256; ++id)
    ASSERT_EQ(get("llama3/tokenizer.json").decode({id}), get("llama3/tokenizer.model").decode({id})) << id;
}

// Ids checked by hand against HF tokenizers 0.23 and tiktoken 0.14.
TEST_F(TokenizerVocab, HandCheckedEncodings) {
  for (const char* f : {"llama3/tokenizer.json", "llama3/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    EXPECT_EQ(t.encode("Hello world"), (Ids{9906, 1917})) << f;
    EXPECT_EQ(t.encode("    x = 12345678;\r\n"), (Ids{262, 865, 284, 220, 4513, 10961, 2495, 464})) << f;
    EXPECT_EQ(t.encode("你好，世界"), (Ids{57668, 53901, 3922, 102616})) << f;
    EXPECT_EQ(t.encode("👍🏽"), (Ids{9468, 239, 235, 9468, 237, 121})) << f;
    EXPECT_EQ(t.encode("it's IT'S"), (Ids{275, 596, 8871, 13575})) << f;  // case-insensitive contractions
    EXPECT_EQ(t.encode("\xff"), (Ids{187})) << f;                         // a lone invalid byte: its byte token
    // U+180E is not White_Space (PCRE2's own \s would take it): " \u180e" is one piece
    EXPECT_EQ(t.encode("a \u180e" "b"), (Ids{64, 87189, 254, 236, 65})) << f;
  }
  for (const char* f : {"gpt2/tokenizer.json", "gpt2/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    EXPECT_EQ(t.encode("Hello world"), (Ids{15496, 995})) << f;
    EXPECT_EQ(t.encode("    x = 12345678;\r\n"), (Ids{220, 220, 220, 2124, 796, 17031, 2231, 30924, 26, 201, 198})) << f;
    EXPECT_EQ(t.encode("it's IT'S"), (Ids{270, 338, 7283, 6, 50})) << f;  // case-sensitive
    EXPECT_EQ(t.encode(""), Ids{}) << f;
  }
}

TEST_F(TokenizerVocab, SpecialTokensAreTextUnlessParsed) {
  for (const char* f : {"llama3/tokenizer.json", "llama3/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    const std::string s = "<|begin_of_text|>Hi<|eot_id|>";
    EXPECT_EQ(t.encode(s), (Ids{27, 91, 7413, 3659, 4424, 91, 29, 13347, 27, 91, 68, 354, 851, 91, 29})) << f;
    EXPECT_EQ(t.encode(s, true), (Ids{128000, 13347, 128009})) << f;
    EXPECT_EQ(t.encode("<|end", true), (Ids{27, 91, 408})) << f;  // a partial special is text
    EXPECT_EQ(t.decode(t.encode(s, true)), s) << f;
  }
  for (const char* f : {"gpt2/tokenizer.json", "gpt2/tokenizer.model"}) {
    const Tokenizer& t = get(f);
    EXPECT_EQ(t.encode(" <|endoftext|>"), (Ids{1279, 91, 437, 1659, 5239, 91, 29})) << f;
    EXPECT_EQ(t.encode(" <|endoftext|>", true), (Ids{220, 50256})) << f;
    EXPECT_EQ(t.encode("<|endoftext|><|endoftext|>", true), (Ids{50256, 50256})) << f;
  }
}

TEST_F(TokenizerVocab, DecodeRejectsOutOfRangeIds) {
  const Tokenizer& t = get("llama3/tokenizer.json");
  std::string e = error_of([&] { t.decode({9906, 128256}); });
  EXPECT_NE(e.find("128256"), std::string::npos) << e;
  EXPECT_NE(e.find("0..128255"), std::string::npos) << e;
  e = error_of([&] { t.decode({-1}); });
  EXPECT_NE(e.find("-1"), std::string::npos) << e;
}

TEST_F(TokenizerVocab, RandomBytesRoundTrip) {
  for (const auto& f : fixtures()) {
    std::mt19937 rng(20240315);
    for (int mode = 0; mode < 3; ++mode)
      for (size_t n : kLengths) {
        const std::string s = random_text(rng, n, mode);
        for (bool parse : {false, true}) {
          const Ids ids = f.tok.encode(s, parse);
          ASSERT_EQ(f.tok.decode(ids), s) << f.label << " mode " << mode << " length " << n << " parse " << parse;
          for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < f.tok.vocab_size()) << f.label;
        }
      }
  }
}

TEST_F(TokenizerVocab, LongRunsRoundTrip) {
  for (const auto& f : fixtures()) {
    for (const std::string& s : {std::string(50000, '\n'), std::string(60000, '7'), std::string(70000, 'a')}) {
      const Ids ids = f.tok.encode(s);
      ASSERT_EQ(f.tok.decode(ids), s) << f.label << " run of " << s.size();
      ASSERT_LE(ids.size(), s.size() / 2) << f.label << ": merges should shorten a run of " << s.size();
    }
    // This GPT-2 vocabulary has no token for two spaces, so no shortening here;
    // and 30000 invalid bytes are one BPE piece.
    for (const std::string& s : {std::string(100000, ' '), std::string(30000, '\xff')})
      ASSERT_EQ(f.tok.decode(f.tok.encode(s)), s) << f.label << " run of " << s.size();
  }
}

TEST_F(TokenizerVocab, ConcurrentEncodeAgrees) {
  const Tokenizer& t = get("gpt2/tokenizer.json");  // no ignore_merges: every word goes through the cache
  std::mt19937 rng(11);
  const std::string text = random_text(rng, 200000, 2);
  const Ids want = t.encode(text);
  std::vector<Ids> got(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back([&, i] { got[i] = t.encode(text); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(got[0], want);
  EXPECT_EQ(got[1], want);
}
