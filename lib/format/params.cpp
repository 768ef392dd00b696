// param_table(): every tensor of the model with its shape, role, storage and
// the device tensor it lands in; pack/unpack move data between the file layout
// and the fused device layout.
#include "ttt/params.hpp"

#include "ttt/error.hpp"
#include "ttt/model.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ttt {

int64_t ParamSpec::size() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

struct Builder {
  ParamTable t;

  // A device tensor made of the given file tensors, side by side.
  void device(const std::string& name, std::vector<ParamSpec> parts) {
    DeviceTensor d;
    d.name = name;
    d.rows = parts.front().shape.size() == 2 ? parts.front().shape[0] : 1;
    d.trainable = parts.front().trainable;
    for (ParamSpec& p : parts) {
      const int64_t cols = p.shape.size() == 2 ? p.shape[1] : p.shape[0];
      p.device = int(t.device.size());
      p.col = d.cols;
      d.cols += cols;
      d.parts.push_back(int(t.params.size()));
      t.params.push_back(std::move(p));
    }
    t.device.push_back(std::move(d));
  }
  // A device tensor with no file tensor behind it: ones (the identity norm).
  void ones(const std::string& name, int64_t cols) { t.device.push_back({name, 1, cols, false, {}}); }
};

ParamSpec spec(std::string name, std::vector<int64_t> shape, ParamRole role, int block, bool trainable,
               std::function<std::vector<float>&(Model&)> host) {
  // The official outer optimiser decays every parameter: ttt/optimizers.py passes no weight-decay
  // mask to optax.adamw unless emb_wd is false (only wte then skips it), and no config sets it.
  const bool decays = true;
  return {std::move(name), std::move(shape), role, block, trainable, decays, -1, 0, std::move(host)};
}

}  // namespace

ParamTable param_table(const Config& c) {
  const int64_t V = c.vocab_size, D = c.hidden_size, E = c.head_dim(), I = c.intermediate_size;
  using R = ParamRole;
  Builder b;
  b.device("wte", {spec("wte", {V, D}, R::Embedding, -1, false, [](Model& m) -> auto& { return m.wte; })});
  b.device("ln_f", {spec("ln_f", {D}, R::Norm, -1, false, [](Model& m) -> auto& { return m.ln_f; })});
  if (!c.tie_word_embeddings)
    b.device("lm_head", {spec("lm_head", {D, V}, R::Head, -1, false, [](Model& m) -> auto& { return m.lm_head; })});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    const size_t k = size_t(i);
    auto norm = [&](const char* n, std::vector<float> BlockWeights::*f) {
      b.device(p + n, {spec(p + n, {D}, R::Norm, i, false, [k, f](Model& m) -> auto& { return m.blocks[k].*f; })});
    };
    auto lin = [&](const char* n, int64_t in, int64_t out, std::vector<float> BlockWeights::*f) {
      return spec(p + n, {in, out}, R::Linear, i, false, [k, f](Model& m) -> auto& { return m.blocks[k].*f; });
    };
    auto mlp = [&](const std::string& q, MlpWeights BlockWeights::*w, bool trainable) {
      auto part = [&](const char* n, int64_t in, int64_t out, std::vector<float> MlpWeights::*f) {
        return spec(p + q + "." + n, {in, out}, R::Linear, i, trainable,
                    [k, w, f](Model& m) -> auto& { return m.blocks[k].*w.*f; });
      };
      b.device(p + q + ".w13", {part("w1", D, I, &MlpWeights::w1), part("w3", D, I, &MlpWeights::w3)});
      b.device(p + q + ".w2", {part("w2", I, D, &MlpWeights::w2)});
    };
    norm("seq_norm", &BlockWeights::seq_norm);
    norm("seq_post_norm", &BlockWeights::seq_post_norm);
    norm("ffn_norm", &BlockWeights::ffn_norm);
    norm("ffn_post_norm", &BlockWeights::ffn_post_norm);
    b.device(p + "attn.wqkv", {lin("attn.wq", D, D, &BlockWeights::wq), lin("attn.wk", D, D, &BlockWeights::wk),
                               lin("attn.wv", D, D, &BlockWeights::wv)});
    b.device(p + "attn.wo", {lin("attn.wo", D, D, &BlockWeights::wo)});
    if (c.qk_norm) {
      for (auto [n, field] : {std::pair{"attn.q_norm", &BlockWeights::q_norm}, {"attn.k_norm", &BlockWeights::k_norm}}) {
        auto f = field;  // a structured binding cannot be captured before C++20's clang 16
        b.device(p + n, {spec(p + n, {E}, R::Norm, i, false, [k, f](Model& m) -> auto& { return m.blocks[k].*f; })});
      }
    } else {
      b.ones(p + "attn.q_norm", E);
      b.ones(p + "attn.k_norm", E);
    }
    mlp("mlp", &BlockWeights::mlp, false);
    if (c.has_prime(i)) {
      norm("prime_norm", &BlockWeights::prime_norm);
      norm("prime_post_norm", &BlockWeights::prime_post_norm);
      mlp("prime", &BlockWeights::prime, true);
    }
  }
  return std::move(b.t);
}

