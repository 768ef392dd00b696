// Mode names, the --compare list and each mode's engine options.
#include "lib/eval/modes.hpp"

#include "lib/eval/corpus.hpp"
#include "ttt/error.hpp"
#include "ttt/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>

namespace ttt {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::ttt: return "ttt";
    case Mode::swa: return "swa";
    case Mode::full: return "full";
  }
  return "?";
}

const char* mode_label(Mode m) {
  switch (m) {
    case Mode::ttt: return "TTT";
    case Mode::swa: return "no TTT";
    case Mode::full: return "full attention";
  }
  return "?";
}

std::vector<Mode> parse_modes(const std::string& list, const std::string& flag) {
  std::vector<bool> on(3, false);
  size_t at = 0;
  while (true) {
    const size_t comma = list.find(',', at);
    const std::string word = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (word == "ttt") on[0] = true;
    else if (word == "swa") on[1] = true;
    else if (word == "full") on[2] = true;
    else
      throw Error(fmt::format("{}: '{}' is not a mode; give a comma-separated list of ttt, swa and full", flag, word));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  std::vector<Mode> modes;
  for (Mode m : {Mode::ttt, Mode::swa, Mode::full})
    if (on[size_t(m)]) modes.push_back(m);
  return modes;
}

std::string modes_text(const std::vector<Mode>& modes) {
  std::string s;
  for (Mode m : modes) s += (s.empty() ? "" : ",") + std::string(mode_name(m));
  return s;
}

EngineOptions mode_engine_options(Mode m, EngineOptions run, const Corpus& corpus, const Config& cfg) {
  if (m == Mode::ttt) return run;
  run.ttt = false;
  if (m == Mode::full) {
    const size_t longest = longest_document(corpus.docs);
    if (longest > size_t(INT32_MAX / 2)) throw Error("full attention: a document is too long");
    run.window = std::max(int(longest), cfg.sliding_window_size);
  }
  return run;
}

}  // namespace ttt
