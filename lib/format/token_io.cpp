// Token-id files: text ids with line/column diagnostics, and a strict .npy
// parser (little- or big-endian integer dtypes, 1-D or a single row/column).
#include "ttt/token_io.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string_view>
#include <sstream>

namespace ttt {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open token file: {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// At most `max` bytes of s for a message: printable ASCII as it is, anything
// else (a binary file's bytes, control characters, line breaks) as \xNN, so
// an error never writes raw bytes to a terminal.
std::string excerpt(std::string_view s, size_t max = 40) {
  std::string out;
  for (size_t i = 0; i < std::min(s.size(), max); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') out += char(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace

std::vector<int32_t> read_token_text(const std::string& text, const std::string& origin) {
  std::vector<int32_t> ids;
  size_t i = 0, line = 1, line_start = 0;
  while (i < text.size()) {
    const unsigned char ch = static_cast<unsigned char>(text[i]);
    if (std::isspace(ch)) {
      if (ch == '\n') {
        ++line;
        line_start = i + 1;
      }
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    const std::string word = text.substr(i, j - i);
    const bool neg = word[0] == '-';
    const std::string digits = neg ? word.substr(1) : word;
    const bool numeric = !digits.empty() && digits.size() <= 11 &&
                         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!numeric)
      throw Error(fmt::format("{}:{}:{}: '{}' is not a decimal token id (expected whitespace-separated integers)",
                              origin, line, i - line_start + 1, excerpt(word)));
    const long long v = std::stoll(word);
    if (v < INT32_MIN || v > INT32_MAX)
      throw Error(fmt::format("{}:{}:{}: token id {} is out of range", origin, line, i - line_start + 1, word));
    ids.push_back(int32_t(v));  // negative ids are reported against the vocabulary by the caller
    i = j;
  }
  if (ids.empty()) throw Error(fmt::format("{}: holds no token ids", origin));
  return ids;
}

namespace {

// The value of `key` in a .npy header, a Python dict literal such as
// {'descr': '<i4', 'fortran_order': False, 'shape': (3,), }: a quoted string
// (without its quotes), a parenthesised tuple (without its parentheses) or a
// bare word. A plain scanner, linear in the header: std::regex's recursive
// matcher overflowed the stack on a long header.
std::optional<std::string_view> npy_value(std::string_view h, std::string_view key) {
  const std::string quoted = "'" + std::string(key) + "'";
  const size_t k = h.find(quoted);
  if (k == std::string_view::npos) return std::nullopt;
  size_t i = h.find_first_not_of(" \t", k + quoted.size());
  if (i == std::string_view::npos || h[i] != ':') return std::nullopt;
  i = h.find_first_not_of(" \t", i + 1);
  if (i == std::string_view::npos) return std::nullopt;
  const char open = h[i];
  const char close = open == '\'' ? '\'' : open == '(' ? ')' : '\0';
  if (close) {
    const size_t e = h.find(close, i + 1);
    if (e == std::string_view::npos) return std::nullopt;
    return h.substr(i + 1, e - i - 1);
  }
  const size_t e = h.find_first_of(",}", i);
  if (e == std::string_view::npos) return std::nullopt;
  const std::string_view word = h.substr(i, e - i);
  return word.substr(0, word.find_last_not_of(" \t") + 1);
}

}  // namespace

std::vector<int32_t> read_token_npy(const std::string& b, const std::string& origin) {
  auto bad = [&](const std::string& why) { return Error(fmt::format("{}: not a readable .npy token array: {}", origin, why)); };
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw bad("missing the \\x93NUMPY magic");
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = size_t(static_cast<unsigned char>(b[8])) | size_t(static_cast<unsigned char>(b[9])) << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw bad("truncated header");
    hlen = 0;
    for (int k = 3; k >= 0; --k) hlen = hlen << 8 | static_cast<unsigned char>(b[size_t(8 + k)]);
    hstart = 12;
  } else {
    throw bad(fmt::format("unsupported format version {}", major));
  }
  if (hlen > b.size() - hstart) throw bad("header runs past the end of the file");
  const std::string_view h(b.data() + hstart, hlen);
  const auto descr = npy_value(h, "descr");
  if (!descr || descr->size() != 3 || std::string_view("<>|=").find((*descr)[0]) == std::string_view::npos ||
      ((*descr)[1] != 'i' && (*descr)[1] != 'u') || (*descr)[2] < '0' || (*descr)[2] > '9')
    throw bad(descr ? fmt::format("dtype '{}' is not an integer type (int32, uint32, int64 or uint16)", excerpt(*descr))
                    : fmt::format("no dtype ('descr') in the header {}",
                                  excerpt(h.substr(0, h.find_last_not_of(" \n") + 1), 120)));
  const char order = (*descr)[0], kind = (*descr)[1];
  const int size = (*descr)[2] - '0';
  const bool ok_type = (kind == 'i' && (size == 4 || size == 8)) || (kind == 'u' && (size == 2 || size == 4));
  if (!ok_type)
    throw bad(fmt::format("dtype {}{} is not supported (int32, uint32, int64 or uint16)", kind, size));
  const auto shape = npy_value(h, "shape");
  if (!shape) throw bad("no shape in header");
  // Dimensions: decimal integers separated by commas, a trailing comma allowed.
  std::vector<long long> dims;
  for (size_t i = 0; i < shape->size();) {
    const size_t e = std::min(shape->find(',', i), shape->size());
    std::string_view d = shape->substr(i, e - i);
    const size_t first = d.find_first_not_of(" \t\r\n");
    d = first == std::string_view::npos ? std::string_view() : d.substr(first, d.find_last_not_of(" \t\r\n") - first + 1);
    if (d.empty() && e == shape->size() && !dims.empty()) break;  // (3,)
    if (d.empty() || d.size() > 18 || !std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad(fmt::format("shape ({}) is not a tuple of non-negative integers", shape->substr(0, 100)));
    dims.push_back(std::stoll(std::string(d)));
    i = e + 1;
  }
  const auto fortran = npy_value(h, "fortran_order");
  if (fortran && *fortran == "True" && dims.size() > 1)
    throw bad("fortran_order arrays of more than one dimension are not supported");
  long long n = 1;
  int big = 0;
  for (auto d : dims) big += d > 1;
  if (big > 1) throw bad(fmt::format("shape ({}) has more than one dimension above 1", shape->substr(0, 100)));
  for (auto d : dims) n *= d;  // at most one factor above 1, itself below 10^18: no overflow
  const size_t data = hstart + hlen;
  if (size_t(n) > (b.size() - data) / size_t(size))
    throw bad(fmt::format("{} elements of {} bytes need {} bytes of data, the file has {}", n, size,
                          (unsigned long long)n * size, b.size() - data));
  if (n == 0) throw Error(fmt::format("{}: holds no token ids", origin));
  const bool swap = order == '>';
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (long long i = 0; i < n; ++i) {
    unsigned char bytes[8];
    std::memcpy(bytes, b.data() + data + size_t(i) * size, size_t(size));
    uint64_t u = 0;
    for (int k = 0; k < size; ++k) u |= uint64_t(bytes[swap ? size - 1 - k : k]) << (8 * k);
    long long v;
    if (kind == 'u') v = (long long)u;
    else if (size == 4) v = int32_t(uint32_t(u));
    else v = (long long)u;  // int64: two's complement
    if (v < INT32_MIN || v > INT32_MAX)
      throw Error(fmt::format("{}: element {} = {} does not fit a token id", origin, i, v));
    ids[size_t(i)] = int32_t(v);
  }
  return ids;
}

std::vector<int32_t> read_token_file(const std::string& path) {
  const std::string bytes = slurp(path);
  if (bytes.compare(0, 6, "\x93NUMPY") == 0) return read_token_npy(bytes, path);
  return read_token_text(bytes, path);
}

}  // namespace ttt
