// Twin of cl/peak.cl's fma_peak, summing in the kernel's order.
#include "lib/reference/peak.hpp"

#include <cmath>
#include <vector>

namespace ttt::ref {

void fma_peak(float* out, size_t n, float a, float b, int iters, int chains) {
  std::vector<float> x(size_t(chains) * 16);
  for (size_t i = 0; i < n; ++i) {
    for (int c = 0; c < chains; ++c)
      for (int l = 0; l < 16; ++l) x[size_t(c) * 16 + l] = (float(i % 64) * 1e-3f + float(c) * 1e-2f) + float(l) * 1e-4f;
    for (int t = 0; t < iters; ++t)
      for (auto& v : x) v = std::fma(v, a, b);
    float s[16];
    for (int l = 0; l < 16; ++l) {
      s[l] = x[size_t(l)];
      for (int c = 1; c < chains; ++c) s[l] += x[size_t(c) * 16 + l];
    }
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) s[l] += s[l + w];
    out[i] = s[0];
  }
}

}  // namespace ttt::ref
