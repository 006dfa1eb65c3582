// CUDA implementations of gram (fused transform), kernel_matvec (fused and
// streamed: K is never stored) and batched_gram (stack or sum).
// Tiled shared-memory GEMM: 64x64 output tile per block of 16x16 threads,
// 4x4 outputs per thread, k-steps of 16. fp32 accumulation for float, fp64
// for double. No cuBLAS, no TF32. Formulas come from ntkit/kernels.hpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ntkit/cuda_ops.hpp"
#include "ntkit/kernels.hpp"

#define CUDA_CHECK(expr)                                                                  \
    do {                                                                                  \
        cudaError_t ntkit_err_ = (expr);                                                  \
        if (ntkit_err_ != cudaSuccess)                                                    \
            throw std::runtime_error(std::string("CUDA error in ") + #expr + ": " +       \
                                     cudaGetErrorString(ntkit_err_));                     \
    } while (0)

namespace ntkit {
namespace cuda {

namespace {

constexpr int TM = 64, TN = 64, BK = 16, TX = 16, TY = 16;
using ll = long long;

template <class T>
class DeviceBuffer {
   public:
    explicit DeviceBuffer(ll count) : n_(count) {
        if (count > 0) CUDA_CHECK(cudaMalloc(&p_, sizeof(T) * size_t(count)));
    }
    ~DeviceBuffer() {
        if (p_) cudaFree(p_);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    T* get() const { return p_; }
    void upload(const T* h) {
        if (n_ > 0) CUDA_CHECK(cudaMemcpy(p_, h, sizeof(T) * size_t(n_), cudaMemcpyHostToDevice));
    }
    void download(T* h) const {
        if (n_ > 0) CUDA_CHECK(cudaMemcpy(h, p_, sizeof(T) * size_t(n_), cudaMemcpyDeviceToHost));
    }
    void zero() {
        if (n_ > 0) CUDA_CHECK(cudaMemset(p_, 0, sizeof(T) * size_t(n_)));
    }

   private:
    T* p_ = nullptr;
    ll n_;
};

void check_launch() {
    CUDA_CHECK(cudaGetLastError());
}

// acc[i][j] += sum_k A[row0+ty+16i][k] * B[col0+tx+16j][k]
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
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
}

template <class T>
__global__ void sqnorm_kernel(const T* __restrict__ X, ll n, ll d, T* __restrict__ out) {
    const ll i = ll(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T s = 0;
    for (ll k = 0; k < d; ++k) s = fma(X[i * d + k], X[i * d + k], s);
    out[i] = s;
}

template <class T, int KID>
__global__ void gram_kernel(const T* __restrict__ X, const T* __restrict__ Z,
                            const T* __restrict__ sx, const T* __restrict__ sz, T* __restrict__ out,
                            ll n, ll m, ll d, KConst<T> kc, bool sym) {
    __shared__ T As[BK][TM + 4];
    __shared__ T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0) return;  // block strictly below the diagonal
    T acc[4][4] = {};
    tile_accumulate<T>(acc, X, Z, n, m, d, row0, col0, As, Bs);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const ll r = row0 + threadIdx.y + 16 * i;
        if (r >= n) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const ll c = col0 + threadIdx.x + 16 * j;
            if (c < m)
                out[r * m + c] = keval_guarded<KID>(kc, acc[i][j], sx[r], sz[c], X + r * d, Z + c * d,
                                                    d, guard_factor<T>(d));
        }
    }
}

// Lower triangle <- upper triangle; optional exact diagonal.
template <class T, int KID>
__global__ void mirror_kernel(T* __restrict__ out, ll n, const T* __restrict__ sx, KConst<T> kc,
                              bool set_diag) {
    const ll j = ll(blockIdx.x) * blockDim.x + threadIdx.x;
    const ll i = ll(blockIdx.y) * blockDim.y + threadIdx.y;
    if (i >= n || j >= n) return;
    if (i > j) out[i * n + j] = out[j * n + i];
    else if (i == j && set_diag) out[i * n + i] = keval_diag<KID>(kc, sx[i]);
}

// Fused K(X,Z) @ v: block (panel of 64 rows, column chunk) loops over its
// column tiles; each tile is transformed in registers, multiplied by v and
// reduced over the 16 threads sharing a row (warp shuffles). partial has
// shape (chunks, n, t) and is owned row-wise by one block: deterministic.
template <class T, int KID>
__global__ void matvec_kernel(const T* __restrict__ X, const T* __restrict__ Z,
                              const T* __restrict__ sx, const T* __restrict__ sz,
                              const T* __restrict__ v, T* __restrict__ partial, ll n, ll m, ll d,
                              ll t, ll tiles_per_chunk, KConst<T> kc, bool sym) {
    __shared__ T As[BK][TM + 4];
    __shared__ T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.x) * TM;
    const ll chunk = blockIdx.y;
    T* part = partial + chunk * n * t;
    const ll ctile_begin = chunk * tiles_per_chunk;
    const ll ntiles = (m + TN - 1) / TN;
    const ll ctile_end = ctile_begin + tiles_per_chunk < ntiles ? ctile_begin + tiles_per_chunk : ntiles;
    for (ll ct = ctile_begin; ct < ctile_end; ++ct) {
        const ll col0 = ct * TN;
        T acc[4][4] = {};
        tile_accumulate<T>(acc, X, Z, n, m, d, row0, col0, As, Bs);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const ll r = row0 + threadIdx.y + 16 * i;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const ll c = col0 + threadIdx.x + 16 * j;
                if (r < n && c < m)
                    acc[i][j] = (sym && r == c) ? keval_diag<KID>(kc, sx[r])
                                                : keval_guarded<KID>(kc, acc[i][j], sx[r], sz[c], X + r * d,
                                                                     Z + c * d, d, guard_factor<T>(d));
                else
                    acc[i][j] = T(0);
            }
        }
        for (ll q = 0; q < t; ++q) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                T s = 0;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const ll c = col0 + threadIdx.x + 16 * j;
                    if (c < m) s = fma(acc[i][j], v[c * t + q], s);
                }
                // reduce over the 16 lanes (same threadIdx.y) of this half-warp
