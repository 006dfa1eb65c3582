// Host-pointer CUDA API (numpy in, numpy out) over the stream-ordered device
// entry points, plus the small device utilities used by the bindings.
//
// Each call uploads its inputs, runs the device entry point on the legacy
// default stream and downloads the result. Host <-> device copies of 8 MiB or
// more go through two pinned staging buffers (allocated once per process,
// 2 x 32 MiB): the DMA of one chunk overlaps the multi-threaded host copy of the
// previous one. The non-symmetric gram streams its output through a bounded
// device buffer (row slabs).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>

#include "common.cuh"
#include "ntkit/host_copy.hpp"

namespace ntkit {
namespace cuda {

using detail::check_launch;
using detail::kMaxGridYZ;
using detail::ll;

namespace {

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

   private:
    T* p_ = nullptr;
    ll n_;
};

// Temporaries of the host-pointer calls: cudaMallocAsync on the legacy default
// stream, counted (CallProfile::device_bytes), released when the call returns.
class HostScratch : public Scratch {
   public:
    ~HostScratch() override {
        for (void* p : owned_) cudaFreeAsync(p, 0);
    }
    void* allocate(std::size_t bytes) override {
        void* p = nullptr;
        if (cudaMallocAsync(&p, bytes, 0) != cudaSuccess) {
            cudaGetLastError();
            return nullptr;
        }
        owned_.push_back(p);
        return p;
    }
    std::vector<void*> owned_;
};

constexpr ll kOwnSlabRows = kMaxGridYZ * 64;  // row tiles on gridDim.y (the own GEMM's limit)
std::atomic<ll> g_slab_bytes{256LL << 20};     // device output buffer of the non-symmetric gram

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

// Bytes handed out by a Temp inside the device entry points are not visible here;
// the host calls count their own: norms (n + m) for gram / kernel_matvec.
template <class T>
long long norm_bytes(ll n, ll m, bool sym) {
    return (long long)(sizeof(T)) * (n + (sym ? 0 : m));
}

template <class T>
__global__ void finite_kernel(const T* __restrict__ p, ll count, int* __restrict__ flag) {
    bool bad = false;
    for (ll i = ll(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += ll(gridDim.x) * blockDim.x)
        bad = bad || !isfinite(p[i]);
    if (__syncthreads_or(bad) && threadIdx.x == 0) atomicExch(flag, 1);
}

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
    PhaseTimer tm;
    tm.mark(PhaseTimer::START);
    // Symmetric: the whole matrix on the device. Otherwise row slabs of at most
    // g_slab_bytes (and kOwnSlabRows rows) are computed and downloaded one after another.
    const ll slab_elems = g_slab_bytes.load() / ll(sizeof(T));
    const ll slab = symmetric ? ll(n)
                              : std::min<ll>({ll(n), kOwnSlabRows, std::max<ll>(64, slab_elems / m / 64 * 64)});
    DeviceBuffer<T> dX(ll(n) * d), dZ(symmetric ? 0 : ll(m) * d), dout(slab * m);
    dX.upload(X);
    if (!symmetric) dZ.upload(Z);
    const T* zp = symmetric ? dX.get() : dZ.get();
    tm.mark(PhaseTimer::UPLOADED);
    double kern = 0, d2h = 0;
    ll launches = 0;
    HostScratch scratch;
    for (ll r0 = 0; r0 < ll(n); r0 += slab) {
        const ll rn = std::min<ll>(slab, ll(n) - r0);
        tm.mark(PhaseTimer::KBEGIN);
        gram_device<T>(dX.get() + r0 * d, rn, zp, m, d, symmetric, kid, p, dout.get(), nullptr, &scratch);
        ++launches;
        tm.mark(PhaseTimer::KEND);
        copy_d2h(out + r0 * m, dout.get(), sizeof(T) * size_t(rn * m));  // after the kernels
        tm.mark(PhaseTimer::DEND);
        tm.sync(PhaseTimer::DEND);
        kern += tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND);
        d2h += tm.ms(PhaseTimer::KEND, PhaseTimer::DEND);
    }
    publish("gram", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED), kern, d2h,
            dX.bytes() + dZ.bytes() + dout.bytes() + norm_bytes<T>(slab, m, symmetric), launches);
}

