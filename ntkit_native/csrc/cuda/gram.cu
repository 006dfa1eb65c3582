// Stream-ordered gram and batched_gram on device pointers.
//
// With cuBLAS (default when built with it): the inner products come from one
// GEMM (SYRK for the symmetric gram: one triangle) written straight into the
// output, then one pass applies the kernel transform, reading and writing each
// entry once (squared norms precomputed; the cancellation guard of kernels.hpp
// recomputes the rare near-duplicate distances from differences). The
// symmetric case transforms the upper triangle in 32 x 32 tiles and writes each
// tile's transpose into the lower triangle from shared memory in the same pass
// (exactly symmetric output, exact diagonal k(x, x)).
//
// Without cuBLAS: the extension's own tiled GEMM with the transform fused into
// its epilogue (64 x 64 output tile per block of 16 x 16 threads, 4 x 4 outputs
// per thread, k-steps of 16; fp32 accumulation for float, fp64 for double).
// Never TF32. Formulas come from ntkit/kernels.hpp.
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

// ------------------------------------------------------------ transform pass
// out[r][c] <- k(out[r][c] = <x_r, z_c>, |x_r|^2, |z_c|^2) in place; rows on
// gridDim.y (grid-stride), 4 columns per thread strided by blockDim.x.
constexpr int TF_THREADS = 256, TF_COLS = 4;

template <class T, int KID>
__global__ void transform_kernel(T* __restrict__ out, ll n, ll m, const T* __restrict__ sx,
                                 const T* __restrict__ sz, const T* __restrict__ X, const T* __restrict__ Z,
                                 ll d, KConst<T> kc, T g) {
    const ll span = ll(TF_THREADS) * TF_COLS;
    for (ll r = blockIdx.y; r < n; r += gridDim.y) {
        const T sxr = sx[r];
        T* row = out + r * m;
        for (ll base = ll(blockIdx.x) * span; base < m; base += ll(gridDim.x) * span) {
#pragma unroll
            for (int j = 0; j < TF_COLS; ++j) {
                const ll c = base + threadIdx.x + ll(j) * TF_THREADS;
                if (c < m) row[c] = keval_guarded<KID>(kc, row[c], sxr, sz[c], X + r * d, Z + c * d, d, g);
            }
        }
    }
}

template <class T, int KID>
void launch_transform(T* out, ll n, ll m, const T* sx, const T* sz, const T* X, const T* Z, ll d,
                      const KConst<T>& kc, cudaStream_t st) {
    if (n <= 0 || m <= 0) return;
    const ll span = ll(TF_THREADS) * TF_COLS;
    const ll gx = std::min<ll>((m + span - 1) / span, 1024);
    const ll gy = std::min<ll>(n, kMaxGridYZ);
    transform_kernel<T, KID><<<dim3(unsigned(gx), unsigned(gy)), TF_THREADS, 0, st>>>(out, n, m, sx, sz, X, Z, d,
                                                                                     kc, guard_factor<T>(d));
    check_launch();
}

// ------------------------------------------------------------ symmetric finish
// One block per 32 x 32 tile of the upper block triangle (bi <= bj): reads the
// tile's upper entries (c > r; c == r too unless exact_diag), optionally applies
// the transform (TRANSFORM) and writes them back, sets the exact diagonal
// k(x, x) (exact_diag), and writes the transpose into the lower triangle from
// shared memory (coalesced on both sides). Entries below the diagonal are never
// read (SYRK leaves them unwritten). blockIdx.z: one of several n x n matrices.
template <class T, int KID, bool TRANSFORM>
__global__ void sym_finish_kernel(T* __restrict__ out, ll n, ll batch_stride, const T* __restrict__ sx,
                                  const T* __restrict__ X, ll d, KConst<T> kc, T g, bool exact_diag) {
    const ll bi = blockIdx.y, bj = blockIdx.x;
    if (bi > bj) return;
    out += ll(blockIdx.z) * batch_stride;
    __shared__ T tile[32][33];
    const ll r0 = bi * 32, c0 = bj * 32;
    const int tx = threadIdx.x;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const ll r = r0 + k, c = c0 + tx;
        T val = T(0);
        if (r < n && c < n && c >= r) {
            if (c == r && exact_diag) {
                val = keval_diag<KID>(kc, sx[r]);
                out[r * n + c] = val;
            } else {
                val = out[r * n + c];
                if (TRANSFORM) {
                    val = keval_guarded<KID>(kc, val, sx[r], sx[c], X + r * d, X + c * d, d, g);
                    out[r * n + c] = val;
                }
            }
        }
        tile[k][tx] = val;
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        if (bi < bj) {  // lower tile (rows of bj, columns of bi) = transpose of this one
            const ll r = c0 + k, c = r0 + tx;
            if (r < n && c < n) out[r * n + c] = tile[tx][k];
        } else {  // diagonal tile: its strictly lower part
            const ll r = r0 + k, c = r0 + tx;
            if (r < n && c < r) out[r * n + c] = tile[tx][k];
        }
    }
}

