// Single-needle retrieval in the style of RULER (S-NIAH-1..3), what ttt-niah
// and any other front end share: the needles, the prompt builder (a needle at
// a depth of a haystack of whole sentences, filling a context), the answer
// check and the heat map of accuracy against context and depth.
#pragma once

#include "lib/eval/modes.hpp"
#include "ttt/tokenizer.hpp"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ttt::niah {

// RULER's noise haystack: the same few sentences over and over.
inline constexpr const char* kFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

struct Needle {
  int id;             // 1, 2, 3 (S-NIAH-1..3)
  const char* thing;  // what the question asks for
};
// S-NIAH-1 (a pass key), 2 (a 7-digit magic number), 3 (a magic UUID).
inline constexpr Needle kNeedles[] = {{1, "pass key"}, {2, "magic number"}, {3, "magic uuid"}};

// The haystack as sentences (each with its trailing whitespace), so a needle
// goes in between two sentences, never inside one.
std::vector<std::string> sentences(const std::string& text);

// A needle's value: 5 digits (1), 7 digits (2) or a version-4 UUID (3).
std::string needle_value(int needle, std::mt19937_64& rng);

// The seed of one prompt, deterministic per (seed, needle, context, depth,
// trial): the same prompt in every mode.
uint64_t prompt_seed(uint64_t seed, int needle, int context, double depth, int trial);

struct Prompt {
  std::vector<int32_t> ids;
  std::string answer;
  int answer_tokens = 0;  // of " answer"
};

// Prompts of a tokenizer and a haystack text: BOS (when bos >= 0), a line
// saying what is hidden, the haystack with the needle at a sentence boundary,
// and the question whose greedy continuation is scored.
class PromptBuilder {
 public:
  PromptBuilder(const Tokenizer& tok, const std::string& haystack, int bos);
  bool empty() const { return hay_.empty(); }  // a haystack without a sentence that encodes to any token

  std::string needle_text(const Needle& n, const std::string& value) const;
  std::string prefix(const Needle& n) const;
  std::string question(const Needle& n) const;
  // The fixed part of a prompt (all but the haystack), in tokens.
  int overhead(const Needle& n) const;
  // At most `context` tokens (whole sentences of haystack, from a random one
  // on, wrapping around), the needle at the sentence boundary nearest to depth
  // (0: the haystack's start, 1: its end) of the haystack's length.
  Prompt make(const Needle& n, int context, double depth, std::mt19937_64& rng) const;

 private:
  const Tokenizer& tok_;
  int bos_;
  std::vector<std::vector<int32_t>> hay_;
};

// Whether a reply gives the answer: exact match, surrounding white space aside.
bool is_answer(const std::string& reply, const std::string& answer);

// One cell of the results: a mode, needle, context and depth, over its trials.
struct Cell {
  Mode mode;
  int needle, context;
  double depth;
  int trials = 0, correct = 0;
  int64_t prompt_tokens = 0;  // of its prompts together
};

// The heat map: one panel per mode, contexts across, depths down (0 at the
// top), each cell the accuracy over every needle and trial, as colour and as
// a number ("-" where nothing was scored).
std::string heat_map_svg(const std::vector<Cell>& cells, const std::vector<Mode>& modes,
                         const std::vector<int>& contexts, const std::vector<double>& depths,
                         const std::string& title);

}  // namespace ttt::niah
