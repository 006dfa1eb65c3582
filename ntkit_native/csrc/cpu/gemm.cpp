// GEMM dispatch: external Fortran BLAS (function pointers handed in by the
// binding, e.g. scipy's OpenBLAS) or a builtin blocked kernel.
#include "ntkit/gemm.hpp"

#include <algorithm>
#include <climits>
#include <vector>

#include "ntkit/cpu_ops.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ntkit {
namespace cpu {

namespace {
sgemm_t g_sgemm = nullptr;
dgemm_t g_dgemm = nullptr;

template <class T> struct BlasFn;
template <> struct BlasFn<float> { static sgemm_t get() { return g_sgemm; } };
template <> struct BlasFn<double> { static dgemm_t get() { return g_dgemm; } };

bool fits_int(index_t v) { return v >= 0 && v <= INT_MAX; }
}  // namespace

void set_blas(sgemm_t s, dgemm_t d) {
    g_sgemm = s;
    g_dgemm = d;
}
namespace {
blas_threads_local_t g_threads_local = nullptr;
}
void set_blas_threads_local(blas_threads_local_t f) { g_threads_local = f; }
blas_threads_local_t blas_threads_local() { return g_threads_local; }

bool has_blas() { return g_sgemm != nullptr && g_dgemm != nullptr; }

bool openmp_enabled() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}
int omp_max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

Tuning& tuning() {
    static Tuning t;
    return t;
}

// Builtin kernel: B block packed transposed (kc x nc) so the inner loop runs
// along contiguous output columns; 4 rows of A per pass (register blocking).
template <class T>
void gemm_nt_builtin(index_t n, index_t m, index_t k, const T* A, index_t lda, const T* B,
                     index_t ldb, T beta, T* C, index_t ldc) {
    if (n <= 0 || m <= 0) return;
    if (k <= 0) {
        for (index_t i = 0; i < n; ++i)
            for (index_t j = 0; j < m; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        return;
    }
    const index_t NC = 256, KC = 256;
    std::vector<T> bt(static_cast<std::size_t>(NC * KC));
    for (index_t j0 = 0; j0 < m; j0 += NC) {
        const index_t nc = std::min(NC, m - j0);
        for (index_t k0 = 0; k0 < k; k0 += KC) {
            const index_t kc = std::min(KC, k - k0);
            for (index_t jj = 0; jj < nc; ++jj)
                for (index_t kk = 0; kk < kc; ++kk) bt[kk * nc + jj] = B[(j0 + jj) * ldb + k0 + kk];
            const bool first = (k0 == 0);
            const T* btp = bt.data();
            index_t i0 = 0;
            for (; i0 + 4 <= n; i0 += 4) {
                const T* a0 = A + (i0 + 0) * lda + k0;
                const T* a1 = A + (i0 + 1) * lda + k0;
                const T* a2 = A + (i0 + 2) * lda + k0;
                const T* a3 = A + (i0 + 3) * lda + k0;
                T* c0 = C + (i0 + 0) * ldc + j0;
                T* c1 = C + (i0 + 1) * ldc + j0;
                T* c2 = C + (i0 + 2) * ldc + j0;
                T* c3 = C + (i0 + 3) * ldc + j0;
#pragma omp simd
                for (index_t jj = 0; jj < nc; ++jj) {
                    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    for (index_t kk = 0; kk < kc; ++kk) {
                        const T z = btp[kk * nc + jj];
                        s0 += a0[kk] * z;
                        s1 += a1[kk] * z;
                        s2 += a2[kk] * z;
                        s3 += a3[kk] * z;
                    }
                    if (first) {
                        if (beta == T(0)) {
                            c0[jj] = s0; c1[jj] = s1; c2[jj] = s2; c3[jj] = s3;
                        } else {
                            c0[jj] = beta * c0[jj] + s0; c1[jj] = beta * c1[jj] + s1;
                            c2[jj] = beta * c2[jj] + s2; c3[jj] = beta * c3[jj] + s3;
                        }
                    } else {
                        c0[jj] += s0; c1[jj] += s1; c2[jj] += s2; c3[jj] += s3;
                    }
                }
            }
            for (; i0 < n; ++i0) {
                const T* a0 = A + i0 * lda + k0;
                T* c0 = C + i0 * ldc + j0;
#pragma omp simd
                for (index_t jj = 0; jj < nc; ++jj) {
                    T s0 = 0;
                    for (index_t kk = 0; kk < kc; ++kk) s0 += a0[kk] * btp[kk * nc + jj];
                    if (first)
                        c0[jj] = beta == T(0) ? s0 : beta * c0[jj] + s0;
                    else
                        c0[jj] += s0;
                }
            }
        }
    }
}

template <class T>
void gemm_nt(index_t n, index_t m, index_t k, const T* A, index_t lda, const T* B,
             index_t ldb, T beta, T* C, index_t ldc) {
    if (n <= 0 || m <= 0) return;
    auto fn = BlasFn<T>::get();
    if (fn == nullptr || k <= 0 || !fits_int(n) || !fits_int(m) || !fits_int(k) ||
        !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) {
        gemm_nt_builtin(n, m, k, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Row-major C = A B^T  <=>  column-major C^T (m x n) = B (m x k) * A^T (k x n):
    // gemm('T', 'N', m, n, k, 1, B, ldb, A, lda, beta, C, ldc).
    const char ta = 'T', tb = 'N';
    const int im = int(m), in = int(n), ik = int(k);
    const int ilda = int(std::max<index_t>(lda, 1)), ildb = int(std::max<index_t>(ldb, 1)),
              ildc = int(std::max<index_t>(ldc, 1));
    const T one = T(1);
    fn(&ta, &tb, &im, &in, &ik, &one, B, &ildb, A, &ilda, &beta, C, &ildc);
}

template void gemm_nt<float>(index_t, index_t, index_t, const float*, index_t, const float*,
                             index_t, float, float*, index_t);
template void gemm_nt<double>(index_t, index_t, index_t, const double*, index_t, const double*,
                              index_t, double, double*, index_t);
template void gemm_nt_builtin<float>(index_t, index_t, index_t, const float*, index_t,
                                     const float*, index_t, float, float*, index_t);
template void gemm_nt_builtin<double>(index_t, index_t, index_t, const double*, index_t,
                                      const double*, index_t, double, double*, index_t);

}  // namespace cpu
}  // namespace ntkit
