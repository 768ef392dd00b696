// Generation on the host, no OpenCL: choosing the next token from logits
// (greedy, or temperature / top-k / top-p sampling with a repeat penalty and a
// seed), and the text stream that prints decoded tokens without ever splitting
// a UTF-8 character or showing the start of a stop string.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ttt {

struct SamplingOptions {
  float temperature = 0.f;     // 0: greedy (argmax; ties go to the lowest id)
  int top_k = 0;               // keep the k most likely ids (0: all)
  float top_p = 1.f;           // keep the smallest set of most likely ids whose probability reaches p
  float repeat_penalty = 1.f;  // > 1 discourages ids among the last repeat_last_n (CTRL / llama.cpp rule)
  int repeat_last_n = 64;
  uint64_t seed = 0;           // same seed, same logits: same choices
  // The ids the caller can use: [0, vocab) (0: every id of the logits) and eos
  // (-1: none). A model's vocabulary may be wider than its tokenizer's (300
  // ids over 256 bytes): an id the tokenizer cannot decode is never chosen.
  int vocab = 0;
  int32_t eos = -1;

  // Throws ttt::Error naming the first option out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(SamplingOptions o = {});
  // The next id given the logits over the vocabulary and the document so far
  // (for the repeat penalty). Deterministic for a given seed and call sequence.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  const SamplingOptions& options() const { return o_; }

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> ids_;
};

// Decoded bytes in, printable text out. push() returns what may be written
// now: everything except an incomplete UTF-8 sequence at the end (it waits for
// the next token's bytes) and a tail that could be the start of a stop string.
// Once a stop string appears, push() returns the text before it and stopped()
// turns true; nothing after it is ever returned.
class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stops = {});
  std::string push(std::string_view bytes);
  // What is still held back at the end of generation: an incomplete UTF-8
  // sequence comes out as its raw bytes, or (keep_incomplete false, as on an
  // interrupt, where the character was cut short by the user) is dropped.
  std::string finish(bool keep_incomplete = true);
  bool stopped() const { return stopped_; }
  // Everything returned so far (push and finish), i.e. the generated text.
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  std::string held_, text_;
  bool stopped_ = false;
};

// Bytes at the end of s that start a UTF-8 sequence s does not complete (0..3).
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace ttt
