// Reference embedding lookup.
#include "lib/reference/ops.hpp"

namespace ttt::ref {

template <typename F>
void embedding_fwd(F* out, const int32_t* ids, const F* wte, int T, int D) {
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) out[size_t(t) * D + d] = wte[size_t(ids[t]) * D + d];
}

template <typename F>
void embedding_bwd(F* dwte, const F* dx, const int32_t* ids, int T, int D) {
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) dwte[size_t(ids[t]) * D + d] += dx[size_t(t) * D + d];
}

template void embedding_fwd<float>(float*, const int32_t*, const float*, int, int);
template void embedding_fwd<double>(double*, const int32_t*, const double*, int, int);

template void embedding_bwd<float>(float*, const float*, const int32_t*, int, int);
template void embedding_bwd<double>(double*, const double*, const int32_t*, int, int);

}  // namespace ttt::ref
