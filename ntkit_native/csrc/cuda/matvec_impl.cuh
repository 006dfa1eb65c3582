// Fused K(X, Z) @ v on device pointers: K is never written to memory.
// (Included by matvec_f32.cu and matvec_f64.cu: one instantiation per translation unit.)
//
// Block: 16 x 16 threads; tile TM x TN = 16 RM x 16 RN; each thread owns RM rows
// x RN columns of the tile (register tiling) in groups of W = 16 / sizeof(T)
// consecutive words (16-byte shared-memory operands, conflict-free).
//   float:  RM = RN = 8 (128 x 128 tiles) for one right-hand side,
//           RM = 4, RN = 8 for four;
//   double: RM = RN = 4 (64 x 64 tiles).
// A block owns a panel of TM rows and walks over the column tiles of its column
// chunk: Z tile (k-major, chunks of 32 features) + its squared norms + v in shared
// memory; the X panel stays in shared memory for the whole kernel when
// d <= 32 (else it is re-staged per feature chunk). Per tile: dot products in
// registers, then the kernel transform (kernels.hpp formulas; squared norms
// precomputed; cancellation guard; exact k(x, x) on the diagonal when symmetric)
// and the product with v, all in registers.
//
// RBF has a dedicated epilogue: with c = 1 / (2 l^2) (float: log2(e) / (2 l^2))
// and scaled norms a_i = c |x_i|^2, b_j = c |z_j|^2, the exponent is
// fma(2c, <x,z>, -(a_i + b_j)), then exp (double: the same vectorisable exp as
// the CPU path) or 2^x (float: the ex2.approx.ftz instruction, relative error
// ~2^-22, below the float32 rounding of the exponent itself; results below
// 2^-126 flush to 0). Per pair: d FMAs + 6 instructions + one MUFU.EX2 (float).
//
// Right-hand sides: t = 1 -> one kernel (Q = 1); t > 1 -> groups of Q = 4 columns
// on gridDim.z, each group recomputing the kernel values (documented cost).
// Reductions: per thread over its RN columns of a tile (a tile partial, then added
// to the running row sum: two-level in float), across tiles in registers, across
// the 16 threads of a row by a fixed shuffle tree; with several column chunks
// (few row panels) the chunk partials are summed in chunk order by a second
// kernel. The split depends on the sizes and the SM count only: results are
// deterministic (bitwise reproducible on one GPU model).
#pragma once
#include <algorithm>

#include "common.cuh"

