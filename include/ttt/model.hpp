// A TTT-E2E model: config plus every weight as float32, loaded from (and saved
// to) a format-v1 model directory. Linear weights are [in, out]. The weights
// are held in host memory, or (Weights::deferred) read from their source a
// tensor at a time when an Engine uploads them, so that a run that only needs
// them on the device keeps no second copy on the host.
#pragma once

#include "ttt/config.hpp"
#include "ttt/safetensors.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ttt {

struct ParamSpec;

// Where a deferred model's tensors come from: the model file, or the random
// initialisation (regenerated from its seed).
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Tensor p's values (p.size() floats); errors name the file and the tensor.
  virtual std::vector<float> read(const ParamSpec& p) const = 0;
};

enum class Weights {
  held,      // every tensor in host memory (Model's fields)
  deferred,  // read from Model::source when needed; a field stays empty until something sets it
};

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
  // Deferred models: where the tensors whose field is empty are read from.
  std::shared_ptr<const WeightSource> source;

  // Reads dir/config.json and dir/model.safetensors. Errors name the file and the key or tensor.
  // Deferred: the header is checked now (every tensor present, with its shape), the values
  // (finite) when read; the file stays mapped, and each tensor's pages are dropped once read.
  static Model load(const std::string& dir, Weights w = Weights::held);
  // Random initialisation as the official code: normal(0, init_std) linears and embedding, ones for norms.
  // Deferred: the same values, generated again from the seed whenever they are read.
  static Model random(const Config& c, uint64_t seed, float init_std = 0.02f, Weights w = Weights::held);
  // Writes config.json and model.safetensors into dir (created if needed).
  void save(const std::string& dir, DType dtype = DType::F32) const;

  // Tensor p's values: its field when set, else read from the source into scratch.
  std::span<const float> values(const ParamSpec& p, std::vector<float>& scratch) const;
  // Reads every tensor not yet held into its field and drops the source.
  void hold_weights();

  // The prime MLP weights of every suffix block, as named tensors ("blocks.{i}.prime.w1", ...);
  // they must be held (hold_weights(), or Session::download_prime for a deferred model).
  std::vector<TensorOut> prime_tensors() const;
  size_t num_parameters() const;
};

// Reads the prime tensors of a safetensors file (e.g. golden prime_after) into
// the model's prime MLPs; errors name any tensor that is missing or misshapen.
void load_prime_weights(Model& m, const std::string& path);

}  // namespace ttt
