// Row-major single-precision GEMM through CLBlast: the only place in ttt-cl
// that includes clblast.h. C = alpha * op(A) @ op(B) + beta * C, with element
// offsets and leading dimensions, plus the strided-batched form.
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

// `batch` independent GEMMs; matrix i starts at offset + i * stride.
void gemm_strided_batched(Context& ctx, Trans ta, Trans tb, size_t M, size_t N, size_t K, float alpha,
                          const Buffer& A, size_t a_off, size_t lda, size_t a_stride, const Buffer& B, size_t b_off,
                          size_t ldb, size_t b_stride, float beta, Buffer& C, size_t c_off, size_t ldc,
                          size_t c_stride, size_t batch, const char* label = "gemm_batched");

// Symbolic name of a CLBlast status code (which extends OpenCL's).
const char* clblast_status_name(int status);

// "1.5.3": the CLBlast this was built against (tuning records are kept per version).
std::string clblast_version();

// CLBlast's OverrideParameters for one kernel ("Xgemm", "XgemmDirect",
// "GemmRoutine", ...) of single precision on ctx's device: every parameter of
// the kernel by name. Process-wide for that device. Throws naming the kernel.
void clblast_override(Context& ctx, const std::string& kernel, const std::map<std::string, size_t>& params);

}  // namespace ttt::host
