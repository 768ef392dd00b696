// The matvec family (single-token decoding) against the reference matmul:
// x @ A (columns) and A @ x (rows) on awkward sizes, with a leading dimension
// wider than the matrix, an offset into x, and canaries after every output.
// Both shapes of the column product run on every device (the CPU one and the GPU one).
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

class Matvec : public DeviceTest {};

TEST_F(Matvec, ColumnsAndRowsMatchReference) {
  for (auto [K, N] : {std::pair{1, 1}, {7, 93}, {93, 7}, {64, 1023}, {768, 1024}, {33, 1025}, {5, 2}}) {
    const int lda = N + 3, x_off = 5;
    auto A = random_vec(size_t(K) * lda, 1), xv = random_vec(size_t(K) + x_off, 2);
    // Reference on the packed (K, N) matrix.
    std::vector<float> Ap(size_t(K) * N), x(xv.begin() + x_off, xv.end()), want(static_cast<size_t>(N));
    for (int k = 0; k < K; ++k)
      for (int n = 0; n < N; ++n) Ap[size_t(k) * N + n] = A[size_t(k) * lda + n];
    ref::matmul(want.data(), x.data(), Ap.data(), 1, N, K, false, false, false);
    Canaried dA(dev(), A), dx(dev(), xv);
    for (auto* cols : {&ops::matvec_cols, &ops::matvec_cols_serial, &ops::matvec_cols_split}) {
      Canaried y(dev(), size_t(N), 7.f);
      cols(dev(), y.buf, dx.buf, size_t(x_off), dA.buf, K, N, lda);
      EXPECT_TRUE(all_close(y.get(), want, 1e-5, 1e-5)) << "cols K=" << K << " N=" << N;
      EXPECT_TRUE(y.canary_intact());
    }
    // Rows: the same numbers as A^T, i.e. y (N) = A' (N, K) @ x with A' = A^T stored row-major.
    std::vector<float> At(size_t(N) * (K + 2));
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) At[size_t(n) * (K + 2) + k] = Ap[size_t(k) * N + n];
    Canaried dAt(dev(), At), yr(dev(), size_t(N), 7.f);
    ops::matvec_rows(dev(), yr.buf, dAt.buf, dx.buf, size_t(x_off), N, K, K + 2);
    EXPECT_TRUE(all_close(yr.get(), want, 1e-5, 1e-5)) << "rows K=" << K << " N=" << N;
    EXPECT_TRUE(yr.canary_intact());
  }
}

}  // namespace
}  // namespace ttt::test
