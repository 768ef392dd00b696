// The matvec family (single-token decoding) against the reference matmul:
// x @ A (columns) and A @ x (rows) on awkward sizes, with a leading dimension
// wider than the matrix, an offset into x, and canaries after every output.
// Both shapes of the column product run on every device (the CPU one and the GPU one).
// 16-bit weights (f16, bf16): the same products on the stored data against the
// reference on the widened data, and the widening kernel (cl/convert.cl) itself.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

class Matvec : public DeviceTest {};

// Sizes: a slab's rows not a multiple of the 4 read side by side (93, 1667), one slab writing y
// directly (K < 32), columns not a multiple of 16 and fewer than 16, a long K of few columns (many
// slabs: the partial rows' sum), more columns than a slab's block (4096: 4099 with one slab, 8195 with
// several), and for the rows form runs of several rows per item with a remainder.
TEST_F(Matvec, ColumnsAndRowsMatchReference) {
  for (auto [K, N] : {std::pair{1, 1}, {7, 93}, {93, 7}, {64, 1023}, {768, 1024}, {33, 1025}, {5, 2}, {1667, 17},
                      {2, 4099}, {130, 2305}, {40, 8195}}) {
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
      cols(dev(), y.buf, dx.buf, size_t(x_off), dA.buf, K, N, lda, DType::F32);
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

// A device buffer of 16-bit values (a stored weight: only read by the kernels).
host::Buffer stored(host::Context& ctx, const std::vector<uint16_t>& v) {
  host::Buffer b(ctx, std::max<size_t>(v.size(), 1) * 2, "test 16-bit weight");
  if (!v.empty()) b.write(v.data(), v.size() * 2);
  return b;
}

TEST_F(Matvec, SixteenBitWeightsMatchTheWidenedReference) {
  for (DType t : {DType::BF16, DType::F16})
    for (auto [K, N] : {std::pair{1, 1}, {7, 93}, {93, 7}, {33, 1025}, {5, 2}, {768, 1024}, {1667, 17}, {130, 2305},
                        {40, 8195}}) {
      const int lda = N + 3, x_off = 5;
      const auto A16 = ref::narrow(random_vec(size_t(K) * lda, 1), t);
      std::vector<float> A(A16.size());
      ref::widen(A.data(), A16.data(), A.size(), t);
      auto xv = random_vec(size_t(K) + x_off, 2);
      std::vector<float> Ap(size_t(K) * N), x(xv.begin() + x_off, xv.end()), want(static_cast<size_t>(N));
      for (int k = 0; k < K; ++k)
        for (int n = 0; n < N; ++n) Ap[size_t(k) * N + n] = A[size_t(k) * lda + n];
      ref::matmul(want.data(), x.data(), Ap.data(), 1, N, K, false, false, false);
      host::Buffer dA = stored(dev(), A16);
      Canaried dx(dev(), xv);
      for (auto* cols : {&ops::matvec_cols, &ops::matvec_cols_serial, &ops::matvec_cols_split}) {
        Canaried y(dev(), size_t(N), 7.f);
        cols(dev(), y.buf, dx.buf, size_t(x_off), dA, K, N, lda, t);
        EXPECT_TRUE(all_close(y.get(), want, 1e-5, 1e-5)) << dtype_name(t) << " cols K=" << K << " N=" << N;
        EXPECT_TRUE(y.canary_intact());
      }
      // Rows (a tied head): A' = A^T (N, K) stored with leading dimension K + 2.
      std::vector<uint16_t> At16(size_t(N) * (K + 2), 0);
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k) At16[size_t(n) * (K + 2) + k] = A16[size_t(k) * lda + n];
      host::Buffer dAt = stored(dev(), At16);
      Canaried yr(dev(), size_t(N), 7.f);
      ops::matvec_rows(dev(), yr.buf, dAt, dx.buf, size_t(x_off), N, K, K + 2, t);
      EXPECT_TRUE(all_close(yr.get(), want, 1e-5, 1e-5)) << dtype_name(t) << " rows K=" << K << " N=" << N;
      EXPECT_TRUE(yr.canary_intact());
    }
}

// The widening before a GEMM: a (R, C) panel at an offset with a wider row stride, exact.
TEST_F(Matvec, WideningMatchesReference) {
  for (DType t : {DType::BF16, DType::F16})
    for (auto [R, C] : {std::pair{1, 1}, {7, 93}, {93, 7}, {3, 1025}}) {
      const int ldi = C + 5, off = 11, ldo = C + 1;
      auto in16 = ref::narrow(random_vec(size_t(off) + size_t(R) * ldi, 3, -70000.f, 70000.f), t);
      if (t == DType::F16) in16[size_t(off)] = 0x0001;  // a subnormal (and beyond f16's range: infinities)
      std::vector<float> want(size_t(R) * ldo, 7.f), all(in16.size());
      ref::widen(all.data(), in16.data(), all.size(), t);
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) want[size_t(r) * ldo + c] = all[size_t(off) + size_t(r) * ldi + c];
      host::Buffer din = stored(dev(), in16);
      Canaried out(dev(), want.size(), 7.f);
      ops::convert_widen(dev(), out.buf, ldo, din, t, size_t(off), ldi, R, C);
      const auto got = out.get();
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << dtype_name(t) << " R=" << R << " C=" << C << " at " << i << ": " << got[i] << " vs " << want[i];
      EXPECT_TRUE(out.canary_intact());
    }
}

}  // namespace
}  // namespace ttt::test
