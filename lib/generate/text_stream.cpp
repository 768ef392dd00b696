// TextStream: holds back an incomplete UTF-8 sequence and any tail that could
// begin a stop string, so that what is printed is always whole characters
// and never shows a stop string (even one split across tokens).
#include "ttt/sampling.hpp"

#include <algorithm>

namespace ttt {

size_t incomplete_utf8_tail(std::string_view s) {
  // The last byte that is not a continuation byte (10xxxxxx), among the last four.
  for (size_t back = 1; back <= std::min<size_t>(4, s.size()); ++back) {
    const unsigned char b = static_cast<unsigned char>(s[s.size() - back]);
    if ((b & 0xC0) == 0x80) continue;
    const size_t len = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
    return back < len ? back : 0;  // a lead byte still waiting for len - back continuation bytes
  }
  return 0;  // four continuation bytes (or fewer bytes in all): nothing can complete them
}

TextStream::TextStream(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string TextStream::push(std::string_view bytes) {
  if (stopped_) return {};
  held_.append(bytes);
  size_t cut = held_.size();
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && at < cut) {
      cut = at;
      stopped_ = true;
    }
  }
  if (stopped_) {
    std::string out = held_.substr(0, cut);
    held_.clear();
    text_ += out;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > hold; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  cut = held_.size() - std::max(hold, incomplete_utf8_tail(held_));
  std::string out = held_.substr(0, cut);
  held_.erase(0, cut);
  text_ += out;
  return out;
}

std::string TextStream::finish(bool keep_incomplete) {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  if (!keep_incomplete) out.resize(out.size() - incomplete_utf8_tail(out));
  text_ += out;
  return out;
}

}  // namespace ttt
