// Loading, saving and random initialisation of Model.
#include "ttt/model.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

namespace ttt {
namespace fs = std::filesystem;

namespace {

// Every tensor of the model with a pointer to its storage and expected shape;
// loading, saving and initialisation all walk this one list.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float>* data;
  bool is_norm;
};

// Slots hand out pointers into the model; callers holding a const Model only read through them.
std::vector<Slot> slots(const Model& m) {
  const Config& c = m.config;
  const int64_t V = c.vocab_size, D = c.hidden_size, E = c.head_dim(), I = c.intermediate_size;
  auto* mm = const_cast<Model*>(&m);
  std::vector<Slot> s;
  s.push_back({"wte", {V, D}, &mm->wte, false});
  s.push_back({"ln_f", {D}, &mm->ln_f, true});
  if (!c.tie_word_embeddings) s.push_back({"lm_head", {D, V}, &mm->lm_head, false});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    BlockWeights& b = mm->blocks[size_t(i)];
    const std::string p = fmt::format("blocks.{}.", i);
    for (auto [n, v] : {std::pair{"seq_norm", &b.seq_norm}, {"seq_post_norm", &b.seq_post_norm},
                        {"ffn_norm", &b.ffn_norm}, {"ffn_post_norm", &b.ffn_post_norm}})
      s.push_back({p + n, {D}, v, true});
    for (auto [n, v] : {std::pair{"attn.wq", &b.wq}, {"attn.wk", &b.wk}, {"attn.wv", &b.wv}, {"attn.wo", &b.wo}})
      s.push_back({p + n, {D, D}, v, false});
    if (c.qk_norm) {
      s.push_back({p + "attn.q_norm", {E}, &b.q_norm, true});
      s.push_back({p + "attn.k_norm", {E}, &b.k_norm, true});
    }
    auto mlp = [&](const std::string& q, MlpWeights& w) {
      s.push_back({p + q + ".w1", {D, I}, &w.w1, false});
      s.push_back({p + q + ".w3", {D, I}, &w.w3, false});
      s.push_back({p + q + ".w2", {I, D}, &w.w2, false});
    };
    mlp("mlp", b.mlp);
    if (b.has_prime) {
      s.push_back({p + "prime_norm", {D}, &b.prime_norm, true});
      s.push_back({p + "prime_post_norm", {D}, &b.prime_post_norm, true});
      mlp("prime", b.prime);
    }
  }
  return s;
}

void init_blocks(Model& m) {
  m.blocks.assign(size_t(m.config.num_hidden_layers), BlockWeights{});
  for (int i = 0; i < m.config.num_hidden_layers; ++i) m.blocks[size_t(i)].has_prime = m.config.has_prime(i);
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

Model Model::load(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error(fmt::format("{}: not a model directory", dir));
  Model m;
  m.config = Config::load((fs::path(dir) / "config.json").string());
  init_blocks(m);
  const std::string st_path = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(st_path)) throw Error(fmt::format("{}: missing (every model directory holds its weights there)", st_path));
  SafeTensors st(st_path);
  std::set<std::string> used;
  for (const Slot& s : slots(m)) {
    const TensorView* t = st.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}' (expected shape {})", st_path, s.name, shape_str(s.shape)));
    if (t->shape != s.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", st_path, s.name, t->shape_str(),
                              shape_str(s.shape)));
    *s.data = SafeTensors::to_f32(*t);
    for (size_t i = 0; i < s.data->size(); ++i)
      if (!std::isfinite((*s.data)[i]))
        throw Error(fmt::format("{}: tensor '{}' holds a non-finite value ({}) at flat index {}", st_path, s.name,
                                (*s.data)[i], i));
    used.insert(s.name);
  }
  for (const auto& t : st.tensors())
    if (!used.count(t.name)) m.warnings.push_back(fmt::format("{}: ignoring extra tensor '{}'", st_path, t.name));
  return m;
}

Model Model::random(const Config& c, uint64_t seed, float init_std) {
  c.validate("config");
  Model m;
  m.config = c;
  init_blocks(m);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, init_std);
  for (const Slot& s : slots(m)) {
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    s.data->resize(size_t(n));
    for (auto& v : *s.data) v = s.is_norm ? 1.f : normal(rng);
  }
  return m;
}

void Model::save(const std::string& dir, DType dtype) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  std::vector<TensorOut> out;
  for (const Slot& s : slots(*this)) out.push_back({s.name, s.shape, s.data->data()});
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, dtype);
  const std::string cfg = (fs::path(dir) / "config.json").string();
  std::ofstream f(cfg);
  f << config.to_json().dump(2) << "\n";
  if (!f) throw Error(fmt::format("{}: write failed", cfg));
}

std::vector<TensorOut> Model::prime_tensors() const {
  std::vector<TensorOut> out;
  for (const Slot& s : slots(*this))
    if (s.name.find(".prime.") != std::string::npos) out.push_back({s.name, s.shape, s.data->data()});
  return out;
}

size_t Model::num_parameters() const {
  size_t n = 0;
  for (const Slot& s : slots(*this)) n += s.data->size();
  return n;
}

void load_prime_weights(Model& m, const std::string& path) {
  SafeTensors st(path);
  for (const Slot& s : slots(m)) {
    if (s.name.find(".prime.") == std::string::npos) continue;
    const TensorView* t = st.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}'", path, s.name));
    if (t->shape != s.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", path, s.name, t->shape_str(),
                              shape_str(s.shape)));
    *s.data = SafeTensors::to_f32(*t);
  }
}

}  // namespace ttt