template <class T, int KID, bool TRANSFORM>
void launch_sym_finish(T* out, ll n, ll batch, ll batch_stride, const T* sx, const T* X, ll d,
                       const KConst<T>& kc, bool exact_diag, cudaStream_t st) {
    if (n <= 0 || batch <= 0) return;
    const ll tiles = (n + 31) / 32;
    if (tiles > kMaxGridYZ) throw std::runtime_error("ntkit cuda: symmetric output too large");
    for (ll z0 = 0; z0 < batch; z0 += kMaxGridYZ) {
        const ll zn = std::min<ll>(kMaxGridYZ, batch - z0);
        sym_finish_kernel<T, KID, TRANSFORM><<<dim3(unsigned(tiles), unsigned(tiles), unsigned(zn)), dim3(32, 8), 0,
                                               st>>>(out + z0 * batch_stride, n, batch_stride, sx, X, d, kc,
                                                     guard_factor<T>(d), exact_diag);
        check_launch();
    }
}

// ------------------------------------------------------------ pack for batched sums
// At[i][s * p + k] = A[s][i][k]: the b products of a sum become one GEMM with inner
// dimension b * p.
template <class T>
__global__ void pack_kernel(const T* __restrict__ A, ll b, ll n, ll p, T* __restrict__ At) {
    const ll total = b * n * p;
    for (ll e = ll(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += ll(gridDim.x) * blockDim.x) {
        const ll k = e % p, rest = e / p;
        const ll s = rest % b, i = rest / b;
        At[e] = A[(s * n + i) * p + k];
    }
}

template <class T>
void launch_pack(const T* A, ll b, ll n, ll p, T* At, cudaStream_t st) {
    const ll total = b * n * p;
    if (total <= 0) return;
    const ll blocks = std::min<ll>((total + 255) / 256, 65535);
    pack_kernel<T><<<unsigned(blocks), 256, 0, st>>>(A, b, n, p, At);
    check_launch();
}

// ------------------------------------------------------------ own tiled GEMM (no cuBLAS)
constexpr int TM = 64, TN = 64, BK = 16, TX = 16, TY = 16;
constexpr ll kMaxSlabRows = kMaxGridYZ * TM;  // rows per launch (row tiles on gridDim.y)

// Each thread owns 4 rows x 4 columns of the 64 x 64 tile, in groups of W =
// 16 / sizeof(T) consecutive words: local index (j / W) * 16 W + W t + j % W for
// t = threadIdx.x (columns) or threadIdx.y (rows): 16-byte operands, no bank
// conflicts, coalesced vector stores.
template <class T>
__device__ __forceinline__ int tsub(int j, int t) {
    constexpr int W = 16 / int(sizeof(T));
    return (j / W) * (16 * W) + t * W + (j % W);
}
template <class T>
__device__ __forceinline__ int trow(int i) { return tsub<T>(i, int(threadIdx.y)); }
template <class T>
__device__ __forceinline__ int tcol(int j) { return tsub<T>(j, int(threadIdx.x)); }

__device__ __forceinline__ void lds4(float (&r)[4], const float* row, int t) {
    const float4 v = *reinterpret_cast<const float4*>(row + 4 * t);
    r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
}
__device__ __forceinline__ void lds4(double (&r)[4], const double* row, int t) {
    const double2 v0 = *reinterpret_cast<const double2*>(row + 2 * t);
    const double2 v1 = *reinterpret_cast<const double2*>(row + 32 + 2 * t);
    r[0] = v0.x; r[1] = v0.y; r[2] = v1.x; r[3] = v1.y;
}

__device__ __forceinline__ void store_row4(float* __restrict__ row, ll col0, ll m, const float (&vals)[4]) {
    const ll c0 = col0 + 4 * ll(threadIdx.x);
    if ((m & 3) == 0 && c0 + 3 < m && (reinterpret_cast<size_t>(row) & 15) == 0) {
        __stcg(reinterpret_cast<float4*>(row + c0), make_float4(vals[0], vals[1], vals[2], vals[3]));
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (c0 + j < m) row[c0 + j] = vals[j];
    }
}
__device__ __forceinline__ void store_row4(double* __restrict__ row, ll col0, ll m, const double (&vals)[4]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const ll c0 = col0 + 32 * h + 2 * ll(threadIdx.x);
        if ((m & 1) == 0 && c0 + 1 < m && (reinterpret_cast<size_t>(row) & 15) == 0) {
            __stcg(reinterpret_cast<double2*>(row + c0), make_double2(vals[2 * h], vals[2 * h + 1]));
        } else {
            if (c0 < m) row[c0] = vals[2 * h];
            if (c0 + 1 < m) row[c0 + 1] = vals[2 * h + 1];
        }
    }
}

