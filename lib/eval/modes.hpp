// The modes a corpus run scores documents in (ttt-perplexity --compare): the
// model with test-time training (ttt), the same sliding-window Transformer
// without it (swa), and full attention over each whole document without it
// (full), the three models of the paper's Fig. 6. Each mode's engine options
// are derived here, in one place, from the run's own.
#pragma once

#include "ttt/engine.hpp"

#include <string>
#include <vector>

namespace ttt {

struct Config;
struct Corpus;

enum class Mode { ttt, swa, full };

const char* mode_name(Mode m);   // "ttt", "swa", "full"
const char* mode_label(Mode m);  // for people: "TTT", "no TTT", "full attention"

// "ttt,swa,full" or any subset, in any order: the modes in canonical order
// (ttt, swa, full), each once. Errors name `flag` and the word at fault.
std::vector<Mode> parse_modes(const std::string& list, const std::string& flag = "--compare");
// "ttt,swa": the names joined by commas, in the given order.
std::string modes_text(const std::vector<Mode>& modes);

// The engine options of mode m, from the run's (its inner_lr, tiles, matvec):
// ttt keeps them, swa turns test-time training off, full turns it off and
// widens the window to the longest document of the corpus (never below W).
EngineOptions mode_engine_options(Mode m, EngineOptions run, const Corpus& corpus, const Config& cfg);

// The modes that share one engine: ttt and swa run on the sliding-window
// engine (swa as a session without test-time training), full on its own.
inline bool own_engine(Mode m) { return m == Mode::full; }

}  // namespace ttt
