// Internal helpers shared by the CUDA translation units of ntkit_native
// (error checks, stream-ordered temporaries, squared norms, cuBLAS wrappers).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

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
namespace detail {

using ll = long long;

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

inline void check_launch() { CUDA_CHECK(cudaGetLastError()); }

constexpr ll kMaxGridYZ = 65535;  // gridDim.y / gridDim.z limit

// Temporary device memory of one stream-ordered call: from the caller's Scratch
// when given, else cudaMallocAsync on the call's stream, released with
// cudaFreeAsync on the same stream when the Temp goes out of scope (after the
// work that uses it has been enqueued: stream order keeps it alive long enough).
class Temp {
   public:
    Temp(Scratch* scratch, cudaStream_t stream) : scratch_(scratch), stream_(stream) {}
    ~Temp() {
        for (void* p : owned_) cudaFreeAsync(p, stream_);
    }
    Temp(const Temp&) = delete;
    Temp& operator=(const Temp&) = delete;

    // nullptr when the memory cannot be had (or count == 0)
    template <class T>
    T* try_alloc(ll count) {
        if (count <= 0) return nullptr;
        const std::size_t bytes = (sizeof(T) * std::size_t(count) + 255) / 256 * 256;
        void* p = nullptr;
        if (scratch_ != nullptr) p = scratch_->allocate(bytes);
        if (p != nullptr) {
            // from the caller's allocator (XLA's scratch)
        } else if (cudaMallocAsync(&p, bytes, stream_) != cudaSuccess) {  // stream-ordered fallback
            cudaGetLastError();  // out of memory is not sticky: clear it
            p = nullptr;
        } else {
            owned_.push_back(p);
        }
        if (p != nullptr) bytes_ += (long long)(sizeof(T)) * count;
        return static_cast<T*>(p);
    }
    template <class T>
    T* alloc(ll count) {
        if (count <= 0) return nullptr;
        T* p = try_alloc<T>(count);
        if (p == nullptr)
            throw std::runtime_error("ntkit cuda: cannot allocate " + std::to_string(sizeof(T) * count) +
                                     " bytes of temporary device memory");
        return p;
    }
    long long bytes() const { return bytes_; }

   private:
    Scratch* scratch_;
    cudaStream_t stream_;
    std::vector<void*> owned_;
    long long bytes_ = 0;
};

namespace {  // kernels: internal linkage, one copy per translation unit

// out[i] = |X_i|^2 (fma in increasing k: the same order as the dot products of the
// fused kernels, so that x == z gives d2 == 0 exactly there).
template <class T>
__global__ void sqnorm_kernel(const T* __restrict__ X, ll n, ll d, T* __restrict__ out) {
    for (ll i = ll(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += ll(gridDim.x) * blockDim.x) {
        T s = 0;
        for (ll k = 0; k < d; ++k) s = fma(X[i * d + k], X[i * d + k], s);
        out[i] = s;
    }
}

template <class T>
inline void device_sqnorms(const T* X, ll n, ll d, T* out, cudaStream_t st) {
    if (n <= 0) return;
    const ll blocks = (n + 255) / 256;
    sqnorm_kernel<T><<<unsigned(blocks < 65535 ? blocks : 65535), 256, 0, st>>>(X, n, d, out);
    check_launch();
}

}  // namespace

// Streaming multiprocessors of the current device (cached per device).
int sm_count();

// ---- GEMM back end (blas.cu) ------------------------------------------------
// True when the inner products go through cuBLAS (compiled with it and enabled).
bool use_cublas();
bool use_syrk();

// Row-major C (n x m, ldc) = A (n x k, lda) * B (m x k, ldb)^T + beta * C, on `st`.
// cuBLAS default math mode: true FP32 / FP64 arithmetic, never TF32.
template <class T>
void blas_gemm_nt(cudaStream_t st, ll n, ll m, ll k, const T* A, ll lda, const T* B, ll ldb, T beta,
                  T* C, ll ldc);
// Row-major upper triangle (diagonal included) of C (n x n) = A A^T + beta * C (SYRK);
// the strictly lower triangle is not written.
template <class T>
void blas_syrk_upper(cudaStream_t st, ll n, ll k, const T* A, ll lda, T beta, T* C, ll ldc);
// batch x [C_s (n x m) = A_s B_s^T], strides in elements.
template <class T>
void blas_gemm_nt_batched(cudaStream_t st, ll batch, ll n, ll m, ll k, const T* A, ll lda, ll sA,
                          const T* B, ll ldb, ll sB, T* C, ll ldc, ll sC);

}  // namespace detail
}  // namespace cuda
}  // namespace ntkit