namespace ntkit {
namespace cuda {

using detail::as_stream;
using detail::check_launch;
using detail::kMaxGridYZ;
using detail::ll;
using detail::Temp;

namespace {

constexpr int MV_BK = 32;  // features per shared-memory chunk

template <class T, int Q>
struct MvShape;
template <>
struct MvShape<float, 1> {
    static constexpr int RM = 8, RN = 4;
};
template <>
struct MvShape<float, 4> {
    static constexpr int RM = 4, RN = 4;
};
template <>
struct MvShape<double, 1> {
    static constexpr int RM = 4, RN = 4;
};
template <>
struct MvShape<double, 4> {
    static constexpr int RM = 2, RN = 4;
};

template <class T>
__host__ __device__ constexpr int vecw() { return 16 / int(sizeof(T)); }

// local index of a thread's j-th row / column (t = threadIdx.y / threadIdx.x)
template <class T>
__device__ __forceinline__ int mv_pos(int j, int t) {
    constexpr int W = vecw<T>();
    return (j / W) * (16 * W) + t * W + (j % W);
}

template <int R>
__device__ __forceinline__ void lds_vec(float (&r)[R], const float* row, int t) {
#pragma unroll
    for (int g = 0; g < R / 4; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(row + g * 64 + 4 * t);
        r[4 * g] = v.x;
        r[4 * g + 1] = v.y;
        r[4 * g + 2] = v.z;
        r[4 * g + 3] = v.w;
    }
}
template <int R>
__device__ __forceinline__ void lds_vec(double (&r)[R], const double* row, int t) {
#pragma unroll
    for (int g = 0; g < R / 2; ++g) {
        const double2 v = *reinterpret_cast<const double2*>(row + g * 32 + 2 * t);
        r[2 * g] = v.x;
        r[2 * g + 1] = v.y;
    }
}

// exp in the RBF epilogue's units (see the file comment)
__device__ __forceinline__ float rbf_exp(float x) {  // 2^x, one MUFU.EX2 (2^x < 2^-126 flushes to 0)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ double rbf_exp(double x) { return vexp(x); }

template <class T>
inline T rbf_scale(const KernelParams& p) {
    const double c = 1.0 / (2.0 * p.lengthscale * p.lengthscale);
    return sizeof(T) == 4 ? T(c * 1.4426950408889634) : T(c);
}

// Load rows [row0, row0 + rows) x features [k0, k0 + dk) of A (lda = d) into
// S[kk][r] (k-major), zero beyond nrows.
template <class T, int LD>
__device__ __forceinline__ void stage(T (*S)[LD], const T* __restrict__ A, ll nrows, ll d, ll row0, int rows, ll k0,
                                      int dk, int tid) {
    const int total = rows * dk;
    for (int e = tid; e < total; e += 256) {
        const int r = e / dk, kk = e - r * dk;
        const ll g = row0 + r;
        S[kk][r] = g < nrows ? A[g * d + k0 + kk] : T(0);
    }
}

template <class T, int KID, int Q>
__global__ void __launch_bounds__(256, 2)
    fused_matvec_kernel(const T* __restrict__ X, const T* __restrict__ Z, const T* __restrict__ sx,
                        const T* __restrict__ sz, const T* __restrict__ v, T* __restrict__ dst, ll n, ll m, ll d,
                        ll t, ll q_off, ll tiles_per_chunk, KConst<T> kc, T rbf_c, bool sym) {
    constexpr int RM = MvShape<T, Q>::RM, RN = MvShape<T, Q>::RN;
    constexpr int TM = 16 * RM, TN = 16 * RN;
    constexpr int PAD = vecw<T>();  // keeps each shared row 16-byte aligned
    constexpr bool FAST = KID == K_RBF;
    __shared__ __align__(16) T Xs[MV_BK][TM + PAD];
    __shared__ __align__(16) T Zs[MV_BK][TN + PAD];
    __shared__ __align__(16) T szs[TN];
    __shared__ __align__(16) T vs[Q][TN];

    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const ll row0 = ll(blockIdx.x) * TM;
    const ll q0 = q_off + ll(blockIdx.z) * Q;
    const ll ntiles = (m + TN - 1) / TN;
    const ll ct0 = ll(blockIdx.y) * tiles_per_chunk;
    const ll ct1 = ct0 + tiles_per_chunk < ntiles ? ct0 + tiles_per_chunk : ntiles;
    T* out = dst + ll(blockIdx.y) * n * t;  // this chunk's partial (the output itself with one chunk)
    const bool x_resident = d <= MV_BK;
    const T g = guard_factor<T>(d);
    const T two_c = rbf_c + rbf_c;

    T rs[RM];  // row squared norms (scaled by rbf_c for RBF)
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const ll r = row0 + mv_pos<T>(i, ty);
        const T s = r < n ? sx[r] : T(0);
        rs[i] = FAST ? s * rbf_c : s;
    }
    if (x_resident) stage<T, TM + PAD>(Xs, X, n, d, row0, TM, 0, int(d), tid);

    T rowsum[RM][Q];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int q = 0; q < Q; ++q) rowsum[i][q] = T(0);

