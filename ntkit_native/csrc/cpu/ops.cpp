// CPU ops: gram (fused GEMM + kernel transform), kernel_matvec (fused and
// streamed by tiles, K never stored), batched_gram (stack or sum).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <vector>

#include "ntkit/cpu_ops.hpp"
#include "ntkit/gemm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ntkit {
namespace cpu {

index_t default_block_rows(int /*itemsize*/) { return 256; }
// 256 x bc tile of T ~ 1 MiB: stays in the (2 MiB/core) L2 between the dot,
// transform and multiply passes.
index_t default_block_cols(int itemsize) { return itemsize == 4 ? 1024 : 512; }

namespace {

template <class T>
void row_sqnorms(const T* X, index_t n, index_t d, T* out) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
    for (index_t i = 0; i < n; ++i) {
        const T* x = X + i * d;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (index_t k = 0; k < d; ++k) s += x[k] * x[k];
        out[i] = s;
    }
}

// In place: C[i][j] <- k(C[i][j], sx[i], sz[j]) on a rows x cols tile whose rows are
// the rows Xt[i*d...] and columns the rows Zt[j*d...]. Stationary kernels apply the
// cancellation guard (see kernels.hpp): one vectorised counting pass, and the rare
// near-duplicate entries are recomputed from differences after the transform.
template <class T, int KID>
inline void transform_rows(T* C, index_t ldc, index_t r_begin, index_t r_end, index_t cols,
                           const T* sx, const T* sz, const KConst<T>& kc, const T* Xt,
                           const T* Zt, index_t d) {
    if constexpr (KID == K_LINEAR) return;
    std::vector<index_t> fix;
    std::vector<T> gaps;
    const T g = guard_factor<T>(d);
    const T tau = T(0.5) * angle_guard<T>(1), kappa = angle_guard<T>(1) / angle_guard<T>(d);
    for (index_t i = r_begin; i < r_end; ++i) {
        T* row = C + i * ldc;
        const T s = sx[i];
        int cnt = 0;
        if constexpr (is_stationary<KID>::value) {
#pragma omp simd reduction(+ : cnt)
            for (index_t j = 0; j < cols; ++j) cnt += (s + sz[j] - T(2) * row[j] <= g * (s + sz[j]));
            if (cnt) {
                fix.clear();
                for (index_t j = 0; j < cols; ++j)
                    if (s + sz[j] - T(2) * row[j] <= g * (s + sz[j])) fix.push_back(j);
            }
        } else if constexpr (is_angular<KID>::value) {
            // Two stages (kernels.hpp): arccos for every pair, recording the smallest gap of each;
            // the pairs whose angle came near 0 or pi again from their rows.
            gaps.resize(cols);
            T* gp = gaps.data();
#pragma omp simd
            for (index_t j = 0; j < cols; ++j) row[j] = keval_arccos<KID>(kc, row[j], s, sz[j], false, gp[j], kappa);
#pragma omp simd reduction(+ : cnt)
            for (index_t j = 0; j < cols; ++j) cnt += gp[j] <= tau && sz[j] > T(0);
            if (cnt && s > T(0))  // (a zero row keeps the first stage)
                for (index_t j = 0; j < cols; ++j)
                    if (gp[j] <= tau && sz[j] > T(0)) {
                        const T* x = Xt + i * d;
                        const T* z = Zt + j * d;
                        T dot = 0, lo, hi;  // (the inner product again: the GEMM's was transformed in place)
                        for (index_t k = 0; k < d; ++k) dot += x[k] * z[k];
                        angle_gaps_exact(x, z, d, lo, hi);
                        row[j] = keval_angular<KID>(kc, dot, s, sz[j], lo, hi);
                    }
            continue;
        }
#pragma omp simd
        for (index_t j = 0; j < cols; ++j) row[j] = keval<KID>(kc, row[j], s, sz[j]);
        if constexpr (is_stationary<KID>::value) {
            if (cnt)
                for (index_t j : fix) row[j] = keval_d2<KID>(kc, exact_sqdist(Xt + i * d, Zt + j * d, d));
        }
    }
}

// Mirror the strictly upper triangle into the lower one (blocked transpose).
template <class T>
void mirror_upper_to_lower(T* C, index_t n) {
    const index_t B = 64;
    const index_t nb = (n + B - 1) / B;
#pragma omp parallel for schedule(dynamic, 1) if (n > 256)
    for (index_t bi = 0; bi < nb; ++bi) {
        const index_t i0 = bi * B, i1 = std::min(n, i0 + B);
        for (index_t j0 = 0; j0 <= i0; j0 += B) {
            const index_t j1 = std::min(n, j0 + B);
            for (index_t i = i0; i < i1; ++i)
                for (index_t j = j0; j < std::min(j1, i); ++j) C[i * n + j] = C[j * n + i];
        }
    }
}

struct TileList {
    std::vector<index_t> r0, c0;
};

inline TileList make_tiles(index_t n, index_t m, index_t TR, index_t TC, bool upper_only) {
    TileList t;
    for (index_t i = 0; i < n; i += TR)
        for (index_t j = 0; j < m; j += TC) {
            if (upper_only && j + TC <= i) continue;  // block entirely below diagonal
            t.r0.push_back(i);
            t.c0.push_back(j);
        }
    return t;
}

template <class T>
struct GramRunner {
    template <int KID>
    static void run(const T* X, index_t n, const T* Z, index_t m, index_t d, bool sym,
                    const KConst<T>& kc, T* out) {
        if (n == 0 || m == 0) return;
        std::vector<T> sxv(n), szv(sym ? 0 : m);
        row_sqnorms(X, n, d, sxv.data());
        if (!sym) row_sqnorms(Z, m, d, szv.data());
        const T* sx = sxv.data();
        const T* sz = sym ? sx : szv.data();

        const Tuning& tu = tuning();
        const bool blas = has_blas() && d > 0;
        if (d == 0) {
            std::fill(out, out + n * m, T(0));
#pragma omp parallel for schedule(static) if (n > 64)
            for (index_t i = 0; i < n; ++i)
                transform_rows<T, KID>(out, m, i, i + 1, m, sx, sz, kc, X, Z, d);
        } else if (blas && tu.gram_mode == 2 && !sym) {
            gemm_nt<T>(n, m, d, X, d, Z, d, T(0), out, m);
#pragma omp parallel for schedule(static)
            for (index_t i = 0; i < n; ++i) transform_rows<T, KID>(out, m, i, i + 1, m, sx, sz, kc, X, Z, d);
        } else if (blas && tu.gram_mode != 1) {
            // Sequential tiles: BLAS (multi-threaded by itself) computes a tile of
            // dots straight into the output, then OpenMP applies the transform while
            // the tile is still in cache. Symmetric: upper block triangle only.
            const index_t TB = std::max<index_t>(64, tu.gram_tile);
            TileList tl = make_tiles(n, m, TB, TB, sym);
            for (std::size_t t = 0; t < tl.r0.size(); ++t) {
                const index_t i0 = tl.r0[t], j0 = tl.c0[t];
                const index_t rows = std::min(TB, n - i0), cols = std::min(TB, m - j0);
                T* C = out + i0 * m + j0;
                gemm_nt<T>(rows, cols, d, X + i0 * d, d, Z + j0 * d, d, T(0), C, m);
#pragma omp parallel for schedule(static)
                for (index_t i = 0; i < rows; ++i)
                    transform_rows<T, KID>(C, m, i, i + 1, cols, sx + i0, sz + j0, kc, X + i0 * d,
                                           Z + j0 * d, d);
            }
        } else {
            // OpenMP over tiles, serial GEMM per tile (builtin, or BLAS per thread).
            const index_t TB = blas ? std::max<index_t>(64, tu.gram_tile) : 256;
            TileList tl = make_tiles(n, m, TB, TB, sym);
            const index_t nt = index_t(tl.r0.size());
            blas_threads_local_t btl = blas ? blas_threads_local() : nullptr;
#pragma omp parallel
            {
            const int prev_threads = btl ? btl(1) : 0;  // single-threaded BLAS per worker
#pragma omp for schedule(dynamic, 1)
            for (index_t t = 0; t < nt; ++t) {
                const index_t i0 = tl.r0[t], j0 = tl.c0[t];
                const index_t rows = std::min(TB, n - i0), cols = std::min(TB, m - j0);
                T* C = out + i0 * m + j0;
                if (blas)
                    gemm_nt<T>(rows, cols, d, X + i0 * d, d, Z + j0 * d, d, T(0), C, m);
                else
                    gemm_nt_builtin<T>(rows, cols, d, X + i0 * d, d, Z + j0 * d, d, T(0), C, m);
                transform_rows<T, KID>(C, m, 0, rows, cols, sx + i0, sz + j0, kc, X + i0 * d, Z + j0 * d,
                                       d);
            }
            if (btl) btl(prev_threads);
            }
        }
        if (sym) {
            mirror_upper_to_lower(out, n);
            for (index_t i = 0; i < n; ++i) out[i * n + i] = keval_diag<KID>(kc, sx[i]);
        }
    }
};

template <class T>
struct MatvecRunner {
    template <int KID>
    static void run(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                    index_t t, const KConst<T>& kc, T* out, index_t br, index_t bc, bool sym) {
        std::fill(out, out + n * t, T(0));
        if (n == 0 || m == 0 || t == 0) return;
        std::vector<T> sxv(n), szv(sym ? 0 : m);
        row_sqnorms(X, n, d, sxv.data());
        if (!sym) row_sqnorms(Z, m, d, szv.data());
        const T* sx = sxv.data();
        const T* sz = sym ? sx : szv.data();
        br = std::max<index_t>(1, std::min(br, n));
        bc = std::max<index_t>(1, std::min(bc, m));
        const index_t npanels = (n + br - 1) / br;
        const bool use_blas = has_blas() && tuning().matvec_blas != 0;
        // An exception leaving an OpenMP region calls std::terminate: a scratch allocation that
        // fails (large user block sizes) is flagged and thrown as std::bad_alloc after the region.
        std::atomic<bool> oom{false};
#pragma omp parallel
        {
            // Per-thread scratch: one tile of K plus the transposed v tile.
            std::vector<T> tile, vt;
            try {
                tile.resize(static_cast<std::size_t>(br * bc));
                vt.resize(static_cast<std::size_t>(t > 1 ? t * bc : 0));
            } catch (const std::exception&) {
                oom.store(true);
            }
            // BLAS is called from every OpenMP thread: keep it single-threaded here
            // (thread-local setting) to avoid 2x oversubscription.
            blas_threads_local_t tl = use_blas ? blas_threads_local() : nullptr;
            const int prev_threads = tl ? tl(1) : 0;
#pragma omp for schedule(dynamic, 1)
            for (index_t p = 0; p < npanels; ++p) {
                if (oom.load(std::memory_order_relaxed)) continue;
                const index_t i0 = p * br, rows = std::min(br, n - i0);
                T* o = out + i0 * t;
                for (index_t j0 = 0; j0 < m; j0 += bc) {
                    const index_t cols = std::min(bc, m - j0);
                    T* C = tile.data();
                    if (d == 0)
                        std::fill(C, C + rows * cols, T(0));
                    else if (use_blas)
                        gemm_nt<T>(rows, cols, d, X + i0 * d, d, Z + j0 * d, d, T(0), C, cols);
                    else
                        gemm_nt_builtin<T>(rows, cols, d, X + i0 * d, d, Z + j0 * d, d, T(0), C,
                                           cols);
                    transform_rows<T, KID>(C, cols, 0, rows, cols, sx + i0, sz + j0, kc, X + i0 * d,
                                           Z + j0 * d, d);
                    if (sym) {  // K(X, X): the exact diagonal, not the rounded expansion
                        const index_t lo = std::max(i0, j0), hi = std::min(i0 + rows, j0 + cols);
                        for (index_t g = lo; g < hi; ++g)
                            C[(g - i0) * cols + (g - j0)] = keval_diag<KID>(kc, sx[g]);
                    }
                    if (t == 1) {
                        const T* vv = v + j0;
                        for (index_t i = 0; i < rows; ++i) {
                            const T* row = C + i * cols;
                            T s = 0;
#pragma omp simd reduction(+ : s)
                            for (index_t j = 0; j < cols; ++j) s += row[j] * vv[j];
                            o[i] += s;
                        }
                    } else {
                        T* vtp = vt.data();
                        for (index_t j = 0; j < cols; ++j)
                            for (index_t c = 0; c < t; ++c) vtp[c * cols + j] = v[(j0 + j) * t + c];
                        for (index_t i = 0; i < rows; ++i) {
                            const T* row = C + i * cols;
                            for (index_t c = 0; c < t; ++c) {
                                const T* vc = vtp + c * cols;
                                T s = 0;
#pragma omp simd reduction(+ : s)
                                for (index_t j = 0; j < cols; ++j) s += row[j] * vc[j];
                                o[i * t + c] += s;
                            }
                        }
                    }
                }
            }
            if (tl) tl(prev_threads);
        }
        if (oom.load()) throw std::bad_alloc();
    }
};

}  // namespace

