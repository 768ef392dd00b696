// A well-formedness check for XML the project writes (the SVG report), so
// tests need no XML library: one root, balanced tags, quoted attributes, and
// no raw '<' or stray '&' in text or attribute values.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace ttt::test {

// Skips a leading <?xml ...?> declaration; no comments, CDATA or DOCTYPE.
inline ::testing::AssertionResult well_formed(const std::string& s) {
  std::vector<std::string> stack;
  size_t i = 0, roots = 0;
  auto fail = [&](const std::string& why) {
    return ::testing::AssertionFailure() << why << " at byte " << i << ": " << s.substr(i, 60);
  };
  auto entity_ok = [&](size_t at) {
    static const char* ok[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (const char* e : ok)
      if (s.compare(at, std::char_traits<char>::length(e), e) == 0) return true;
    return false;
  };
  if (s.rfind("<?xml", 0) == 0) i = s.find("?>") + 2;
  while (i < s.size()) {
    if (s[i] != '<') {
      if (s[i] == '&' && !entity_ok(i)) return fail("bare &");
      if (s[i] == '>') return fail("bare >");
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i]))) return fail("text outside the root");
      ++i;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      const size_t e = s.find('>', i);
      if (e == std::string::npos) return fail("unclosed end tag");
      const std::string name = s.substr(i + 2, e - i - 2);
      if (stack.empty() || stack.back() != name) return fail("end tag </" + name + "> does not match");
      stack.pop_back();
      i = e + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == ':')) ++j;
    const std::string name = s.substr(i + 1, j - i - 1);
    if (name.empty()) return fail("bad tag");
    // attributes: name="value"
    while (true) {
      while (j < s.size() && s[j] == ' ') ++j;
      if (j >= s.size()) return fail("unterminated tag");
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      const size_t eq = s.find('=', j);
      if (eq == std::string::npos || s[eq + 1] != '"') return fail("unquoted attribute");
      const size_t close = s.find('"', eq + 2);
      if (close == std::string::npos) return fail("unterminated attribute");
      for (size_t k = eq + 2; k < close; ++k) {
        if (s[k] == '<') return fail("< in attribute");
        if (s[k] == '&' && !entity_ok(k)) return fail("bare & in attribute");
      }
      j = close + 1;
    }
    if (stack.empty()) {
      if (++roots > 1) return fail("second root");
    }
    if (s[j] == '>') stack.push_back(name), i = j + 1;
    else i = j + 2;
  }
  if (!stack.empty()) return ::testing::AssertionFailure() << "unclosed <" << stack.back() << ">";
  if (roots != 1) return ::testing::AssertionFailure() << "no root element";
  return ::testing::AssertionSuccess();
}

}  // namespace ttt::test