    for (ll ct = ct0; ct < ct1; ++ct) {
        const ll col0 = ct * TN;
        __syncthreads();  // the previous tile's readers are done
        for (int c = tid; c < TN; c += 256) {
            const ll gc = col0 + c;
            const bool in = gc < m;
            const T s = in ? sz[gc] : T(0);
            szs[c] = FAST ? s * rbf_c : s;
#pragma unroll
            for (int q = 0; q < Q; ++q) vs[q][c] = (in && q0 + q < t) ? v[gc * t + q0 + q] : T(0);
        }
        T acc[RM][RN];
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
            for (int j = 0; j < RN; ++j) acc[i][j] = T(0);
        for (ll k0 = 0; k0 < d; k0 += MV_BK) {
            const int dk = int(d - k0 < MV_BK ? d - k0 : MV_BK);
            if (k0 > 0) __syncthreads();
            if (!x_resident) stage<T, TM + PAD>(Xs, X, n, d, row0, TM, k0, dk, tid);
            stage<T, TN + PAD>(Zs, Z, m, d, col0, TN, k0, dk, tid);
            __syncthreads();
#pragma unroll 4
            for (int kk = 0; kk < dk; ++kk) {
                T a[RM], b[RN];
                lds_vec<RM>(a, Xs[kk], ty);
                lds_vec<RN>(b, Zs[kk], tx);
#pragma unroll
                for (int i = 0; i < RM; ++i)
#pragma unroll
                    for (int j = 0; j < RN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
            }
        }
        if (d == 0) __syncthreads();  // szs / vs visible (no feature chunk above)

        // tile rows and columns overlap the diagonal: exact k(x, x) there (symmetric only)
        const bool diag_tile = sym && row0 < col0 + TN && col0 < row0 + TM;
        T zb[RN], vb[Q][RN];  // this thread's column norms and right-hand sides
        lds_vec<RN>(zb, szs, tx);
#pragma unroll
        for (int q = 0; q < Q; ++q) lds_vec<RN>(vb[q], vs[q], tx);
        if (FAST) {
            bool near = false;
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < RN; ++j) {
                    const T s = rs[i] + zb[j];
                    const T e = fma(two_c, acc[i][j], -s);  // -c |x - z|^2 by expansion
                    near = near | (fma(g, s, e) >= T(0));   // guard: |x-z|^2 <= g (|x|^2 + |z|^2)
                    acc[i][j] = e;
                }
            // Every exponent e > 0 (a negative |x - z|^2 by rounding) fails the guard, so after
            // this fix-up all exponents are <= 0: no clamp is needed below.
            if (near) {  // rare: near-duplicates lost their digits -> exact differences
#pragma unroll
                for (int i = 0; i < RM; ++i)
#pragma unroll
                    for (int j = 0; j < RN; ++j) {
                        if (fma(g, rs[i] + zb[j], acc[i][j]) >= T(0)) {
                            ll r = row0 + mv_pos<T>(i, ty), c = col0 + mv_pos<T>(j, tx);
                            r = r < n ? r : n - 1;
                            c = c < m ? c : m - 1;
                            acc[i][j] = -rbf_c * exact_sqdist(X + r * d, Z + c * d, d);
                        }
                    }
            }
            if (diag_tile) {  // k(x, x) = exp(0) = 1 exactly on the diagonal (symmetric only)
                const int dd = int(col0 - row0);  // |col0 - row0| < max(TM, TN) in a diagonal tile
#pragma unroll
                for (int i = 0; i < RM; ++i)
#pragma unroll
                    for (int j = 0; j < RN; ++j)
                        if (mv_pos<T>(i, ty) - mv_pos<T>(j, tx) == dd) acc[i][j] = T(0);
            }
#pragma unroll
            for (int i = 0; i < RM; ++i) {
                T part[Q];
#pragma unroll
                for (int q = 0; q < Q; ++q) part[q] = T(0);
#pragma unroll
                for (int j = 0; j < RN; ++j) {
                    const T kv = rbf_exp(acc[i][j]);
#pragma unroll
                    for (int q = 0; q < Q; ++q) part[q] = fma(kv, vb[q][j], part[q]);
                }
#pragma unroll
                for (int q = 0; q < Q; ++q) rowsum[i][q] += part[q];
            }
        } else {
#pragma unroll
            for (int i = 0; i < RM; ++i) {
                T part[Q];
#pragma unroll
                for (int q = 0; q < Q; ++q) part[q] = T(0);
                const ll r = row0 + mv_pos<T>(i, ty);
                const ll rr = r < n ? r : n - 1;
#pragma unroll
                for (int j = 0; j < RN; ++j) {
                    const ll c = col0 + mv_pos<T>(j, tx);
                    const ll cc = c < m ? c : m - 1;
                    T kv = (diag_tile && r == c)
                               ? keval_diag<KID>(kc, rs[i])
                               : keval_guarded<KID>(kc, acc[i][j], rs[i], zb[j], X + rr * d, Z + cc * d, d, g);
                    kv = c < m ? kv : T(0);  // padding columns: never inf * 0
#pragma unroll
                    for (int q = 0; q < Q; ++q) part[q] = fma(kv, vb[q][j], part[q]);
                }
#pragma unroll
                for (int q = 0; q < Q; ++q) rowsum[i][q] += part[q];
            }
        }
    }
    // the 16 threads of a row group (same threadIdx.y) are 16 consecutive lanes
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const ll r = row0 + mv_pos<T>(i, ty);
#pragma unroll
        for (int q = 0; q < Q; ++q) {
            T s = rowsum[i][q];
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off, 16);
            if (tx == 0 && r < n && q0 + q < t) out[r * t + q0 + q] = s;
        }
    }
}

