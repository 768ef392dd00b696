// Held-out NLL with and without test-time training, on the reference model.
#include "lib/train/eval.hpp"

#include "lib/reference/model.hpp"
#include "lib/train/trainer.hpp"

#include <mutex>
#include <numeric>

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

}  // namespace ttt::train
