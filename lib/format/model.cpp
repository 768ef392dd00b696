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
#include <map>
#include <mutex>
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

// The model file, mapped: a tensor's pages leave the resident set once it is read.
class FileSource : public WeightSource {
 public:
  explicit FileSource(const std::string& path) : st_(path) {}
  const SafeTensors& file() const { return st_; }
  std::vector<float> read(const ParamSpec& s) const override {
    const TensorView* t = st_.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}'", st_.path(), s.name));
    std::vector<float> data = SafeTensors::to_f32(*t);
    st_.release(*t);
    for (size_t i = 0; i < data.size(); ++i)
      if (!std::isfinite(data[i]))
        throw Error(fmt::format("{}: tensor '{}' holds a non-finite value ({}) at flat index {}", st_.path(), s.name,
                                data[i], i));
    return data;
  }

 private:
  SafeTensors st_;
};

// Model::random's values, generated again from the seed: one stream over the
// parameter table in order (norms take none), so reading the tensors in order
// costs one pass, and an earlier tensor restarts the stream.
class RandomSource : public WeightSource {
 public:
  RandomSource(const Config& c, uint64_t seed, float init_std)
      : table_(param_table(c)), seed_(seed), std_(init_std), rng_(seed), normal_(0.f, init_std) {
    for (size_t i = 0; i < table_.params.size(); ++i) index_[table_.params[i].name] = i;
  }
  std::vector<float> read(const ParamSpec& s) const override {
    const auto it = index_.find(s.name);
    if (it == index_.end()) throw Error(fmt::format("random initialisation: no tensor '{}'", s.name));
    std::lock_guard lock(mu_);
    if (it->second < next_) {
      rng_.seed(seed_);
      normal_ = std::normal_distribution<float>(0.f, std_);
      next_ = 0;
    }
    std::vector<float> data;
    for (; next_ <= it->second; ++next_) {
      const ParamSpec& p = table_.params[next_];
      data.resize(size_t(p.size()));
      for (auto& v : data) v = p.role == ParamRole::Norm ? 1.f : normal_(rng_);
    }
    return data;
  }

 private:
  ParamTable table_;
  std::map<std::string, size_t> index_;
  uint64_t seed_;
  float std_;
  mutable std::mutex mu_;
  mutable std::mt19937_64 rng_;
  mutable std::normal_distribution<float> normal_;
  mutable size_t next_ = 0;
};

}  // namespace

Model Model::load(const std::string& dir, Weights w) {
  if (!fs::is_directory(dir)) throw Error(fmt::format("{}: not a model directory", dir));
  Model m;
  m.config = Config::load((fs::path(dir) / "config.json").string());
  init_blocks(m);
  const std::string st_path = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(st_path)) throw Error(fmt::format("{}: missing (every model directory holds its weights there)", st_path));
  auto source = std::make_shared<FileSource>(st_path);
  const SafeTensors& st = source->file();
  std::set<std::string> used;
  std::set<DType> types;
  for (const ParamSpec& s : param_table(m.config).params) {
    const TensorView* t = st.find(s.name);
    if (!t) throw Error(fmt::format("{}: missing tensor '{}' (expected shape {})", st_path, s.name, shape_str(s.shape)));
    if (t->shape != s.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", st_path, s.name, t->shape_str(),
                              shape_str(s.shape)));
    types.insert(t->dtype);
    used.insert(s.name);
  }
  if (types.size() == 1) m.dtype = *types.begin();
  for (const auto& t : st.tensors())
    if (!used.count(t.name)) m.warnings.push_back(fmt::format("{}: ignoring extra tensor '{}'", st_path, t.name));
  m.source = std::move(source);
  if (w == Weights::held) m.hold_weights();
  return m;
}

Model Model::random(const Config& c, uint64_t seed, float init_std, Weights w) {
  c.validate("config");
  Model m;
  m.config = c;
  init_blocks(m);
  m.source = std::make_shared<RandomSource>(c, seed, init_std);
  if (w == Weights::held) m.hold_weights();
  return m;
}

std::span<const float> Model::values(const ParamSpec& p, std::vector<float>& scratch) const {
  const std::vector<float>& held = p.host(const_cast<Model&>(*this));  // host() hands out mutable storage; only read
  if (!held.empty() || !source) return held;
  scratch = source->read(p);
  return scratch;
}

void Model::hold_weights() {
  if (!source) return;
  for (const ParamSpec& s : param_table(config).params)
    if (std::vector<float>& data = s.host(*this); data.empty()) data = source->read(s);
  source.reset();
}

void Model::save(const std::string& dir, DType dtype) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  std::vector<TensorOut> out;
  std::vector<std::vector<float>> read;  // a deferred model's tensors, read for the writer (their data stays put)
  const ParamTable table = param_table(config);
  read.reserve(table.params.size());
  for (const ParamSpec& s : table.params) out.push_back({s.name, s.shape, values(s, read.emplace_back()).data()});
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, dtype);
  const std::string cfg = (fs::path(dir) / "config.json").string();
  write_file_atomic(cfg, config.to_json().dump(2) + "\n");
}

std::vector<TensorOut> Model::prime_tensors() const {
  std::vector<TensorOut> out;
  auto& self = const_cast<Model&>(*this);
  for (const ParamSpec& s : param_table(config).params) {
    if (!s.trainable) continue;
    if (s.host(self).empty())
      throw Error(fmt::format("tensor '{}' is not held in host memory (a deferred model: hold_weights() first)", s.name));
    out.push_back({s.name, s.shape, s.host(self).data()});
  }
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
