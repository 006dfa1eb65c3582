// Structured random projections: out[i, b*dp:(b+1)*dp] = (H D3 H D2 H D1) pad(x_i) for each
// block b, H the Walsh-Hadamard matrix normalised by 1/sqrt(dp), D_k = diag(signs[b, k, :]).
// One row's block (dp <= a few thousand values) stays in L1/L2 through the three transforms;
// OpenMP over rows. Cost O(n * nb * dp log dp).
#include <cmath>

#include "ntkit/cpu_ops.hpp"

namespace ntkit {
namespace cpu {

namespace {
// Stages h = 1, 2, 4 as one 8-point transform per chunk (the generic loop would run with
// inner lengths 1, 2, 4 and not vectorise), then the remaining stages with long simd loops.
template <class T>
void fwht_inplace(T* v, index_t n) {
    index_t h = 1;
    if (n >= 8) {
        for (index_t i = 0; i < n; i += 8) {
            T* a = v + i;
            const T b0 = a[0] + a[1], b1 = a[0] - a[1], b2 = a[2] + a[3], b3 = a[2] - a[3];
            const T b4 = a[4] + a[5], b5 = a[4] - a[5], b6 = a[6] + a[7], b7 = a[6] - a[7];
            const T c0 = b0 + b2, c2 = b0 - b2, c1 = b1 + b3, c3 = b1 - b3;
            const T c4 = b4 + b6, c6 = b4 - b6, c5 = b5 + b7, c7 = b5 - b7;
            a[0] = c0 + c4; a[4] = c0 - c4; a[1] = c1 + c5; a[5] = c1 - c5;
            a[2] = c2 + c6; a[6] = c2 - c6; a[3] = c3 + c7; a[7] = c3 - c7;
        }
        h = 8;
    }
    for (; h < n; h <<= 1) {
        for (index_t i = 0; i < n; i += 2 * h) {
            T* a = v + i;
            T* b = v + i + h;
#pragma omp simd
            for (index_t j = 0; j < h; ++j) {
                const T x = a[j], y = b[j];
                a[j] = x + y;
                b[j] = x - y;
            }
        }
    }
}
}  // namespace

template <class T>
void hadamard_blocks(const T* X, index_t n, index_t d, const T* signs, index_t nb, index_t dp, T* out) {
    // the three 1/sqrt(dp) normalisations are applied once, with the first signs
    const T scale3 = T(1) / (T(dp) * std::sqrt(T(dp)));
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) {
        const T* x = X + i * d;
        for (index_t b = 0; b < nb; ++b) {
            T* v = out + (i * nb + b) * dp;
            const T* s = signs + b * 3 * dp;
            for (index_t j = 0; j < d; ++j) v[j] = x[j] * (s[j] * scale3);
            for (index_t j = d; j < dp; ++j) v[j] = T(0);
            fwht_inplace(v, dp);
            for (int k = 1; k < 3; ++k) {
                const T* sk = s + k * dp;
#pragma omp simd
                for (index_t j = 0; j < dp; ++j) v[j] *= sk[j];
                fwht_inplace(v, dp);
            }
        }
    }
}

template void hadamard_blocks<float>(const float*, index_t, index_t, const float*, index_t, index_t, float*);
template void hadamard_blocks<double>(const double*, index_t, index_t, const double*, index_t, index_t, double*);

}  // namespace cpu
}  // namespace ntkit
