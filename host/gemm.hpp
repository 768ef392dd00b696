// Row-major single-precision GEMM through CLBlast: the only place in ttt-cl
// that includes clblast.h. C = alpha * op(A) @ op(B) + beta * C, with element
// offsets and leading dimensions, plus the strided-batched form.
#pragma once

#include "host/buffer.hpp"

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

// Releases CLBlast's cached programs and kernels (every context's). Context's
// destructor calls it so that no OpenCL object outlives its context or is
// released from a static destructor after the runtime has shut down.
void clear_gemm_cache();

// Symbolic name of a CLBlast status code (which extends OpenCL's).
const char* clblast_status_name(int status);

}  // namespace ttt::host
