// Twins of cl/vector.cl: y = a x + b y and the dot product, summed in double.
#include "lib/reference/ops.hpp"

namespace ttt::ref {

template <typename F>
void axpby(F* y, F a, const F* x, F b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double ax = double(a) * double(x[i]);
    y[i] = b == F(0) ? F(ax) : F(ax + double(b) * double(y[i]));
  }
}

template <typename F>
double dot(const F* x, const F* y, size_t n) {
  double acc = 0;
  for (size_t i = 0; i < n; ++i) acc += double(x[i]) * double(y[i]);
  return acc;
}

template void axpby<float>(float*, float, const float*, float, size_t);
template void axpby<double>(double*, double, const double*, double, size_t);
template double dot<float>(const float*, const float*, size_t);
template double dot<double>(const double*, const double*, size_t);

}  // namespace ttt::ref
