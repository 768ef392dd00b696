// A TTT-E2E model in host memory: config plus every weight as float32, loaded
// from (and saved to) a format-v1 model directory. Linear weights are [in, out].
#pragma once

#include "ttt/config.hpp"
#include "ttt/safetensors.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

struct MlpWeights {
  std::vector<float> w1, w3;  // (D, I)
  std::vector<float> w2;      // (I, D)
};

struct BlockWeights {
  std::vector<float> seq_norm, seq_post_norm, ffn_norm, ffn_post_norm;  // (D)
  std::vector<float> wq, wk, wv, wo;                                    // (D, D)
  std::vector<float> q_norm, k_norm;                                    // (E), if qk_norm
  MlpWeights mlp;
  bool has_prime = false;
  std::vector<float> prime_norm, prime_post_norm;  // (D), suffix blocks
  MlpWeights prime;                                // suffix blocks
};

struct Model {
  Config config;
  std::vector<float> wte;      // (V, D)
  std::vector<float> ln_f;     // (D)
  std::vector<float> lm_head;  // (D, V), only if !tie_word_embeddings
  std::vector<BlockWeights> blocks;
  // The file's storage type when every tensor shares one (F16, BF16), else F32:
  // what EngineOptions::weight_dtype's automatic choice keeps on the device.
  DType dtype = DType::F32;
  std::vector<std::string> warnings;  // e.g. extra tensors ignored at load

  // Reads dir/config.json and dir/model.safetensors. Errors name the file and the key or tensor.
  static Model load(const std::string& dir);
  // Random initialisation as the official code: normal(0, init_std) linears and embedding, ones for norms.
  static Model random(const Config& c, uint64_t seed, float init_std = 0.02f);
  // Writes config.json and model.safetensors into dir (created if needed).
  void save(const std::string& dir, DType dtype = DType::F32) const;

  // The prime MLP weights of every suffix block, as named tensors ("blocks.{i}.prime.w1", ...).
  std::vector<TensorOut> prime_tensors() const;
  size_t num_parameters() const;
};

// Reads the prime tensors of a safetensors file (e.g. golden prime_after) into
// the model's prime MLPs; errors name any tensor that is missing or misshapen.
void load_prime_weights(Model& m, const std::string& path);

}  // namespace ttt
