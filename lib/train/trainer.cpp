// The outer loop (Trainer::step), run settings as JSON, and checkpoints.
#include "lib/train/trainer.hpp"

#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/params.hpp"
#include "ttt/safetensors.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

namespace ttt::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Not ref::to_string: that lives with the objective (meta.cpp), which the optimiser tests do not link.
const char* mode_name(ref::Objective o) {
  switch (o) {
    case ref::Objective::pretrain: return "pretrain";
    case ref::Objective::meta: return "meta";
    case ref::Objective::meta_fo: return "meta-fo";
  }
  return "?";
}

ref::Objective mode_from(const std::string& s, const std::string& origin) {
  for (auto o : {ref::Objective::pretrain, ref::Objective::meta, ref::Objective::meta_fo})
    if (s == mode_name(o)) return o;
  throw Error(fmt::format("{}: unknown mode '{}' (pretrain, meta, meta-fo)", origin, s));
}

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

uint64_t file_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot read", path));
  uint64_t h = fnv1a(nullptr, 0);
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), std::streamsize(buf.size()));
    h = fnv1a(buf.data(), size_t(f.gcount()), h);
  }
  return h;
}

template <typename T>
T get(const json& j, const char* key, const std::string& origin) {
  if (!j.contains(key)) throw Error(fmt::format("{}: missing key '{}'", origin, key));
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(fmt::format("{}: key '{}' has the wrong type", origin, key));
  }
}

}  // namespace

json Settings::to_json() const {
  return {{"mode", mode_name(mode)},
          {"steps", steps},
          {"batch", batch},
          {"seq_len", seq_len},
          {"seed", seed},
          {"lr", opt.lr},
          {"init_lr", opt.init_lr},
          {"end_lr", opt.end_lr},
          {"warmup", opt.warmup},
          {"decay_steps", opt.decay_steps},
          {"b1", opt.b1},
          {"b2", opt.b2},
          {"eps", opt.eps},
          {"weight_decay", opt.weight_decay},
          {"clip", opt.clip},
          {"ilr_init", ilr_init},
          {"ilr_warmup", ilr_warmup},
          {"data", data},
          {"data_fingerprint", hex64(data_fingerprint)},
          {"eval_data", eval_data},
          {"eval_every", eval_every}};
}

Settings Settings::from_json(const json& j, const std::string& origin) {
  Settings s;
  s.mode = mode_from(get<std::string>(j, "mode", origin), origin);
  s.steps = get<int64_t>(j, "steps", origin);
  s.batch = get<int>(j, "batch", origin);
  s.seq_len = get<int>(j, "seq_len", origin);
  s.seed = get<uint64_t>(j, "seed", origin);
  s.opt.lr = get<double>(j, "lr", origin);
  s.opt.init_lr = get<double>(j, "init_lr", origin);
  s.opt.end_lr = get<double>(j, "end_lr", origin);
  s.opt.warmup = get<int64_t>(j, "warmup", origin);
  s.opt.decay_steps = get<int64_t>(j, "decay_steps", origin);
  s.opt.b1 = get<double>(j, "b1", origin);
  s.opt.b2 = get<double>(j, "b2", origin);
  s.opt.eps = get<double>(j, "eps", origin);
  s.opt.weight_decay = get<double>(j, "weight_decay", origin);
  s.opt.clip = get<double>(j, "clip", origin);
  s.ilr_init = get<double>(j, "ilr_init", origin);
  s.ilr_warmup = get<int64_t>(j, "ilr_warmup", origin);
  s.data = get<std::vector<std::string>>(j, "data", origin);
  s.data_fingerprint = std::stoull(get<std::string>(j, "data_fingerprint", origin), nullptr, 16);
  // Absent from checkpoints written before they were kept: no held-out evaluation.
  if (j.contains("eval_data")) s.eval_data = get<std::vector<std::string>>(j, "eval_data", origin);
  if (j.contains("eval_every")) s.eval_every = get<int64_t>(j, "eval_every", origin);
  if (s.eval_every < 0) throw Error(fmt::format("{}: eval_every must be >= 0", origin));
  if (s.steps < 1 || s.batch < 1 || s.seq_len < 1)
    throw Error(fmt::format("{}: steps, batch and seq_len must be positive", origin));
  return s;
}

void save_checkpoint(const std::string& dir, const Checkpoint& c) {
  c.model.save(dir);
  const ParamTable table = param_table(c.model.config);
  std::vector<TensorOut> moments;
  for (size_t i = 0; i < table.params.size(); ++i)
    moments.push_back({"m." + table.params[i].name, table.params[i].shape, c.opt.m.at(i).data()});
  for (size_t i = 0; i < table.params.size(); ++i)
    moments.push_back({"v." + table.params[i].name, table.params[i].shape, c.opt.v.at(i).data()});
  const fs::path d(dir);
  write_safetensors((d / "optimizer.safetensors").string(), moments, DType::F32);
  // Last: trainer.json names the exact model and optimiser files it belongs to.
  const json j = {{"format", "ttt-train-checkpoint"},
                  {"format_version", 1},
                  {"step", c.opt.step},
                  {"documents_dealt", c.documents_dealt},
                  {"settings", c.settings.to_json()},
                  {"model_hash", hex64(file_hash((d / "model.safetensors").string()))},
                  {"optimizer_hash", hex64(file_hash((d / "optimizer.safetensors").string()))}};
  write_file_atomic((d / "trainer.json").string(), j.dump(2) + "\n");
}

