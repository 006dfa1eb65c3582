// CUDA implementations of gram (fused transform), kernel_matvec (fused and
// streamed: K is never stored) and batched_gram (stack or sum).
// Tiled shared-memory GEMM: 64x64 output tile per block of 16x16 threads,
// 4x4 outputs per thread, k-steps of 16. fp32 accumulation for float, fp64
// for double. No cuBLAS, no TF32. Formulas come from ntkit/kernels.hpp.
// Grids: row tiles on gridDim.y and batch entries on gridDim.z (at most 65535
// each), so the host loops over row slabs and batch chunks; the non-symmetric
// gram also streams its output through a bounded device buffer (row slabs).
// Host <-> device copies of 8 MiB or more go through two pinned staging
// buffers (allocated once per process, 2 x 32 MiB): the DMA of one chunk
// overlaps the multi-threaded host copy of the previous one.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>

#include "ntkit/cuda_ops.hpp"
#include "ntkit/host_copy.hpp"
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

// ---------------------------------------------------------------- staging
constexpr size_t kStageBytes = size_t(32) << 20;  // per staging buffer
constexpr size_t kStageMin = size_t(8) << 20;     // smaller copies: plain cudaMemcpy

struct Staging {
    std::mutex mu;  // held for a whole staged copy
    void* buf[2] = {nullptr, nullptr};
    bool tried = false;
    bool ok = false;
};
Staging g_stage;

// Under g_stage.mu: allocate the pinned buffers on first use; false if that failed.
bool staging_ready() {
    if (!g_stage.tried) {
        g_stage.tried = true;
        bool ok = true;
        for (auto& b : g_stage.buf)
            ok = ok && cudaHostAlloc(&b, kStageBytes, cudaHostAllocPortable) == cudaSuccess;
        if (!ok) {
            cudaGetLastError();  // clear; fall back to pageable copies
            for (auto& b : g_stage.buf)
                if (b) cudaFreeHost(b), b = nullptr;
        }
        g_stage.ok = ok;
    }
    return g_stage.ok;
}