template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v, index_t t,
                   KernelId kid, const KernelParams& p, T* out, bool symmetric) {
    validate_params(kid, p);
    NTKIT_CHECK(!symmetric || (n == m), "symmetric kernel_matvec needs n == m");
    std::fill(out, out + n * t, T(0));
    if (n == 0 || m == 0 || t == 0) return;
    PhaseTimer tm;
    tm.mark(PhaseTimer::START);
    DeviceBuffer<T> dX(ll(n) * d), dZ(symmetric ? 0 : ll(m) * d), dv(ll(m) * t), dout(ll(n) * t);
    dX.upload(X);
    if (!symmetric) dZ.upload(Z);
    dv.upload(v);
    tm.mark(PhaseTimer::UPLOADED);
    tm.mark(PhaseTimer::KBEGIN);
    {
        HostScratch scratch;
        kernel_matvec_device<T>(dX.get(), n, symmetric ? dX.get() : dZ.get(), m, d, dv.get(), t, kid, p,
                                dout.get(), symmetric, nullptr, &scratch);
    }
    tm.mark(PhaseTimer::KEND);
    dout.download(out);  // synchronous on the default stream: the kernels are done
    tm.mark(PhaseTimer::DEND);
    tm.sync(PhaseTimer::DEND);
    publish("kernel_matvec", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED),
            tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND), tm.ms(PhaseTimer::KEND, PhaseTimer::DEND),
            dX.bytes() + dZ.bytes() + dv.bytes() + dout.bytes() + norm_bytes<T>(n, m, symmetric), 1);
}

template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p, bool symmetric,
                  bool reduce_sum, T* out) {
    if (symmetric) m = n;
    const ll nm = ll(n) * m;
    if (nm == 0) return;
    if (b == 0) {
        std::fill(out, out + (reduce_sum ? nm : 0), T(0));
        return;
    }
    PhaseTimer tm;
    tm.mark(PhaseTimer::START);
    DeviceBuffer<T> dA(ll(b) * n * p), dB(symmetric ? 0 : ll(b) * m * p), dout(reduce_sum ? nm : ll(b) * nm);
    dA.upload(A);
    if (!symmetric) dB.upload(B);
    tm.mark(PhaseTimer::UPLOADED);
    tm.mark(PhaseTimer::KBEGIN);
    {
        HostScratch scratch;
        batched_gram_device<T>(dA.get(), b, n, symmetric ? dA.get() : dB.get(), m, p, symmetric, reduce_sum,
                               dout.get(), nullptr, &scratch);
    }
    tm.mark(PhaseTimer::KEND);
    dout.download(out);
    tm.mark(PhaseTimer::DEND);
    tm.sync(PhaseTimer::DEND);
    // launches: batch chunks of 65535 x row slabs (the own GEMM's grid structure)
    const ll outs = reduce_sum ? 1 : ll(b);
    const ll slabs = symmetric ? 1 : (ll(n) + kOwnSlabRows - 1) / kOwnSlabRows;
    publish("batched_gram", tm.ms(PhaseTimer::START, PhaseTimer::UPLOADED),
            tm.ms(PhaseTimer::KBEGIN, PhaseTimer::KEND), tm.ms(PhaseTimer::KEND, PhaseTimer::DEND),
            dA.bytes() + dB.bytes() + dout.bytes(), ((outs + kMaxGridYZ - 1) / kMaxGridYZ) * slabs);
}

long long set_slab_bytes(long long bytes) {
    NTKIT_CHECK(bytes > 0, "slab bytes must be > 0");
    return g_slab_bytes.exchange(bytes);
}

CallProfile last_profile() {
    std::lock_guard<std::mutex> lk(g_prof_mu);
    return g_prof;
}

// ---------------------------------------------------------------- device utilities
int get_device() {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    return dev;
}

int exchange_device(int device) {
    const int prev = get_device();
    if (device != prev) CUDA_CHECK(cudaSetDevice(device));
    return prev;
}

void* device_malloc(std::size_t bytes) {
    void* p = nullptr;
    if (bytes == 0) bytes = 1;  // a valid, unique pointer for empty results
    CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
}

void device_free(void* p) noexcept {
    if (p != nullptr && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

void stream_synchronize(void* stream) { CUDA_CHECK(cudaStreamSynchronize(detail::as_stream(stream))); }

template <class T>
bool all_finite_device(const T* p, index_t count, void* stream) {
    if (count <= 0) return true;
    cudaStream_t st = detail::as_stream(stream);
    detail::Temp tmp(nullptr, st);
    int* flag = tmp.alloc<int>(1);
    CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), st));
    const ll blocks = std::min<ll>((ll(count) + 255) / 256, 4096);
    finite_kernel<T><<<unsigned(blocks), 256, 0, st>>>(p, ll(count), flag);
    check_launch();
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, flag, sizeof(int), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return h == 0;
}

#define NTKIT_HOST_INSTANTIATE(T)                                                                   \
    template void gram<T>(const T*, index_t, const T*, index_t, index_t, bool, KernelId,           \
                          const KernelParams&, T*);                                                 \
    template void kernel_matvec<T>(const T*, index_t, const T*, index_t, index_t, const T*,        \
                                   index_t, KernelId, const KernelParams&, T*, bool);               \
    template void batched_gram<T>(const T*, index_t, index_t, const T*, index_t, index_t, bool,    \
                                  bool, T*);                                                        \
    template bool all_finite_device<T>(const T*, index_t, void*);
NTKIT_HOST_INSTANTIATE(float)
NTKIT_HOST_INSTANTIATE(double)
#undef NTKIT_HOST_INSTANTIATE

}  // namespace cuda
}  // namespace ntkit
