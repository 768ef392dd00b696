// The CPU matrix product: the twin of host::gemm (CLBlast) and of cl/matvec.cl
// (M = 1 or tb), and the product the reference model (model.cpp) uses in
// their place. Sums run in k order, in double.
#include "lib/reference/ops.hpp"

namespace ttt::ref {

template <typename F>
void matmul(F* y, const F* A, const F* B, int M, int N, int K, bool ta, bool tb, bool accumulate) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        const double a = ta ? A[size_t(k) * M + m] : A[size_t(m) * K + k];
        const double b = tb ? B[size_t(n) * K + k] : B[size_t(k) * N + n];
        acc += a * b;
      }
      y[size_t(m) * N + n] = accumulate ? F(double(y[size_t(m) * N + n]) + acc) : F(acc);
    }
}

template void matmul<float>(float*, const float*, const float*, int, int, int, bool, bool, bool);
template void matmul<double>(double*, const double*, const double*, int, int, int, bool, bool, bool);

}  // namespace ttt::ref