template <class T>
void gram(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric,
          KernelId kid, const KernelParams& p, T* out) {
    validate_params(kid, p);
    NTKIT_CHECK(!symmetric || (n == m), "symmetric gram needs n == m");
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<GramRunner<T>>(kid, X, n, symmetric ? X : Z, m, d, symmetric, kc, out);
}

template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                   index_t t, KernelId kid, const KernelParams& p, T* out, index_t block_rows,
                   index_t block_cols, bool symmetric) {
    validate_params(kid, p);
    NTKIT_CHECK(!symmetric || (n == m), "symmetric kernel_matvec needs n == m");
    if (block_rows <= 0) block_rows = default_block_rows(int(sizeof(T)));
    if (block_cols <= 0) block_cols = default_block_cols(int(sizeof(T)));
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<MatvecRunner<T>>(kid, X, n, symmetric ? X : Z, m, d, v, t, kc, out, block_rows,
                                     block_cols, symmetric);
}

template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                  bool symmetric, bool reduce_sum, T* out) {
    if (symmetric) {
        B = A;
        m = n;
    }
    const index_t nm = n * m;
    if (nm == 0) return;
    if (b == 0 || p == 0) {
        std::fill(out, out + (reduce_sum ? nm : b * nm), T(0));
        return;
    }
    const bool blas = has_blas();
    // With BLAS, a rectangular product is one call per batch entry (BLAS threads and blocks it
    // better than our tiles); the symmetric one uses the upper triangle of 2 x 2 half-size tiles
    // (3/4 of the work) or of gram_tile tiles when n is large.
    index_t TB = 256;
    if (blas)
        TB = symmetric ? std::max<index_t>(std::max<index_t>(64, tuning().gram_tile), (n + 1) / 2)
                       : std::max(n, m);
    TileList tl = make_tiles(n, m, TB, TB, symmetric);
    const index_t nt = index_t(tl.r0.size());
    auto do_tile = [&](index_t t, bool builtin) {
        const index_t i0 = tl.r0[t], j0 = tl.c0[t];
        const index_t rows = std::min(TB, n - i0), cols = std::min(TB, m - j0);
        for (index_t s = 0; s < b; ++s) {
            const T* As = A + s * n * p + i0 * p;
            const T* Bs = B + s * m * p + j0 * p;
            T* C = out + (reduce_sum ? 0 : s * nm) + i0 * m + j0;
            const T beta = (reduce_sum && s > 0) ? T(1) : T(0);  // accumulate into one output
            if (builtin)
                gemm_nt_builtin<T>(rows, cols, p, As, p, Bs, p, beta, C, m);
            else
                gemm_nt<T>(rows, cols, p, As, p, Bs, p, beta, C, m);
        }
    };
    if (blas) {
        for (index_t t = 0; t < nt; ++t) do_tile(t, false);  // BLAS threads inside
    } else {
#pragma omp parallel for schedule(dynamic, 1)
        for (index_t t = 0; t < nt; ++t) do_tile(t, true);
    }
    if (symmetric) {
        if (reduce_sum)
            mirror_upper_to_lower(out, n);
        else
            for (index_t s = 0; s < b; ++s) mirror_upper_to_lower(out + s * nm, n);
    }
}

#define NTKIT_INSTANTIATE(T)                                                                   \
    template void gram<T>(const T*, index_t, const T*, index_t, index_t, bool, KernelId,      \
                          const KernelParams&, T*);                                            \
    template void kernel_matvec<T>(const T*, index_t, const T*, index_t, index_t, const T*,   \
                                   index_t, KernelId, const KernelParams&, T*, index_t,        \
                                   index_t, bool);                                             \
    template void batched_gram<T>(const T*, index_t, index_t, const T*, index_t, index_t,     \
                                  bool, bool, T*);
NTKIT_INSTANTIATE(float)
NTKIT_INSTANTIATE(double)
#undef NTKIT_INSTANTIATE

}  // namespace cpu
}  // namespace ntkit
