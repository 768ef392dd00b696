// Parsing, validation and serialisation of config.json, and the presets.
#include "ttt/config.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace ttt {
namespace {

using json = nlohmann::json;

const json& require(const json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end()) throw Error(fmt::format("{}: missing key '{}'", origin, key));
  return *it;
}

int get_int(const json& j, const char* key, const std::string& origin) {
  const json& v = require(j, key, origin);
  if (!v.is_number_integer()) throw Error(fmt::format("{}: key '{}' must be an integer, got {}", origin, key, v.dump()));
  const auto x = v.get<long long>();
  if (x < -(1ll << 31) || x >= (1ll << 31)) throw Error(fmt::format("{}: key '{}' = {} is out of range", origin, key, x));
  return int(x);
}

float get_float(const json& j, const char* key, const std::string& origin) {
  const json& v = require(j, key, origin);
  if (!v.is_number()) throw Error(fmt::format("{}: key '{}' must be a number, got {}", origin, key, v.dump()));
  return v.get<float>();
}

bool get_bool(const json& j, const char* key, const std::string& origin) {
  const json& v = require(j, key, origin);
  if (!v.is_boolean()) throw Error(fmt::format("{}: key '{}' must be true or false, got {}", origin, key, v.dump()));
  return v.get<bool>();
}

}  // namespace

Config Config::from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", origin));
  const json& fmt_key = require(j, "format", origin);
  if (!fmt_key.is_string() || fmt_key.get<std::string>() != "ttt-e2e")
    throw Error(fmt::format("{}: key 'format' must be \"ttt-e2e\", got {}", origin, fmt_key.dump()));
  const int version = get_int(j, "format_version", origin);
  if (version != 1)
    throw Error(fmt::format("{}: key 'format_version' = {} is not supported (this build reads version 1)", origin,
                            version));
  Config c;
  c.vocab_size = get_int(j, "vocab_size", origin);
  c.hidden_size = get_int(j, "hidden_size", origin);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", origin);
  c.num_attention_heads = get_int(j, "num_attention_heads", origin);
  c.intermediate_size = get_int(j, "intermediate_size", origin);
  c.rms_norm_eps = get_float(j, "rms_norm_eps", origin);
  c.rope_theta = get_float(j, "rope_theta", origin);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", origin);
  c.qk_norm = get_bool(j, "qk_norm", origin);
  c.pre_norm = get_bool(j, "pre_norm", origin);
  c.post_norm = get_bool(j, "post_norm", origin);
  c.sliding_window_size = get_int(j, "sliding_window_size", origin);
  c.mini_batch_size = get_int(j, "mini_batch_size", origin);
  c.suffix_len = get_int(j, "suffix_len", origin);
  c.prime = get_bool(j, "prime", origin);
  c.inner_lr = get_float(j, "inner_lr", origin);
  c.inner_clip_gradient = get_float(j, "inner_clip_gradient", origin);
  c.bos_token_id = get_int(j, "bos_token_id", origin);
  c.eos_token_id = get_int(j, "eos_token_id", origin);
  if (auto it = j.find("tokenizer"); it != j.end()) {
    if (!it->is_string()) throw Error(fmt::format("{}: key 'tokenizer' must be a string, got {}", origin, it->dump()));
    c.tokenizer = it->get<std::string>();
  }
  c.validate(origin);
  return c;
}

