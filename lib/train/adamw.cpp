// AdamW, the learning-rate schedules and global-norm clipping (see adamw.hpp
// for the formulas and where their defaults come from).
#include "lib/train/adamw.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ttt::train {

double learning_rate(const AdamW& h, int64_t step) {
  if (h.lr == 0) return 0;  // as optax's constant 0 schedule: no warm-up from init_lr
  const int64_t t = std::max<int64_t>(step, 0);
  if (t < h.warmup) return h.init_lr + (h.lr - h.init_lr) * double(t) / double(h.warmup);
  const int64_t span = h.decay_steps - h.warmup;
  if (span <= 0) return h.end_lr;
  const double k = double(std::min(t - h.warmup, span)) / double(span);
  return h.end_lr + (h.lr - h.end_lr) * 0.5 * (1 + std::cos(std::numbers::pi * k));
}

double inner_learning_rate(double ilr_init, double inner_lr, int64_t ilr_warmup, int64_t step) {
  if (ilr_warmup <= 0) return inner_lr;
  const double progress = std::min(1.0, double(step + 1) / double(ilr_warmup));
  return ilr_init + (inner_lr - ilr_init) * progress;
}

void AdamWState::init(const std::vector<int64_t>& sizes) {
  step = 0;
  m.clear();
  v.clear();
  for (int64_t n : sizes) {
    m.emplace_back(size_t(n), 0.f);
    v.emplace_back(size_t(n), 0.f);
  }
}

UpdateInfo adamw_update(std::vector<std::span<float>> params, AdamWState& s,
                        const std::vector<std::vector<double>>& grads, const std::vector<bool>& decays,
                        const AdamW& h) {
  const size_t n = params.size();
  if (grads.size() != n || decays.size() != n || s.m.size() != n || s.v.size() != n)
    throw Error(fmt::format("adamw_update: {} parameters but {} gradients, {} decay flags, {} moments", n,
                            grads.size(), decays.size(), s.m.size()));
  double sq = 0;
  for (size_t i = 0; i < n; ++i) {
    if (grads[i].size() != params[i].size() || s.m[i].size() != params[i].size() || s.v[i].size() != params[i].size())
      throw Error(fmt::format("adamw_update: tensor {} holds {} values, its gradient {}, its moments {}", i,
                              params[i].size(), grads[i].size(), s.m[i].size()));
    for (double g : grads[i]) sq += g * g;
  }
  UpdateInfo info;
  info.grad_norm = std::sqrt(sq);
  if (!std::isfinite(info.grad_norm))
    throw Error(fmt::format("non-finite gradient norm at step {}: the weights were not updated", s.step + 1));
  if (h.clip > 0 && info.grad_norm > h.clip) info.scale = h.clip / info.grad_norm;
  info.lr = learning_rate(h, s.step);
  const double t = double(s.step + 1);
  const double c1 = 1 - std::pow(h.b1, t), c2 = 1 - std::pow(h.b2, t);
  // Two passes over the same arithmetic: the first only checks that every new weight is finite (in
  // float), so that a diverging step throws with the weights and moments as they were; the second writes.
  for (const bool write : {false, true}) {
    for (size_t i = 0; i < n; ++i) {
      std::span<float> p = params[i];
      float* m = s.m[i].data();
      float* v = s.v[i].data();
      const double* g = grads[i].data();
      const double wd = decays[i] ? h.weight_decay : 0.0;
      for (size_t j = 0; j < p.size(); ++j) {
        const double gj = g[j] * info.scale;
        const double mj = h.b1 * double(m[j]) + (1 - h.b1) * gj;
        const double vj = h.b2 * double(v[j]) + (1 - h.b2) * gj * gj;
        const double u = (mj / c1) / (std::sqrt(vj / c2) + h.eps) + wd * double(p[j]);
        const float np = float(double(p[j]) - info.lr * u);
        if (!write) {
          if (!std::isfinite(np))
            throw Error(fmt::format("non-finite weights after the update of step {} (tensor {}): the weights were "
                                    "not updated",
                                    s.step + 1, i));
          continue;
        }
        m[j] = float(mj);
        v[j] = float(vj);
        p[j] = np;
      }
    }
  }
  ++s.step;
  return info;
}

}  // namespace ttt::train
