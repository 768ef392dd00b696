// Reference global-norm clipping and SGD step.
#include "lib/reference/ops.hpp"

#include <cmath>

namespace ttt::ref {

template <typename F>
F global_norm(const F* const* grads, const size_t* sizes, int count) {
  double ss = 0;
  for (int i = 0; i < count; ++i)
    for (size_t j = 0; j < sizes[i]; ++j) ss += double(grads[i][j]) * double(grads[i][j]);
  return F(std::sqrt(ss));
}

template <typename F>
F clip_scale(F norm, F clip) {
  return clip > 0 && norm >= clip ? clip / norm : F(1);
}

template <typename F>
void sgd_update(F* w, const F* g, size_t n, F lr, F scale) {
  for (size_t i = 0; i < n; ++i) w[i] -= lr * scale * g[i];
}

template float global_norm<float>(const float* const*, const size_t*, int);
template double global_norm<double>(const double* const*, const size_t*, int);
template float clip_scale<float>(float, float);
template double clip_scale<double>(double, double);
template void sgd_update<float>(float*, const float*, size_t, float, float);
template void sgd_update<double>(double*, const double*, size_t, double, double);

}  // namespace ttt::ref