Checkpoint load_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  const std::string tj = (d / "trainer.json").string();
  if (!fs::is_regular_file(tj)) throw Error(fmt::format("{}: not a ttt-train checkpoint (no trainer.json)", dir));
  json j;
  {
    std::ifstream f(tj);
    try {
      j = json::parse(f);
    } catch (const json::exception& e) {
      throw Error(fmt::format("{}: invalid JSON: {}", tj, e.what()));
    }
  }
  if (get<std::string>(j, "format", tj) != "ttt-train-checkpoint" || get<int>(j, "format_version", tj) != 1)
    throw Error(fmt::format("{}: not a version-1 ttt-train checkpoint", tj));
  Checkpoint c;
  c.settings = Settings::from_json(get<json>(j, "settings", tj), tj + " settings");
  c.documents_dealt = get<uint64_t>(j, "documents_dealt", tj);
  for (auto [file, key] : {std::pair{"model.safetensors", "model_hash"}, {"optimizer.safetensors", "optimizer_hash"}}) {
    const std::string p = (d / file).string();
    if (!fs::is_regular_file(p)) throw Error(fmt::format("{}: missing (the checkpoint is incomplete)", p));
    if (hex64(file_hash(p)) != get<std::string>(j, key, tj))
      throw Error(fmt::format("{}: does not match {} (a checkpoint interrupted between its files?)", p, tj));
  }
  c.model = Model::load(dir);
  const ParamTable table = param_table(c.model.config);
  SafeTensors st((d / "optimizer.safetensors").string());
  for (const ParamSpec& p : table.params) {
    for (auto [prefix, dst] : {std::pair{"m.", &c.opt.m}, {"v.", &c.opt.v}}) {
      const std::string name = prefix + p.name;
      const TensorView* t = st.find(name);
      if (!t || t->numel() != p.size() || t->dtype != DType::F32)
        throw Error(fmt::format("{}: tensor '{}' missing, misshapen or not F32", st.path(), name));
      dst->push_back(SafeTensors::to_f32(*t));
    }
  }
  c.opt.step = get<int64_t>(j, "step", tj);
  return c;
}

void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn) {
  const size_t k = std::min(n, size_t(std::max(threads, 1)));
  if (k <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::mutex mu;
  size_t next = 0;
  std::exception_ptr error;
  auto work = [&] {
    for (;;) {
      size_t i;
      {
        std::lock_guard lock(mu);
        if (next >= n || error) return;
        i = next++;
      }
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 0; t < k; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

Trainer::Trainer(Checkpoint c, const ByteCorpus& corpus)
    : c_(std::move(c)), corpus_(corpus), sampler_(corpus.docs.size(), c_.settings.seed, c_.documents_dealt) {
  const ParamTable table = param_table(c_.model.config);
  std::vector<int64_t> sizes;
  for (const ParamSpec& p : table.params) {
    sizes.push_back(p.size());
    decays_.push_back(p.decays);
  }
  if (c_.opt.m.empty() && c_.opt.step == 0) c_.opt.init(sizes);
  if (c_.opt.m.size() != sizes.size()) throw Error("Trainer: optimiser state does not follow the parameter table");
  c_.settings.opt.decay_steps = c_.settings.steps;
}

StepResult Trainer::step(const GradientSource& grad, int threads) {
  const Settings& s = c_.settings;
  std::vector<size_t> batch(size_t(s.batch));
  for (auto& i : batch) i = sampler_.next();
  StepResult r;
  r.inner_lr = inner_learning_rate(s.ilr_init, c_.model.config.inner_lr, s.ilr_warmup, c_.opt.step);
  const ParamTable table = param_table(c_.model.config);
  std::vector<std::vector<double>> mean(table.params.size());
  for (size_t t = 0; t < table.params.size(); ++t) mean[t].assign(size_t(table.params[t].size()), 0.0);
  // Waves of `threads` documents: memory for that many gradients, not the batch's, and
  // the sum still runs in document order.
  const size_t wave = size_t(std::max(threads, 1));
  std::vector<ref::ObjectiveResult> per_doc(std::min(wave, batch.size()));
  for (size_t w0 = 0; w0 < batch.size(); w0 += wave) {
    const size_t n = std::min(wave, batch.size() - w0);
    parallel_for(n, threads, [&](size_t i) { per_doc[i] = grad(c_.model, corpus_.docs[batch[w0 + i]], r.inner_lr); });
    for (size_t i = 0; i < n; ++i) {
      const ref::ObjectiveResult& d = per_doc[i];
      if (d.grads.size() != mean.size())
        throw Error(fmt::format("gradient source gave {} tensors, the parameter table has {}", d.grads.size(),
                                mean.size()));
      r.loss += d.loss;
      r.scored += d.scored;
      for (size_t t = 0; t < mean.size(); ++t) {
        if (d.grads[t].size() != mean[t].size())
          throw Error(fmt::format("gradient of '{}': {} values, expected {}", table.params[t].name,
                                  d.grads[t].size(), mean[t].size()));
        for (size_t j = 0; j < mean[t].size(); ++j) mean[t][j] += d.grads[t][j];
      }
    }
  }
  const double inv = 1.0 / double(batch.size());
  r.loss *= inv;
  for (auto& g : mean)
    for (double& x : g) x *= inv;
  std::vector<std::span<float>> params;
  for (const ParamSpec& p : table.params) params.emplace_back(p.host(c_.model));
  r.update = adamw_update(params, c_.opt, mean, decays_, s.opt);
  c_.documents_dealt = sampler_.dealt();
  r.step = c_.opt.step;
  return r;
}

}  // namespace ttt::train