// acc[i][j] += sum_k A[row0 + trow<T>(i)][k] * B[col0 + tcol<T>(j)][k]
template <class T>
__device__ __forceinline__ void tile_accumulate(T (&acc)[4][4], const T* __restrict__ A,
                                                const T* __restrict__ B, ll n, ll m, ll d, ll row0,
                                                ll col0, T (*As)[TM + 4], T (*Bs)[TN + 4]) {
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
    for (ll k0 = 0; k0 < d; k0 += BK) {
#pragma unroll
        for (int l = 0; l < (TM * BK) / (TX * TY); ++l) {
            const int idx = tid + l * TX * TY;
            const int r = idx / BK, kk = idx % BK;
            const ll gk = k0 + kk;
            const ll ga = row0 + r, gb = col0 + r;
            As[kk][r] = (ga < n && gk < d) ? A[ga * d + gk] : T(0);
            Bs[kk][r] = (gb < m && gk < d) ? B[gb * d + gk] : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T a[4], b[4];
            lds4(a, As[kk], ty);
            lds4(b, Bs[kk], tx);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
}

// Fused own-GEMM gram tile. X, out are offset to this slab's first row; row_off is
// that row's index in the full matrix (symmetric: blocks strictly below the
// diagonal are skipped; sym_finish_kernel mirrors them).
template <class T, int KID>
__global__ void gram_kernel(const T* __restrict__ X, const T* __restrict__ Z, const T* __restrict__ sx,
                            const T* __restrict__ sz, T* __restrict__ out, ll n, ll m, ll d, ll row_off,
                            KConst<T> kc, bool sym) {
    __shared__ __align__(16) T As[BK][TM + 4];  // rows of 68 words: 16-byte aligned
    __shared__ __align__(16) T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0 + row_off) return;  // block strictly below the diagonal
    T acc[4][4] = {};
    tile_accumulate<T>(acc, X, Z, n, m, d, row0, col0, As, Bs);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const ll r = row0 + trow<T>(i);
        if (r >= n) continue;
        T vals[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const ll c = col0 + tcol<T>(j);
            vals[j] = c < m ? keval_guarded<KID>(kc, acc[i][j], sx[r], sz[c], X + r * d, Z + c * d, d,
                                                 guard_factor<T>(d))
                            : T(0);
        }
        store_row4(out + r * m, col0, m, vals);
    }
}

