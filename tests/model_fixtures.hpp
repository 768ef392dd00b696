// Model-level fixtures shared by the test files: the tiny and small configs,
// deterministic token sequences, golden-case names for parameterised tests,
// and the relative L2 distance used to compare weight tensors.
#pragma once

#include "ttt/model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace ttt::test {

// 3 blocks, 2 of them with a prime MLP, W 6 > B 5: every path of the engine at toy size.
inline Config tiny_config() {
  Config c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.intermediate_size = 12;
  c.sliding_window_size = 6;
  c.mini_batch_size = 5;
  c.suffix_len = 2;
  c.prime = true;
  c.inner_lr = 0.3f;
  c.inner_clip_gradient = 0.5f;
  c.bos_token_id = 2;
  return c;
}

// A little larger (V 61, D 32, I 40, W 12, B 8): the base of the model variants.
inline Config small_config() {
  Config c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.intermediate_size = 40;
  c.sliding_window_size = 12;
  c.mini_batch_size = 8;
  c.suffix_len = 2;
  c.prime = true;
  c.inner_lr = 0.5f;
  c.inner_clip_gradient = 0.05f;
  return c;
}

// Tokens (i * mul + add) % vocab: deterministic, every id in use.
inline std::vector<int32_t> pattern_tokens(size_t n, int vocab, size_t mul = 7, size_t add = 3) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = int32_t((i * mul + add) % size_t(vocab));
  return t;
}

// "partial-chunk" -> "partial_chunk": gtest names allow no '-'.
inline std::string golden_case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (auto& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

template <typename A, typename B>
double rel_l2(const std::vector<A>& got, const B* want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (double(got[i]) - double(want[i])) * (double(got[i]) - double(want[i]));
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / den);
}

}  // namespace ttt::test