template <class T>
__global__ void sum_partials_kernel(const T* __restrict__ partial, ll chunks, ll count, T* __restrict__ out) {
    for (ll i = ll(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += ll(gridDim.x) * blockDim.x) {
        T s = 0;
        for (ll c = 0; c < chunks; ++c) s += partial[c * count + i];
        out[i] = s;
    }
}

template <class T>
struct MatvecDevice {
    template <int KID, int Q>
    static void launch(const T* X, ll n, const T* Z, ll m, ll d, const T* v, ll t, const KConst<T>& kc, T c,
                       T* out, bool sym, cudaStream_t st, Temp& tmp, const T* sx, const T* sz) {
        constexpr int TM = 16 * MvShape<T, Q>::RM, TN = 16 * MvShape<T, Q>::RN;
        const ll panels = (n + TM - 1) / TM;
        const ll ctiles = (m + TN - 1) / TN;
        // Enough blocks for ~4 waves at 2 blocks per SM: split the columns into chunks only
        // when there are few row panels.
        const ll target = 8LL * detail::sm_count();
        ll chunks = std::max<ll>(1, std::min<ll>(ctiles, (target + panels - 1) / panels));
        chunks = std::min<ll>(chunks, kMaxGridYZ);
        const ll per = (ctiles + chunks - 1) / chunks;
        chunks = (ctiles + per - 1) / per;
        if (panels > 0x7fffffffLL) throw std::runtime_error("ntkit cuda: too many rows for kernel_matvec");
        T* dst = chunks > 1 ? tmp.alloc<T>(chunks * n * t) : out;
        const ll groups = (t + Q - 1) / Q;
        for (ll g0 = 0; g0 < groups; g0 += kMaxGridYZ) {
            const ll gn = std::min<ll>(kMaxGridYZ, groups - g0);
            fused_matvec_kernel<T, KID, Q><<<dim3(unsigned(panels), unsigned(chunks), unsigned(gn)), dim3(16, 16), 0,
                                             st>>>(X, Z, sx, sz, v, dst, n, m, d, t, g0 * Q, per, kc, c, sym);
            check_launch();
        }
        if (chunks > 1) {
            const ll count = n * t;
            const ll blocks = std::min<ll>((count + 255) / 256, 65535);
            sum_partials_kernel<T><<<unsigned(blocks), 256, 0, st>>>(dst, chunks, count, out);
            check_launch();
        }
    }

    template <int KID>
    static void run(const T* X, ll n, const T* Z, ll m, ll d, const T* v, ll t, const KConst<T>& kc, T c, T* out,
                    bool sym, cudaStream_t st, Scratch* scratch) {
        Temp tmp(scratch, st);
        T* sx = tmp.alloc<T>(n);
        T* sz = sym ? sx : tmp.alloc<T>(m);
        detail::device_sqnorms<T>(X, n, d, sx, st);
        if (!sym) detail::device_sqnorms<T>(Z, m, d, sz, st);
        if (t == 1)
            launch<KID, 1>(X, n, Z, m, d, v, t, kc, c, out, sym, st, tmp, sx, sz);
        else
            launch<KID, 4>(X, n, Z, m, d, v, t, kc, c, out, sym, st, tmp, sx, sz);
    }
};

}  // namespace

template <class T>
void kernel_matvec_device(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v, index_t t,
                          KernelId kid, const KernelParams& p, T* out, bool symmetric, void* stream,
                          Scratch* scratch) {
    validate_params(kid, p);
    NTKIT_CHECK(n >= 0 && m >= 0 && d >= 0 && t >= 0, "negative size");
    NTKIT_CHECK(!symmetric || n == m, "symmetric kernel_matvec needs n == m");
    cudaStream_t st = as_stream(stream);
    if (n == 0 || t == 0) return;
    if (m == 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * size_t(n) * size_t(t), st));
        return;
    }
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<MatvecDevice<T>>(kid, X, ll(n), symmetric ? X : Z, ll(m), ll(d), v, ll(t), kc, rbf_scale<T>(p),
                                     out, symmetric, st, scratch);
}

}  // namespace cuda
}  // namespace ntkit

#define NTKIT_MATVEC_INSTANTIATE(T)                                                                         \
    template void ntkit::cuda::kernel_matvec_device<T>(const T*, ntkit::index_t, const T*, ntkit::index_t,  \
                                                       ntkit::index_t, const T*, ntkit::index_t,            \
                                                       ntkit::KernelId, const ntkit::KernelParams&, T*,     \
                                                       bool, void*, ntkit::cuda::Scratch*);