bool ParamTable::has_device(const std::string& name) const {
  return std::any_of(device.begin(), device.end(), [&](const DeviceTensor& d) { return d.name == name; });
}

int ParamTable::device_index(const std::string& name) const {
  for (size_t i = 0; i < device.size(); ++i)
    if (device[i].name == name) return int(i);
  throw Error(fmt::format("no device tensor '{}' in the parameter table", name));
}

std::vector<float> ParamTable::pack(int di, const Model& m) const {
  const DeviceTensor& d = device[size_t(di)];
  if (d.parts.empty()) return std::vector<float>(size_t(d.size()), 1.f);
  std::vector<float> out(size_t(d.size()));
  std::vector<float> scratch;  // a deferred model's tensor, one at a time
  for (int pi : d.parts) {
    const ParamSpec& p = params[size_t(pi)];
    const std::span<const float> src = m.values(p, scratch);
    const int64_t w = p.size() / d.rows;
    if (int64_t(src.size()) != p.size())
      throw Error(fmt::format("tensor '{}' holds {} values, expected {}", p.name, src.size(), p.size()));
    for (int64_t r = 0; r < d.rows; ++r)
      std::copy_n(src.data() + r * w, w, out.data() + r * d.cols + p.col);
  }
  return out;
}

void ParamTable::unpack(int di, const std::vector<float>& data, Model& m) const {
  const DeviceTensor& d = device[size_t(di)];
  if (int64_t(data.size()) != d.size())
    throw Error(fmt::format("device tensor '{}': {} values, expected {}", d.name, data.size(), d.size()));
  for (int pi : d.parts) {
    const ParamSpec& p = params[size_t(pi)];
    std::vector<float>& dst = p.host(m);
    const int64_t w = p.size() / d.rows;
    dst.resize(size_t(p.size()));
    for (int64_t r = 0; r < d.rows; ++r)
      std::copy_n(data.data() + r * d.cols + p.col, w, dst.data() + r * w);
  }
}

std::vector<uint8_t> ParamTable::pack_stored(int di, const Model& m) const {
  const DeviceTensor& d = device[size_t(di)];
  std::vector<float> f = pack(di, m);
  std::vector<uint8_t> out(d.bytes());
  if (d.dtype == DType::F32) {
    std::copy_n(reinterpret_cast<const uint8_t*>(f.data()), out.size(), out.data());
    return out;
  }
  auto* h = reinterpret_cast<uint16_t*>(out.data());
  const bool bf = d.dtype == DType::BF16;
  const uint16_t exp_mask = bf ? 0x7f80 : 0x7c00;  // all ones: inf or NaN
  for (size_t i = 0; i < f.size(); ++i) {
    h[i] = bf ? f32_to_bf16(f[i]) : f32_to_f16(f[i]);
    if ((h[i] & exp_mask) == exp_mask) {
      // Named as the file names it: the file's tensor and its index there, not the device tensor they share.
      const int64_t r = int64_t(i) / d.cols, col = int64_t(i) % d.cols;
      std::string where = fmt::format("device tensor '{}' at flat index {}", d.name, i);
      for (int pi : d.parts) {
        const ParamSpec& ps = params[size_t(pi)];
        const int64_t w = ps.size() / d.rows;
        if (col < ps.col || col >= ps.col + w) continue;
        where = fmt::format("tensor '{}' at index {}", ps.name, r * w + col - ps.col);
        if (d.parts.size() > 1) where += fmt::format(" (stored in device tensor '{}')", d.name);
      }
      throw Error(fmt::format("{}: value {} does not fit in {} storage (largest finite {}); store the weights as {}",
                              where, f[i], bf ? "bf16" : "f16", bf ? "3.39e38" : "65504",
                              bf ? "f32" : "bf16 or f32"));
    }
  }
  return out;
}

void ParamTable::store_weights(DType t) {
  for (DeviceTensor& d : device) {
    if (d.parts.empty()) continue;
    const ParamRole r = params[size_t(d.parts.front())].role;
    d.dtype = r == ParamRole::Norm ? DType::F32 : t;
  }
}

size_t ParamTable::device_bytes() const {
  size_t n = 0;
  for (const DeviceTensor& d : device) n += d.bytes();
  return n;
}

size_t ParamTable::num_parameters() const {
  size_t n = 0;
  for (const ParamSpec& p : params) n += size_t(p.size());
  return n;
}

}  // namespace ttt