// Own-GEMM batched tile: A, B, out pre-offset to this launch's first batch entry / row.
template <class T>
__global__ void batched_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ out, ll b,
                               ll n, ll m, ll p, ll a_bs, ll b_bs, ll o_bs, ll row_off, bool sym,
                               bool reduce_sum) {
    __shared__ __align__(16) T As[BK][TM + 4];
    __shared__ __align__(16) T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0 + row_off) return;
    T acc[4][4] = {};
    const ll s_begin = reduce_sum ? 0 : blockIdx.z;
    const ll s_end = reduce_sum ? b : s_begin + 1;
    for (ll s = s_begin; s < s_end; ++s)
        tile_accumulate<T>(acc, A + s * a_bs, B + s * b_bs, n, m, p, row0, col0, As, Bs);
    T* o = out + (reduce_sum ? 0 : ll(blockIdx.z) * o_bs);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const ll r = row0 + trow<T>(i);
        if (r < n) store_row4(o + r * m, col0, m, acc[i]);
    }
}

dim3 tile_grid(ll n, ll m, ll z = 1) {
    const ll gx = (m + TN - 1) / TN, gy = (n + TM - 1) / TM;
    if (gy > kMaxGridYZ || z > kMaxGridYZ || gx > 0x7fffffffLL)
        throw std::runtime_error("ntkit cuda: problem too large for one grid (" + std::to_string(n) + " x " +
                                 std::to_string(m) + ")");
    return dim3(unsigned(gx), unsigned(gy), unsigned(z));
}

// ------------------------------------------------------------ gram
template <class T>
struct GramDevice {
    template <int KID>
    static void run(const T* X, ll n, const T* Z, ll m, ll d, bool sym, const KConst<T>& kc, T* out,
                    cudaStream_t st, Scratch* scratch) {
        Temp tmp(scratch, st);
        T* sx = tmp.alloc<T>(n);
        T* sz = sym ? sx : tmp.alloc<T>(m);
        detail::device_sqnorms<T>(X, n, d, sx, st);
        if (!sym) detail::device_sqnorms<T>(Z, m, d, sz, st);
        if (detail::use_cublas()) {
            if (sym) {
                if (detail::use_syrk())
                    detail::blas_syrk_upper<T>(st, n, d, X, d, T(0), out, n);
                else
                    detail::blas_gemm_nt<T>(st, n, n, d, X, d, X, d, T(0), out, n);
                launch_sym_finish<T, KID, true>(out, n, 1, n * n, sx, X, d, kc, true, st);
            } else {
                detail::blas_gemm_nt<T>(st, n, m, d, X, d, Z, d, T(0), out, m);
                if (KID != K_LINEAR) launch_transform<T, KID>(out, n, m, sx, sz, X, Z, d, kc, st);
            }
            return;
        }
        for (ll r0 = 0; r0 < n; r0 += kMaxSlabRows) {
            const ll rn = std::min<ll>(kMaxSlabRows, n - r0);
            gram_kernel<T, KID><<<tile_grid(rn, m), dim3(TX, TY), 0, st>>>(X + r0 * d, Z, sx + r0, sz, out + r0 * m,
                                                                           rn, m, d, r0, kc, sym);
            check_launch();
        }
        if (sym) launch_sym_finish<T, KID, false>(out, n, 1, n * n, sx, X, d, kc, true, st);
    }
};

}  // namespace

template <class T>
void gram_device(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric, KernelId kid,
                 const KernelParams& p, T* out, void* stream, Scratch* scratch) {
    validate_params(kid, p);
    NTKIT_CHECK(n >= 0 && m >= 0 && d >= 0, "negative size");
    NTKIT_CHECK(!symmetric || n == m, "symmetric gram needs n == m");
    if (n == 0 || m == 0) return;
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<GramDevice<T>>(kid, X, ll(n), symmetric ? X : Z, ll(m), ll(d), symmetric, kc, out,
                                   as_stream(stream), scratch);
}

