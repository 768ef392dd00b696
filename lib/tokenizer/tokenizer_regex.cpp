// The pre-tokenisation regex on PCRE2: the rewrite that makes PCRE2's \s mean
// what it means to the reference engines, compilation (JIT when the platform
// has it) and the split into pieces.
#include "lib/tokenizer/tokenizer_internal.hpp"

#include "ttt/error.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

namespace ttt::tok {

// Meta's pattern, also in the Split pre-tokenizer of the llama3 tokenizer.json.
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern as HF writes it (tiktoken's '(?:[sdmt]|ll|ve|re) is the same).
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// Unicode White_Space, which is what \s means to Oniguruma (HF) and to Rust's
// regex (tiktoken). PCRE2's \s (with UCP) also takes U+180E MONGOLIAN VOWEL
// SEPARATOR, which stopped being a space in Unicode 6.3, so "!\u180e" would
// split differently; we spell the class out instead.
constexpr const char* kWhiteSpace =
    R"(\t-\r\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// Replaces \s and \S by explicit White_Space classes, leaving everything else
// (other escapes, \Q...\E literals, POSIX [:classes:]) as written.
std::string rewrite_spaces(const std::string& p, const std::string& origin) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 'Q') {  // literal text up to \E
        const size_t end = p.find("\\E", i + 2);
        const size_t stop = end == std::string::npos ? p.size() : end + 2;
        out.append(p, i, stop - i);
        i = stop - 1;
      } else if (n == 's') {
        out += in_class ? std::string(kWhiteSpace) : fmt::format("[{}]", kWhiteSpace);
        ++i;
      } else if (n == 'S') {
        if (in_class)
          throw Error(fmt::format("{}: pre-tokenizer regex: \\S inside a character class is not supported: {}", origin, p));
        out += fmt::format("[^{}]", kWhiteSpace);
        ++i;
      } else {
        out += c;
        out += n;
        ++i;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      const size_t end = p.find(":]", i + 2);
      const size_t stop = end == std::string::npos ? p.size() : end + 2;
      out.append(p, i, stop - i);
      i = stop - 1;
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(buf);
}

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) throw Error("pre-tokenizer: out of memory creating PCRE2 match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
};

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& origin) : pattern_(pattern), origin_(origin) {
  const std::string rewritten = rewrite_spaces(pattern, origin);
  int err = 0;
  PCRE2_SIZE at = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(), PCRE2_UTF | PCRE2_UCP, &err,
                        &at, nullptr);
  if (!code_)
    throw Error(fmt::format("{}: pre-tokenizer regex does not compile: {} at offset {} of {}", origin,
                            pcre2_message(err), at, rewritten));
  // Without JIT (some platforms) pcre2_match interprets; same results, slower.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() { pcre2_code_free(code_); }

size_t Regex::split(std::string_view text, size_t from, size_t max, std::vector<std::string_view>& pieces) const {
  MatchData m(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t off = from, gap = from;  // gap: start of text not yet covered by a piece
  size_t count = 0;
  while (off < n) {
    // The whole text is the subject (a lookahead may look past a stopping
    // point). The caller validated the UTF-8; letting PCRE2 re-check the
    // subject on every call would make the split quadratic.
    int rc = pcre2_match(code_, subject, n, off, PCRE2_NO_UTF_CHECK, m.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its frames on the heap
      rc = pcre2_match(code_, subject, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      throw Error(fmt::format("{}: pre-tokenizer regex failed at byte {} of a {}-byte text: {}", origin_, off, n,
                              pcre2_message(rc)));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t s = ov[0], e = ov[1];
    if (e > s) {
      if (s > gap) pieces.push_back(text.substr(gap, s - gap));
      pieces.push_back(text.substr(s, e - s));
      off = gap = e;
      if (++count >= max) return e;
    } else {
      if (s >= n) break;
      off = s + utf8_len(static_cast<unsigned char>(text[s]));  // the character joins the next gap
    }
  }
  if (gap < n) pieces.push_back(text.substr(gap));
  return n;
}

}  // namespace ttt::tok