#pragma unroll
                for (int off = 8; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off, 16);
                const ll r = row0 + threadIdx.y + 16 * i;
                if (threadIdx.x == 0 && r < n) part[r * t + q] += s;
            }
        }
    }
}

template <class T>
__global__ void sum_partials_kernel(const T* __restrict__ partial, ll chunks, ll count,
                                    T* __restrict__ out) {
    const ll i = ll(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count) return;
    T s = 0;
    for (ll c = 0; c < chunks; ++c) s += partial[c * count + i];
    out[i] = s;
}

template <class T>
__global__ void batched_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ out,
                               ll b, ll n, ll m, ll p, bool sym, bool reduce_sum) {
    __shared__ T As[BK][TM + 4];
    __shared__ T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0) return;
    T acc[4][4] = {};
    const ll s_begin = reduce_sum ? 0 : blockIdx.z;
    const ll s_end = reduce_sum ? b : s_begin + 1;
    for (ll s = s_begin; s < s_end; ++s)
        tile_accumulate<T>(acc, A + s * n * p, B + s * m * p, n, m, p, row0, col0, As, Bs);
    T* o = out + (reduce_sum ? 0 : ll(blockIdx.z) * n * m);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const ll r = row0 + threadIdx.y + 16 * i;
        if (r >= n) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const ll c = col0 + threadIdx.x + 16 * j;
            if (c < m) o[r * m + c] = acc[i][j];
        }
    }
}

dim3 tile_grid(ll n, ll m, ll z = 1) {
    const ll gx = (m + TN - 1) / TN, gy = (n + TM - 1) / TM;
    if (gy > 65535 || z > 65535) throw std::runtime_error("ntkit cuda: problem too large for grid");
    return dim3(unsigned(gx), unsigned(gy), unsigned(z));
}

template <class T>
void device_sqnorms(const T* dX, ll n, ll d, T* dout) {
    if (n == 0) return;
    sqnorm_kernel<T><<<unsigned((n + 255) / 256), 256>>>(dX, n, d, dout);
    check_launch();
}

