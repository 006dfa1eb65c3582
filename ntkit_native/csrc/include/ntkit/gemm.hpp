// Serial GEMM primitives used by the CPU ops: external BLAS when installed,
// else a builtin register-blocked kernel. Row-major, C = A * B^T.
#pragma once
#include "common.hpp"

namespace ntkit {
namespace cpu {

// C (n x m, ldc) = A (n x k, lda) * B (m x k, ldb)^T + beta * C.
// With external BLAS the call may use BLAS's own threads.
template <class T>
void gemm_nt(index_t n, index_t m, index_t k, const T* A, index_t lda, const T* B,
             index_t ldb, T beta, T* C, index_t ldc);

// Always the builtin kernel (single-threaded, deterministic).
template <class T>
void gemm_nt_builtin(index_t n, index_t m, index_t k, const T* A, index_t lda, const T* B,
                     index_t ldb, T beta, T* C, index_t ldc);

}  // namespace cpu
}  // namespace ntkit
