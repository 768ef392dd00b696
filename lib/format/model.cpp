// Loading, saving and random initialisation of Model.
#include "ttt/model.hpp"

#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/params.hpp"

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
  std::set<DType> types;
  for (const ParamSpec& s : param_table(m.config).params) {
    const TensorView* t = st.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}' (expected shape {})", st_path, s.name, shape_str(s.shape)));
    if (t->shape != s.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", st_path, s.name, t->shape_str(),
                              shape_str(s.shape)));
    std::vector<float>& data = s.host(m);
    data = SafeTensors::to_f32(*t);
    types.insert(t->dtype);
    for (size_t i = 0; i < data.size(); ++i)
      if (!std::isfinite(data[i]))
        throw Error(fmt::format("{}: tensor '{}' holds a non-finite value ({}) at flat index {}", st_path, s.name,
                                data[i], i));
    used.insert(s.name);
  }
  if (types.size() == 1) m.dtype = *types.begin();
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
  for (const ParamSpec& s : param_table(c).params) {
    std::vector<float>& data = s.host(m);
    data.resize(size_t(s.size()));
    for (auto& v : data) v = s.role == ParamRole::Norm ? 1.f : normal(rng);
  }
  return m;
}

void Model::save(const std::string& dir, DType dtype) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  std::vector<TensorOut> out;
  auto& self = const_cast<Model&>(*this);  // host() hands out mutable storage; only read here
  for (const ParamSpec& s : param_table(config).params) out.push_back({s.name, s.shape, s.host(self).data()});
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, dtype);
  const std::string cfg = (fs::path(dir) / "config.json").string();
  write_file_atomic(cfg, config.to_json().dump(2) + "\n");
}

std::vector<TensorOut> Model::prime_tensors() const {
  std::vector<TensorOut> out;
  auto& self = const_cast<Model&>(*this);
  for (const ParamSpec& s : param_table(config).params)
    if (s.trainable) out.push_back({s.name, s.shape, s.host(self).data()});
  return out;
}

size_t Model::num_parameters() const {
  return param_table(config).num_parameters();
}

void load_prime_weights(Model& m, const std::string& path) {
  SafeTensors st(path);
  for (const ParamSpec& s : param_table(m.config).params) {
    if (!s.trainable) continue;
    const TensorView* t = st.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}'", path, s.name));
    if (t->shape != s.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", path, s.name, t->shape_str(),
                              shape_str(s.shape)));
    s.host(m) = SafeTensors::to_f32(*t);
  }
}

}  // namespace ttt
