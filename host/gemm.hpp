// Row-major single-precision GEMM through CLBlast: the only place in ttt-cl
// that includes clblast.h. C = alpha * op(A) @ op(B) + beta * C, with element
// offsets and leading dimensions, plus the strided-batched form and GEMV.
#pragma once

#include "host/buffer.hpp"

#include <map>
#include <string>

namespace ttt::host {

enum class Trans { N, T };

// op(A) is M x K, op(B) is K x N, C is M x N; offsets and leading dimensions in elements.
void gemm(Context& ctx, Trans ta, Trans tb, size_t M, size_t N, size_t K, float alpha, const Buffer& A,
          size_t a_off, size_t lda, const Buffer& B, size_t b_off, size_t ldb, float beta, Buffer& C, size_t c_off,
          size_t ldc, const char* label = "gemm");

// `batch` independent GEMMs; matrix i starts at offset + i * stride (the plan's
// layout applies, its blocks do not).
void gemm_strided_batched(Context& ctx, Trans ta, Trans tb, size_t M, size_t N, size_t K, float alpha,
                          const Buffer& A, size_t a_off, size_t lda, size_t a_stride, const Buffer& B, size_t b_off,
                          size_t ldb, size_t b_stride, float beta, Buffer& C, size_t c_off, size_t ldc,
                          size_t c_stride, size_t batch, const char* label = "gemm_batched");

// x[off .. off + n) *= alpha.
void scal(Context& ctx, size_t n, float alpha, Buffer& x, size_t off, const char* label = "scal");

// y (M or N) = alpha * op(A) @ x + beta * y for a row-major A of M x N
// (op = T: y has N elements, x has M). At one row (decode) a product
// x (1, K) @ W (K, N) is gemv(T, K, N, W, x): CLBlast's GEMV streams W once
// without the padding and transposition passes of its GEMM.
void gemv(Context& ctx, Trans ta, size_t M, size_t N, float alpha, const Buffer& A, size_t a_off, size_t lda,
          const Buffer& x, size_t x_off, float beta, Buffer& y, size_t y_off, const char* label = "gemv");

// How gemm() hands a row-major product to CLBlast, a speed choice that never
// changes the result beyond float rounding:
// - col_major: as the column-major C^T = op(B)^T op(A)^T instead of as asked.
//   CLBlast's indirect Xgemm transposes (copies) whichever operands are not in
//   the orientation its kernel wants (GEMMK 0: A unrotated, B rotated, C
//   unrotated), so the two forms copy different operands.
// - k_block / n_block (0: whole): the product in panels of at most that many
//   along K and N, the K panels summed into C (beta = 1 after the first).
//   CLBlast's kernels keep no cache blocking along K, so on a CPU a long K
//   streams each work-group's panels from memory; short panels stay in cache.
// - views: an operand (or panel) that starts at a non-zero element offset is
//   handed over as an OpenCL sub-buffer that starts there, when the offset is
//   a multiple of the device's base address alignment. CLBlast's indirect
//   Xgemm copies every operand with a non-zero offset into a temporary buffer
//   (NoTempBuffer), even one already in its kernel's layout: a K panel after
//   the first, a vocabulary tile of the embedding. Not part of the record:
//   on unless set_gemm_views turns it off (an engine does, from
//   EngineOptions::gemm_views); $TTT_GEMM_VIEWS=on|off overrides both, the
//   switch to measure the copies. `ttt-bench copies` sets whole plans.
// The tuning file's record sets the rest (pseudo-kernel "TttGemm"); default: row, whole.
struct GemmPlan {
  bool col_major = false;
  size_t k_block = 0, n_block = 0;
  bool views = true;
  bool operator==(const GemmPlan&) const = default;
};
// The plan for ctx's GEMMs from here on; gemm_plan reads it.
void set_gemm_plan(Context& ctx, const GemmPlan& plan);
GemmPlan gemm_plan(Context& ctx);
// The plan's `views` from here on: `on`, unless $TTT_GEMM_VIEWS says otherwise.
void set_gemm_views(Context& ctx, bool on);

// Releases CLBlast's cached programs and kernels (every context's). Context's
// destructor calls it so that no OpenCL object outlives its context or is
// released from a static destructor after the runtime has shut down.
void clear_gemm_cache();

// Symbolic name of a CLBlast status code (which extends OpenCL's).
const char* clblast_status_name(int status);

// "1.5.3": the CLBlast this was built against (tuning records are kept per version).
std::string clblast_version();

// CLBlast's OverrideParameters for one kernel ("Xgemm", "XgemmDirect",
// "GemmRoutine", ...) of single precision on ctx's device: every parameter of
// the kernel by name. Process-wide for that device. Throws naming the kernel.
void clblast_override(Context& ctx, const std::string& kernel, const std::map<std::string, size_t>& params);
// The parameters CLBlast uses now for that kernel on ctx's device (its database's, or an override's).
std::map<std::string, size_t> clblast_parameters(Context& ctx, const std::string& kernel);

}  // namespace ttt::host