template <class T>
void batched_gram_device(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p, bool symmetric,
                         bool reduce_sum, T* out, void* stream, Scratch* scratch) {
    NTKIT_CHECK(b >= 0 && n >= 0 && m >= 0 && p >= 0, "negative size");
    cudaStream_t st = as_stream(stream);
    if (symmetric) {
        B = A;
        m = n;
    }
    const ll nm = ll(n) * m;
    if (nm == 0) return;
    const ll outs = reduce_sum ? 1 : ll(b);
    if (b == 0 || p == 0) {
        if (outs > 0) CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * size_t(outs * nm), st));
        return;
    }
    const ll ap = ll(n) * p, bpp = ll(m) * p;
    const KConst<T> kc{};
    if (detail::use_cublas()) {
        if (!reduce_sum) {
            // batch chunks of 65535 (the same launch structure as the own GEMM below)
            for (ll z0 = 0; z0 < b; z0 += kMaxGridYZ) {
                const ll zn = std::min<ll>(kMaxGridYZ, ll(b) - z0);
                detail::blas_gemm_nt_batched<T>(st, zn, n, m, p, A + z0 * ap, p, ap, B + z0 * bpp, p, bpp,
                                                out + z0 * nm, m, nm);
            }
            if (symmetric) launch_sym_finish<T, K_LINEAR, false>(out, n, b, nm, nullptr, nullptr, 0, kc, false, st);
            return;
        }
        Temp tmp(scratch, st);
        T* At = b > 1 ? tmp.try_alloc<T>(ll(b) * ap) : nullptr;
        T* Bt = (b > 1 && !symmetric && At != nullptr) ? tmp.try_alloc<T>(ll(b) * bpp) : nullptr;
        const bool packed = At != nullptr && (symmetric || Bt != nullptr);
        if (b == 1 || packed) {  // one product with inner dimension b * p
            const T* Ap = A;
            const T* Bp = B;
            if (b > 1) {
                launch_pack<T>(A, b, n, p, At, st);
                if (!symmetric) launch_pack<T>(B, b, m, p, Bt, st);
                Ap = At;
                Bp = symmetric ? At : Bt;
            }
            const ll k = ll(b) * p;
            if (symmetric) {
                detail::blas_syrk_upper<T>(st, n, k, Ap, k, T(0), out, n);
                launch_sym_finish<T, K_LINEAR, false>(out, n, 1, nm, nullptr, nullptr, 0, kc, false, st);
            } else {
                detail::blas_gemm_nt<T>(st, n, m, k, Ap, k, Bp, k, T(0), out, m);
            }
            return;
        }
        // not enough memory for the packed copies: accumulate b products
        for (ll s = 0; s < ll(b); ++s) {
            const T beta = s > 0 ? T(1) : T(0);
            if (symmetric)
                detail::blas_syrk_upper<T>(st, n, p, A + s * ap, p, beta, out, n);
            else
                detail::blas_gemm_nt<T>(st, n, m, p, A + s * ap, p, B + s * bpp, p, beta, out, m);
        }
        if (symmetric) launch_sym_finish<T, K_LINEAR, false>(out, n, 1, nm, nullptr, nullptr, 0, kc, false, st);
        return;
    }
    // own GEMM: batch entries on gridDim.z and row tiles on gridDim.y (<= 65535 each)
    const ll slab = symmetric ? ll(n) : std::min<ll>(ll(n), kMaxSlabRows);
    for (ll z0 = 0; z0 < outs; z0 += kMaxGridYZ) {
        const ll zn = std::min<ll>(kMaxGridYZ, outs - z0);
        for (ll r0 = 0; r0 < ll(n); r0 += slab) {
            const ll rn = std::min<ll>(slab, ll(n) - r0);
            batched_kernel<T><<<tile_grid(rn, m, zn), dim3(TX, TY), 0, st>>>(
                A + z0 * ap + r0 * p, B + z0 * bpp, out + z0 * nm + r0 * m, ll(b), rn, ll(m), ll(p), ap, bpp, nm,
                r0, symmetric, reduce_sum);
            check_launch();
        }
    }
    if (symmetric) launch_sym_finish<T, K_LINEAR, false>(out, n, outs, nm, nullptr, nullptr, 0, kc, false, st);
}

#define NTKIT_GRAM_INSTANTIATE(T)                                                                       \
    template void gram_device<T>(const T*, index_t, const T*, index_t, index_t, bool, KernelId,          \
                                 const KernelParams&, T*, void*, Scratch*);                              \
    template void batched_gram_device<T>(const T*, index_t, index_t, const T*, index_t, index_t, bool,  \
                                         bool, T*, void*, Scratch*);
NTKIT_GRAM_INSTANTIATE(float)
NTKIT_GRAM_INSTANTIATE(double)
#undef NTKIT_GRAM_INSTANTIATE

}  // namespace cuda
}  // namespace ntkit
