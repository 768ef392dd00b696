// config.json of a TTT-E2E model directory (format version 1): the
// hyper-parameters, their validation, and the official presets.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace ttt {

struct Config {
  int vocab_size = 0;         // V
  int hidden_size = 0;        // D
  int num_hidden_layers = 0;  // L
  int num_attention_heads = 0;  // H; head_dim E = D / H
  int intermediate_size = 0;  // I (both MLPs)
  float rms_norm_eps = 1e-6f;
  float rope_theta = 500000.f;
  bool tie_word_embeddings = true;
  bool qk_norm = true;
  bool pre_norm = true;
  bool post_norm = true;
  int sliding_window_size = 0;  // W: keys a query sees, itself included
  int mini_batch_size = 0;      // B: tokens per test-time SGD step
  int suffix_len = 0;           // last suffix_len blocks carry the prime MLP
  bool prime = false;
  float inner_lr = 1.f;
  float inner_clip_gradient = 1.f;
  int bos_token_id = -1;
  int eos_token_id = -1;
  std::string tokenizer;  // optional: "bytes" selects the built-in byte tokenizer

  int head_dim() const { return hidden_size / num_attention_heads; }
  // First block index that carries a prime MLP (== L when none does).
  int first_prime_block() const { return prime ? num_hidden_layers - suffix_len : num_hidden_layers; }
  bool has_prime(int block) const { return prime && block >= first_prime_block(); }
  int num_prime_blocks() const { return prime ? suffix_len : 0; }
  // Whether a mini-batch of n tokens takes a test-time step: training on, a
  // prime MLP to train and a full mini-batch (a document's partial last one
  // only scores). The engine and the reference both ask this.
  bool takes_update(int n, bool ttt) const { return ttt && num_prime_blocks() > 0 && n == mini_batch_size; }

  // Throws ttt::Error naming `origin` and the key for any missing key,
  // wrong type or impossible value.
  static Config from_json(const nlohmann::json& j, const std::string& origin);
  static Config load(const std::string& path);
  nlohmann::json to_json() const;
  void validate(const std::string& origin) const;
};

// Presets of ttt-make-model: the official configs (configs/model/*.yaml plus the
// e2e experiment overrides), a small "tiny" one for demos and tests, and
// "tiny-bytes" (D 128, W = B = 64) to train from scratch with ttt-train.
const std::vector<std::string>& preset_names();
Config preset(const std::string& name);  // throws Error listing the names on a miss

}  // namespace ttt