void Config::validate(const std::string& origin) const {
  auto bad = [&](const char* key, const std::string& why) {
    throw Error(fmt::format("{}: key '{}' is impossible: {}", origin, key, why));
  };
  if (vocab_size < 1) bad("vocab_size", fmt::format("{} < 1", vocab_size));
  if (hidden_size < 1) bad("hidden_size", fmt::format("{} < 1", hidden_size));
  if (num_hidden_layers < 1) bad("num_hidden_layers", fmt::format("{} < 1", num_hidden_layers));
  if (num_attention_heads < 1) bad("num_attention_heads", fmt::format("{} < 1", num_attention_heads));
  if (hidden_size % num_attention_heads != 0)
    bad("num_attention_heads", fmt::format("hidden_size {} is not divisible by {}", hidden_size, num_attention_heads));
  if (head_dim() % 2 != 0) bad("num_attention_heads", fmt::format("head_dim {} is odd (RoPE rotates pairs)", head_dim()));
  if (head_dim() > 256) bad("num_attention_heads", fmt::format("head_dim {} exceeds 256", head_dim()));
  if (intermediate_size < 1) bad("intermediate_size", fmt::format("{} < 1", intermediate_size));
  if (!(rms_norm_eps > 0.f) || !std::isfinite(rms_norm_eps)) bad("rms_norm_eps", "must be a positive finite number");
  if (!(rope_theta > 1.f) || !std::isfinite(rope_theta)) bad("rope_theta", "must be a finite number > 1");
  if (sliding_window_size < 1) bad("sliding_window_size", fmt::format("{} < 1", sliding_window_size));
  if (mini_batch_size < 1) bad("mini_batch_size", fmt::format("{} < 1", mini_batch_size));
  if (suffix_len < 0 || suffix_len > num_hidden_layers)
    bad("suffix_len", fmt::format("{} is outside 0..num_hidden_layers ({})", suffix_len, num_hidden_layers));
  if (prime && suffix_len == 0) bad("suffix_len", "prime is true but suffix_len is 0");
  if (!std::isfinite(inner_lr) || inner_lr < 0.f) bad("inner_lr", "must be a finite number >= 0");
  if (!std::isfinite(inner_clip_gradient) || inner_clip_gradient < 0.f)
    bad("inner_clip_gradient", "must be a finite number >= 0");
  if (bos_token_id < -1 || bos_token_id >= vocab_size)
    bad("bos_token_id", fmt::format("{} is outside -1..vocab_size-1", bos_token_id));
  if (eos_token_id < -1 || eos_token_id >= vocab_size)
    bad("eos_token_id", fmt::format("{} is outside -1..vocab_size-1", eos_token_id));
}

Config Config::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(fmt::format("{}: cannot open (does the model directory hold a config.json?)", path));
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1E999
    throw Error(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
  return from_json(j, path);
}

json Config::to_json() const {
  json j = {
      {"format", "ttt-e2e"},
      {"format_version", 1},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"intermediate_size", intermediate_size},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"tie_word_embeddings", tie_word_embeddings},
      {"qk_norm", qk_norm},
      {"pre_norm", pre_norm},
      {"post_norm", post_norm},
      {"sliding_window_size", sliding_window_size},
      {"mini_batch_size", mini_batch_size},
      {"suffix_len", suffix_len},
      {"prime", prime},
      {"inner_lr", inner_lr},
      {"inner_clip_gradient", inner_clip_gradient},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
  };
  if (!tokenizer.empty()) j["tokenizer"] = tokenizer;
  return j;
}

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"tiny", "tiny-bytes", "125m", "350m", "760m", "1b", "3b"};
  return names;
}

Config preset(const std::string& name) {
  Config c;
  // Shared by every official size: Llama-3 vocabulary, RoPE base, SWA window
  // 8192, mini-batch 1024, SGD inner loop with lr 1 and clip 1.
  c.vocab_size = 128256;
  c.bos_token_id = 128000;
  c.eos_token_id = 128001;
  c.sliding_window_size = 8192;
  c.mini_batch_size = 1024;
  c.prime = true;
  auto set = [&](int L, int D, int H, int I, int suffix) {
    c.num_hidden_layers = L;
    c.hidden_size = D;
    c.num_attention_heads = H;
    c.intermediate_size = I;
    c.suffix_len = suffix;
  };
  if (name == "125m") set(12, 768, 12, 1664, 3);
  else if (name == "350m") set(24, 1024, 16, 2304, 6);
  else if (name == "760m") set(24, 1536, 16, 3328, 6);
  else if (name == "1b") set(24, 2048, 32, 4352, 6);
  else if (name == "3b") set(32, 2560, 32, 5632, 8);  // head_dim 80
  else if (name == "tiny" || name == "tiny-bytes") {
    // tiny: byte-level demo model, small enough to run a book on a CPU. tiny-bytes: twice its width,
    // to train from scratch with ttt-train (docs/training.md); W = B = 64 so that a short document
    // already spans several test-time steps.
    const bool train = name == "tiny-bytes";
    set(4, train ? 128 : 64, 4, train ? 256 : 128, 1);
    c.vocab_size = 256;
    c.bos_token_id = -1;
    c.eos_token_id = -1;
    c.sliding_window_size = train ? 64 : 256;
    c.mini_batch_size = 64;
    c.tokenizer = "bytes";
  } else {
    std::string list;
    for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
    throw Error(fmt::format("unknown preset '{}'; presets: {}", name, list));
  }
  c.validate("preset " + name);
  return c;
}

}  // namespace ttt