struct EventPair {
    cudaEvent_t ev[2] = {};
    EventPair() {
        for (auto& e : ev) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    ~EventPair() {
        for (auto& e : ev)
            if (e) cudaEventDestroy(e);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;
};

// Device -> host (blocking; ordered after earlier work on the default stream).
void copy_d2h(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    if (bytes >= kStageMin) {
        std::lock_guard<std::mutex> lk(g_stage.mu);
        if (staging_ready()) {
            EventPair ep;
            const size_t chunks = (bytes + kStageBytes - 1) / kStageBytes;
            for (size_t k = 0; k <= chunks; ++k) {
                if (k < chunks) {  // DMA chunk k into buffer k % 2
                    const size_t off = k * kStageBytes, len = std::min(kStageBytes, bytes - off);
                    CUDA_CHECK(cudaMemcpyAsync(g_stage.buf[k % 2], static_cast<const char*>(src) + off, len,
                                               cudaMemcpyDeviceToHost, 0));
                    CUDA_CHECK(cudaEventRecord(ep.ev[k % 2], 0));
                }
                if (k > 0) {  // meanwhile: host copy of chunk k - 1
                    const size_t j = k - 1, off = j * kStageBytes, len = std::min(kStageBytes, bytes - off);
                    CUDA_CHECK(cudaEventSynchronize(ep.ev[j % 2]));
                    parallel_memcpy(static_cast<char*>(dst) + off, g_stage.buf[j % 2], len);
                }
            }
            return;
        }
    }
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

// Host -> device (returns when the data is on the device).
void copy_h2d(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    if (bytes >= kStageMin) {
        std::lock_guard<std::mutex> lk(g_stage.mu);
        if (staging_ready()) {
            EventPair ep;
            const size_t chunks = (bytes + kStageBytes - 1) / kStageBytes;
            for (size_t k = 0; k < chunks; ++k) {
                const size_t off = k * kStageBytes, len = std::min(kStageBytes, bytes - off);
                if (k >= 2) CUDA_CHECK(cudaEventSynchronize(ep.ev[k % 2]));  // DMA of chunk k - 2 done
                parallel_memcpy(g_stage.buf[k % 2], static_cast<const char*>(src) + off, len);
                CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, g_stage.buf[k % 2], len,
                                           cudaMemcpyHostToDevice, 0));
                CUDA_CHECK(cudaEventRecord(ep.ev[k % 2], 0));
            }
            for (size_t k = chunks >= 2 ? chunks - 2 : 0; k < chunks; ++k)
                CUDA_CHECK(cudaEventSynchronize(ep.ev[k % 2]));  // buffers free again
            return;
        }
    }
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

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
    long long bytes() const { return n_ > 0 ? (long long)(sizeof(T)) * n_ : 0; }
    void upload(const T* h) {
        if (n_ > 0) copy_h2d(p_, h, sizeof(T) * size_t(n_));
    }
    void download(T* h) const {
        if (n_ > 0) copy_d2h(h, p_, sizeof(T) * size_t(n_));
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

constexpr ll kMaxGridYZ = 65535;           // gridDim.y / gridDim.z limit
constexpr ll kMaxSlabRows = kMaxGridYZ * TM;  // rows per launch (row tiles on gridDim.y)
std::atomic<ll> g_slab_bytes{256LL << 20};  // device output buffer of the non-symmetric gram

std::mutex g_prof_mu;
CallProfile g_prof;

// CUDA events on the legacy default stream (every launch and copy here uses it).
class PhaseTimer {
   public:
    enum { START, UPLOADED, KBEGIN, KEND, DEND, NEV };
    PhaseTimer() {
        for (auto& e : ev_) CUDA_CHECK(cudaEventCreate(&e));
    }
    ~PhaseTimer() {
        for (auto& e : ev_)
            if (e) cudaEventDestroy(e);
    }
    PhaseTimer(const PhaseTimer&) = delete;
    PhaseTimer& operator=(const PhaseTimer&) = delete;
    void mark(int i) { CUDA_CHECK(cudaEventRecord(ev_[i], 0)); }
    void sync(int i) { CUDA_CHECK(cudaEventSynchronize(ev_[i])); }
    // elapsed ms between two recorded (and completed) events
    double ms(int a, int b) const {
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, ev_[a], ev_[b]));
        return double(t);
    }

   private:
    cudaEvent_t ev_[NEV] = {};
};

void publish(const char* op, double h2d, double kern, double d2h, long long bytes, long long launches) {
    std::lock_guard<std::mutex> lk(g_prof_mu);
    g_prof.op = op;
    g_prof.h2d_ms = h2d;
    g_prof.kernel_ms = kern;
    g_prof.d2h_ms = d2h;
    g_prof.device_bytes = bytes;
    g_prof.launches = launches;
}

// Each thread owns 4 rows x 4 columns of the 64 x 64 tile, in groups of W =
// 16 / sizeof(T) consecutive words (4 floats / 2 doubles): local index
// (j / W) * 16 W + W t + j % W for t = threadIdx.x (columns) or threadIdx.y
// (rows). A thread's operands are then whole 16-byte vectors, and the 16
// threads of a half-warp read (and store) contiguous 256-byte runs: no shared-
// memory bank conflicts for float4 or double2 loads, coalesced vector stores.
template <class T>
__device__ __forceinline__ int tsub(int j, int t) {
    constexpr int W = 16 / int(sizeof(T));
    return (j / W) * (16 * W) + t * W + (j % W);
}
template <class T>
__device__ __forceinline__ int trow(int i) { return tsub<T>(i, int(threadIdx.y)); }
template <class T>
__device__ __forceinline__ int tcol(int j) { return tsub<T>(j, int(threadIdx.x)); }

// r[0..3] <- row[tsub<T>(0..3, t)]
__device__ __forceinline__ void lds4(float (&r)[4], const float* row, int t) {
    const float4 v = *reinterpret_cast<const float4*>(row + 4 * t);
    r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
}
__device__ __forceinline__ void lds4(double (&r)[4], const double* row, int t) {
    const double2 v0 = *reinterpret_cast<const double2*>(row + 2 * t);
    const double2 v1 = *reinterpret_cast<const double2*>(row + 32 + 2 * t);
    r[0] = v0.x; r[1] = v0.y; r[2] = v1.x; r[3] = v1.y;
}

// Output row: vals[j] goes to column col0 + tcol<T>(j) (those < m). Vector
// stores when the words are in range and 16-byte aligned (m % W == 0 and a
// 16-byte aligned base); __stcg because a plain float4 store was split into
// scalar stores by the compiler.
__device__ __forceinline__ void store_row4(float* __restrict__ row, ll col0, ll m, const float (&vals)[4]) {
    const ll c0 = col0 + 4 * ll(threadIdx.x);
    if ((m & 3) == 0 && c0 + 3 < m) {
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
        if ((m & 1) == 0 && c0 + 1 < m) {
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
    __shared__ __align__(16) T As[BK][TM + 4];  // rows of 68 words: 16-byte aligned
    __shared__ __align__(16) T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0) return;  // block strictly below the diagonal
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

// Lower triangle <- upper triangle; optional exact diagonal. blockIdx.z picks
// one of several n x n matrices (stride n * n).
template <class T, int KID>
__global__ void mirror_kernel(T* __restrict__ out, ll n, const T* __restrict__ sx, KConst<T> kc,
                              bool set_diag) {
    const ll j = ll(blockIdx.x) * blockDim.x + threadIdx.x;
    const ll i = ll(blockIdx.y) * blockDim.y + threadIdx.y;
    if (i >= n || j >= n) return;
    out += ll(blockIdx.z) * n * n;
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
    __shared__ __align__(16) T As[BK][TM + 4];  // rows of 68 words: 16-byte aligned
    __shared__ __align__(16) T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.x) * TM;
    const ll chunk = blockIdx.y;
    T* part = partial + chunk * n * t;
    const ll ctile_begin = chunk * tiles_per_chunk;
    const ll ntiles = (m + TN - 1) / TN;
    const ll ctile_end = ctile_begin + tiles_per_chunk < ntiles ? ctile_begin + tiles_per_chunk : ntiles;
    T rowsum[4] = {};  // t == 1
    for (ll ct = ctile_begin; ct < ctile_end; ++ct) {
        const ll col0 = ct * TN;
        T acc[4][4] = {};
        tile_accumulate<T>(acc, X, Z, n, m, d, row0, col0, As, Bs);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const ll r = row0 + trow<T>(i);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const ll c = col0 + tcol<T>(j);
                if (r < n && c < m)
                    acc[i][j] = (sym && r == c) ? keval_diag<KID>(kc, sx[r])
                                                : keval_guarded<KID>(kc, acc[i][j], sx[r], sz[c], X + r * d,
                                                                     Z + c * d, d, guard_factor<T>(d));
                else
                    acc[i][j] = T(0);
            }
        }
        if (t == 1) {  // the common matvec: row sums stay in registers across the tiles
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                T s = 0;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const ll c = col0 + tcol<T>(j);
                    if (c < m) s = fma(acc[i][j], v[c], s);
                }
#pragma unroll
                for (int off = 8; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off, 16);
                rowsum[i] += s;
            }
            continue;
        }
        for (ll q = 0; q < t; ++q) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                T s = 0;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const ll c = col0 + tcol<T>(j);
                    if (c < m) s = fma(acc[i][j], v[c * t + q], s);
                }
                // reduce over the 16 lanes (same threadIdx.y) of this half-warp
