// Held-out NLL with and without test-time training, on the reference model.
#include "lib/train/eval.hpp"

#include "lib/reference/model.hpp"
#include "lib/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <mutex>
#include <numeric>
#include <queue>

namespace ttt::train {

size_t heldout_targets(const std::vector<std::vector<int32_t>>& docs) {
  size_t n = 0;
  for (const auto& d : docs) n += 2 * (d.size() > 0 ? d.size() - 1 : 0);
  return n;
}

EvalResult evaluate_heldout(const Model& m, const std::vector<std::vector<int32_t>>& docs, int threads,
                            const std::function<bool()>& stop, const std::function<void(size_t)>& progress) {
  std::mutex mu;
  size_t scored = 0;
  std::vector<double> with(docs.size()), without(docs.size());
  std::vector<size_t> counted(docs.size(), 0);
  std::vector<char> done(docs.size(), 0);
  parallel_for(docs.size(), threads, [&](size_t i) {
    if (stop()) return;
    ref::RefModel<double> r(m);
    for (bool ttt : {true, false}) {
      r.reset();  // fresh document: prime weights as loaded
      const std::vector<double> nll = r.evaluate(docs[i], ttt);
      (ttt ? with : without)[i] = std::accumulate(nll.begin(), nll.end(), 0.0);
      counted[i] = nll.size();
      if (progress) {
        std::lock_guard lock(mu);
        scored += nll.size();
        progress(scored);
      }
    }
    done[i] = 1;
  });
  EvalResult e;
  double a = 0, b = 0;
  for (size_t i = 0; i < docs.size(); ++i) {  // in document order: the same sum whatever the threads
    if (!done[i]) continue;
    a += with[i];
    b += without[i];
    e.tokens += counted[i];
    ++e.documents;
  }
  if (e.tokens) {
    e.nll_ttt = a / double(e.tokens);
    e.nll_no_ttt = b / double(e.tokens);
  }
  return e;
}

HeldoutSample time_heldout_sample(const Model& m, const std::vector<std::vector<int32_t>>& docs) {
  const auto first = std::find_if(docs.begin(), docs.end(), [](const auto& d) { return d.size() >= 2; });
  if (first == docs.end()) return {};
  const size_t B = size_t(m.config.mini_batch_size);
  const std::vector<int32_t> head(first->begin(), first->begin() + std::ptrdiff_t(std::min(first->size(), B + 1)));
  ref::RefModel<double> r(m);
  const auto t0 = std::chrono::steady_clock::now();
  for (bool ttt : {true, false}) {
    r.reset();
    r.evaluate(head, ttt);
  }
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1};
}

double heldout_seconds(const HeldoutSample& sample, const std::vector<std::vector<int32_t>>& docs, int mini_batch,
                       int threads) {
  if (sample.minibatches == 0 || docs.empty()) return 0;
  const double per = sample.seconds / double(sample.minibatches);
  const size_t B = size_t(std::max(mini_batch, 1));
  // The threads' finishing times, earliest first: the next document goes to the earliest.
  std::priority_queue<double, std::vector<double>, std::greater<>> free_at;
  for (size_t k = std::min(docs.size(), size_t(std::max(threads, 1))); k > 0; --k) free_at.push(0.0);
  double end = 0;
  for (const auto& d : docs) {
    const size_t targets = d.size() > 0 ? d.size() - 1 : 0;
    const double t = free_at.top() + per * double((targets + B - 1) / B);
    free_at.pop();
    free_at.push(t);
    end = std::max(end, t);
  }
  return end;
}

}  // namespace ttt::train
