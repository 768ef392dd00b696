// Sampler: repeat penalty, then greedy argmax, or temperature, top-k, softmax
// and top-p before one draw from a seeded generator. Kept in float with a
// double-precision softmax sum so that the same seed gives the same text.
#include "ttt/sampling.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace ttt {

void SamplingOptions::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw Error(fmt::format("temperature {} must be a finite number >= 0 (0: greedy)", temperature));
  if (top_k < 0) throw Error(fmt::format("top-k {} must be >= 0 (0: off)", top_k));
  if (!(top_p > 0 && top_p <= 1)) throw Error(fmt::format("top-p {} must be in (0, 1]", top_p));
  if (!(repeat_penalty > 0) || !std::isfinite(repeat_penalty))
    throw Error(fmt::format("repeat penalty {} must be a finite number > 0 (1: off)", repeat_penalty));
  if (repeat_last_n < 0) throw Error(fmt::format("repeat-last-n {} must be >= 0", repeat_last_n));
  if (vocab < 0) throw Error(fmt::format("usable vocabulary {} must be >= 0 (0: every id)", vocab));
}

Sampler::Sampler(SamplingOptions o) : o_(o), rng_(o.seed) { o_.validate(); }

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int V = int(logits.size());
  if (V == 0) throw Error("Sampler::sample: empty logits");
  work_.assign(logits.begin(), logits.end());
  if (o_.repeat_penalty != 1.f && o_.repeat_last_n > 0) {
    const size_t n = std::min(history.size(), size_t(o_.repeat_last_n));
    std::unordered_set<int32_t> seen(history.end() - long(n), history.end());
    for (int32_t id : seen)
      if (id >= 0 && id < V) work_[size_t(id)] = work_[size_t(id)] > 0 ? work_[size_t(id)] / o_.repeat_penalty
                                                                          : work_[size_t(id)] * o_.repeat_penalty;
  }
  if (o_.vocab > 0 && o_.vocab < V) {  // ids the caller cannot use weigh nothing
    for (int id = o_.vocab; id < V; ++id)
      if (id != o_.eos) work_[size_t(id)] = -INFINITY;
  }
  if (o_.temperature == 0.f) return int32_t(std::max_element(work_.begin(), work_.end()) - work_.begin());

  // Candidates by decreasing logit (ties: lower id first), cut to top-k.
  ids_.resize(size_t(V));
  std::iota(ids_.begin(), ids_.end(), 0);
  const auto before = [&](int32_t a, int32_t b) {
    return work_[size_t(a)] > work_[size_t(b)] || (work_[size_t(a)] == work_[size_t(b)] && a < b);
  };
  const size_t k = o_.top_k > 0 ? std::min(size_t(o_.top_k), size_t(V)) : size_t(V);
  // Plain temperature sampling needs no order (sorting 128K logits costs milliseconds per token).
  if (k < size_t(V) || o_.top_p < 1.f) std::partial_sort(ids_.begin(), ids_.begin() + long(k), ids_.end(), before);
  ids_.resize(k);
  // Softmax of logit / temperature over the candidates, then the top-p cut.
  const double top = double(*std::max_element(work_.begin(), work_.end()));
  std::vector<double> p(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += p[i] = std::exp((double(work_[size_t(ids_[i])]) - top) / o_.temperature);
  size_t keep = k;
  if (o_.top_p < 1.f) {
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += p[i] / sum;
      if (cum >= double(o_.top_p)) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[i];
  // 53 random bits in [0, 1): the same on every standard library (unlike std::uniform_real_distribution).
  const double u = double(rng_() >> 11) * 0x1.0p-53 * mass;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return ids_[i];
  }
  return ids_[keep - 1];
}

}  // namespace ttt