#pragma unroll
                for (int off = 8; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off, 16);
                const ll r = row0 + trow<T>(i);
                if (threadIdx.x == 0 && r < n) part[r * t + q] += s;
            }
        }
    }
    if (t == 1 && threadIdx.x == 0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const ll r = row0 + trow<T>(i);
            if (r < n) part[r] = rowsum[i];
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

// A, B, out are pre-offset to the first batch entry / row of this launch; n is
// the number of rows in this launch, a_bs / b_bs / o_bs the batch strides.
template <class T>
__global__ void batched_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ out,
                               ll b, ll n, ll m, ll p, ll a_bs, ll b_bs, ll o_bs, bool sym,
                               bool reduce_sum) {
    __shared__ __align__(16) T As[BK][TM + 4];  // rows of 68 words: 16-byte aligned
    __shared__ __align__(16) T Bs[BK][TN + 4];
    const ll row0 = ll(blockIdx.y) * TM, col0 = ll(blockIdx.x) * TN;
    if (sym && col0 + TN <= row0) return;
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
        throw std::runtime_error("ntkit cuda: problem too large for one grid (" + std::to_string(n) +
                                 " x " + std::to_string(m) + ")");
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
        PhaseTimer tm;
        tm.mark(PhaseTimer::START);
        // Symmetric: the whole matrix on the device (upper block triangle, then
        // mirror + exact diagonal). Otherwise row slabs of at most g_slab_bytes
        // (and kMaxSlabRows rows) are computed and downloaded one after another.
        const ll slab_elems = g_slab_bytes.load() / ll(sizeof(T));
        const ll slab = sym ? n
                            : std::min<ll>({n, kMaxSlabRows, std::max<ll>(TM, slab_elems / m / TM * TM)});
        DeviceBuffer<T> dX(n * d), dZ(sym ? 0 : m * d), dsx(n), dsz(sym ? 0 : m), dout(slab * m);
        dX.upload(X);
        if (!sym) dZ.upload(Z);
        const T* zp = sym ? dX.get() : dZ.get();
        device_sqnorms<T>(dX.get(), n, d, dsx.get());
        if (!sym) device_sqnorms<T>(zp, m, d, dsz.get());
        const T* szp = sym ? dsx.get() : dsz.get();
        tm.mark(PhaseTimer::UPLOADED);
        double kern = 0, d2h = 0;
        ll launches = 0;
        for (ll r0 = 0; r0 < n; r0 += slab) {
            const ll rn = std::min<ll>(slab, n - r0);
            tm.mark(PhaseTimer::KBEGIN);
            gram_kernel<T, KID><<<tile_grid(rn, m), dim3(TX, TY)>>>(
                dX.get() + r0 * d, zp, dsx.get() + r0, szp, dout.get(), rn, m, d, kc, sym);
            check_launch();
            ++launches;
            if (sym) {
                dim3 blk(32, 8), grd(unsigned((n + 31) / 32), unsigned((n + 7) / 8));
                mirror_kernel<T, KID><<<grd, blk>>>(dout.get(), n, dsx.get(), kc, true);
                check_launch();
            }
            tm.mark(PhaseTimer::KEND);
            copy_d2h(out + r0 * m, dout.get(), sizeof(T) * size_t(rn * m));  // after the kernels
            tm.mark(PhaseTimer::DEND);
            tm.sync(PhaseTimer::DEND);
            kern += tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND);
            d2h += tm.ms(PhaseTimer::KEND, PhaseTimer::DEND);
        }
        publish("gram", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED), kern, d2h,
                dX.bytes() + dZ.bytes() + dsx.bytes() + dsz.bytes() + dout.bytes(), launches);
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
        PhaseTimer tm;
        tm.mark(PhaseTimer::START);
        DeviceBuffer<T> dX(n * d), dZ(sym ? 0 : m * d), dv(m * t), dsx(n), dsz(sym ? 0 : m),
            dpart(chunks * n * t), dout(n * t);
        dX.upload(X);
        if (!sym) dZ.upload(Z);
        dv.upload(v);
        dpart.zero();
        const T* zp = sym ? dX.get() : dZ.get();
        device_sqnorms<T>(dX.get(), n, d, dsx.get());
        if (!sym) device_sqnorms<T>(zp, m, d, dsz.get());
        const T* szp = sym ? dsx.get() : dsz.get();
        tm.mark(PhaseTimer::UPLOADED);
        tm.mark(PhaseTimer::KBEGIN);
        matvec_kernel<T, KID><<<dim3(unsigned(panels), unsigned(chunks)), dim3(TX, TY)>>>(
            dX.get(), zp, dsx.get(), szp, dv.get(), dpart.get(), n, m, d, t, per, kc, sym);
        check_launch();
        const ll count = n * t;
        sum_partials_kernel<T><<<unsigned((count + 255) / 256), 256>>>(dpart.get(), chunks, count,
                                                                       dout.get());
        check_launch();
        tm.mark(PhaseTimer::KEND);
        dout.download(out);  // synchronous on the default stream: the kernels are done
        tm.mark(PhaseTimer::DEND);
        tm.sync(PhaseTimer::DEND);
        publish("kernel_matvec", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED),
                tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND), tm.ms(PhaseTimer::KEND, PhaseTimer::DEND),
                dX.bytes() + dZ.bytes() + dv.bytes() + dsx.bytes() + dsz.bytes() + dpart.bytes() +
                    dout.bytes(),
                1);
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
    PhaseTimer tm;
    tm.mark(PhaseTimer::START);
    DeviceBuffer<T> dA(ll(b) * n * p), dB(symmetric ? 0 : ll(b) * m * p),
        dout(reduce_sum ? nm : ll(b) * nm);
    dA.upload(A);
    if (!symmetric) dB.upload(B);
    const T* bp = symmetric ? dA.get() : dB.get();
    tm.mark(PhaseTimer::UPLOADED);
    tm.mark(PhaseTimer::KBEGIN);
    // Batch entries on gridDim.z and row tiles on gridDim.y (<= 65535 each):
    // loop over batch chunks and (non-symmetric only) row slabs.
    const ll outs = reduce_sum ? 1 : ll(b);
    const ll slab = symmetric ? ll(n) : std::min<ll>(ll(n), kMaxSlabRows);
    const ll ap = ll(n) * p, bpp = ll(m) * p;
    ll launches = 0;
    for (ll z0 = 0; z0 < outs; z0 += kMaxGridYZ) {
        const ll zn = std::min<ll>(kMaxGridYZ, outs - z0);
        for (ll r0 = 0; r0 < ll(n); r0 += slab) {
            const ll rn = std::min<ll>(slab, ll(n) - r0);
            batched_kernel<T><<<tile_grid(rn, m, zn), dim3(TX, TY)>>>(
                dA.get() + z0 * ap + r0 * p, bp + z0 * bpp, dout.get() + z0 * nm + r0 * m, ll(b), rn,
                ll(m), ll(p), ap, bpp, nm, symmetric, reduce_sum);
            check_launch();
            ++launches;
        }
    }
    if (symmetric) {
        const KConst<T> kc{};
        dim3 blk(32, 8), grd(unsigned((n + 31) / 32), unsigned((n + 7) / 8));
        for (ll z0 = 0; z0 < outs; z0 += kMaxGridYZ) {
            grd.z = unsigned(std::min<ll>(kMaxGridYZ, outs - z0));
            mirror_kernel<T, K_LINEAR><<<grd, blk>>>(dout.get() + z0 * nm, n, nullptr, kc, false);
            check_launch();
        }
    }
    tm.mark(PhaseTimer::KEND);
    dout.download(out);  // synchronous on the default stream: the kernels are done
    tm.mark(PhaseTimer::DEND);
    tm.sync(PhaseTimer::DEND);
    publish("batched_gram", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED),
            tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND), tm.ms(PhaseTimer::KEND, PhaseTimer::DEND),
            dA.bytes() + dB.bytes() + dout.bytes(), launches);
}

long long set_slab_bytes(long long bytes) {
    NTKIT_CHECK(bytes > 0, "slab bytes must be > 0");
    return g_slab_bytes.exchange(bytes);
}

CallProfile last_profile() {
    std::lock_guard<std::mutex> lk(g_prof_mu);
    return g_prof;
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
