// Reference embedding lookup.
#include "lib/reference/ops.hpp"

namespace ttt::ref {

template <typename F>
void embedding_fwd(F* out, const int32_t* ids, const F* wte, int T, int D) {
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) out[size_t(t) * D + d] = wte[size_t(ids[t]) * D + d];
}

template void embedding_fwd<float>(float*, const int32_t*, const float*, int, int);
template void embedding_fwd<double>(double*, const int32_t*, const double*, int, int);

}  // namespace ttt::ref