template <class T>
struct GramCuda {
    template <int KID>
    static void run(const T* X, ll n, const T* Z, ll m, ll d, bool sym, const KConst<T>& kc, T* out) {
        DeviceBuffer<T> dX(n * d), dZ(sym ? 0 : m * d), dsx(n), dsz(sym ? 0 : m), dout(n * m);
        dX.upload(X);
        if (!sym) dZ.upload(Z);
        const T* zp = sym ? dX.get() : dZ.get();
        device_sqnorms<T>(dX.get(), n, d, dsx.get());
        if (!sym) device_sqnorms<T>(zp, m, d, dsz.get());
        const T* szp = sym ? dsx.get() : dsz.get();
        gram_kernel<T, KID><<<tile_grid(n, m), dim3(TX, TY)>>>(dX.get(), zp, dsx.get(), szp,
                                                               dout.get(), n, m, d, kc, sym);
        check_launch();
        if (sym) {
            dim3 blk(32, 8), grd(unsigned((n + 31) / 32), unsigned((n + 7) / 8));
            mirror_kernel<T, KID><<<grd, blk>>>(dout.get(), n, dsx.get(), kc, true);
            check_launch();
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        dout.download(out);
    }
};

template <class T>
struct MatvecCuda {
    template <int KID>
    static void run(const T* X, ll n, const T* Z, ll m, ll d, const T* v, ll t, const KConst<T>& kc,
                    T* out, bool sym) {
        const ll panels = (n + TM - 1) / TM;
        const ll ctiles = (m + TN - 1) / TN;
        // Split the columns into chunks only when there are few row panels; the
        // split depends on the sizes alone (deterministic result).
        ll chunks = std::max<ll>(1, std::min<ll>(ctiles, 512 / std::max<ll>(panels, 1)));
        chunks = std::min<ll>(chunks, 65535);
        const ll per = (ctiles + chunks - 1) / chunks;
        chunks = (ctiles + per - 1) / per;
        DeviceBuffer<T> dX(n * d), dZ(m * d), dv(m * t), dsx(n), dsz(m), dpart(chunks * n * t),
            dout(n * t);
        dX.upload(X);
        dZ.upload(Z);
        dv.upload(v);
        dpart.zero();
        device_sqnorms<T>(dX.get(), n, d, dsx.get());
        device_sqnorms<T>(dZ.get(), m, d, dsz.get());
        matvec_kernel<T, KID><<<dim3(unsigned(panels), unsigned(chunks)), dim3(TX, TY)>>>(
            dX.get(), dZ.get(), dsx.get(), dsz.get(), dv.get(), dpart.get(), n, m, d, t, per, kc, sym);
        check_launch();
        const ll count = n * t;
        sum_partials_kernel<T><<<unsigned((count + 255) / 256), 256>>>(dpart.get(), chunks, count,
                                                                       dout.get());
        check_launch();
        CUDA_CHECK(cudaDeviceSynchronize());
        dout.download(out);
    }
};

}  // namespace

int device_count() {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error state
        return 0;
    }
    return c;
}

template <class T>
void gram(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric, KernelId kid,
          const KernelParams& p, T* out) {
    validate_params(kid, p);
    if (n == 0 || m == 0) return;
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<GramCuda<T>>(kid, X, ll(n), symmetric ? X : Z, ll(m), ll(d), symmetric, kc, out);
}

template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v, index_t t,
                   KernelId kid, const KernelParams& p, T* out, bool symmetric) {
    validate_params(kid, p);
    NTKIT_CHECK(!symmetric || (n == m), "symmetric kernel_matvec needs n == m");
    std::fill(out, out + n * t, T(0));
    if (n == 0 || m == 0 || t == 0) return;
    const KConst<T> kc = make_kconst<T>(p, d);
    dispatch_kernel<MatvecCuda<T>>(kid, X, ll(n), symmetric ? X : Z, ll(m), ll(d), v, ll(t), kc, out,
                                   symmetric);
}

template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                  bool symmetric, bool reduce_sum, T* out) {
    if (symmetric) m = n;
    const ll nm = ll(n) * m;
    if (nm == 0) return;
    if (b == 0) {
        std::fill(out, out + (reduce_sum ? nm : ll(b) * nm), T(0));
        return;
    }
    DeviceBuffer<T> dA(ll(b) * n * p), dB(symmetric ? 0 : ll(b) * m * p),
        dout(reduce_sum ? nm : ll(b) * nm);
    dA.upload(A);
    if (!symmetric) dB.upload(B);
    const T* bp = symmetric ? dA.get() : dB.get();
    batched_kernel<T><<<tile_grid(n, m, reduce_sum ? 1 : b), dim3(TX, TY)>>>(
        dA.get(), bp, dout.get(), b, n, m, p, symmetric, reduce_sum);
    check_launch();
    if (symmetric) {
        const ll outs = reduce_sum ? 1 : b;
        const KConst<T> kc{};
        dim3 blk(32, 8), grd(unsigned((n + 31) / 32), unsigned((n + 7) / 8));
        for (ll s = 0; s < outs; ++s) {
            mirror_kernel<T, K_LINEAR><<<grd, blk>>>(dout.get() + s * nm, n, nullptr, kc, false);
            check_launch();
        }
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    dout.download(out);
}

#define NTKIT_CUDA_INSTANTIATE(T)                                                              \
    template void gram<T>(const T*, index_t, const T*, index_t, index_t, bool, KernelId,      \
                          const KernelParams&, T*);                                            \
    template void kernel_matvec<T>(const T*, index_t, const T*, index_t, index_t, const T*,   \
                                   index_t, KernelId, const KernelParams&, T*, bool);                \
    template void batched_gram<T>(const T*, index_t, index_t, const T*, index_t, index_t,     \
                                  bool, bool, T*);
NTKIT_CUDA_INSTANTIATE(float)
NTKIT_CUDA_INSTANTIATE(double)
#undef NTKIT_CUDA_INSTANTIATE

}  // namespace cuda
}  // namespace ntkit
