// CUDA implementations (defined in csrc/cuda/*.cu, only built with NTKIT_WITH_CUDA).
// Framework-free and free of CUDA headers: streams are passed as `void*` (a
// cudaStream_t; nullptr = the legacy default stream), so that the bindings
// (pybind11, XLA FFI) compile with a plain C++ compiler.
//
// Two layers:
// * stream-ordered entry points on device pointers (`*_device`): every kernel,
//   cuBLAS call and temporary allocation is enqueued on the given stream; they
//   never synchronise the device or the stream and never copy to or from the
//   host (used by the XLA FFI custom calls and by DLPack inputs);
// * host-pointer functions (numpy in, numpy out): upload, call the device entry
//   point on the legacy default stream, download.
#pragma once
#include <cstddef>

#include "common.hpp"
#include "kernels.hpp"

namespace ntkit {
namespace cuda {

int device_count();  // 0 when no device / driver (never throws)

// Phase timings (CUDA events on the GPU timeline) and device memory of the
// most recent host-pointer CUDA call in this process; for benchmarks and tests only.
struct CallProfile {
    const char* op = "";     // "gram", "kernel_matvec", "batched_gram" or "" (no call yet)
    double h2d_ms = 0;       // uploads
    double kernel_ms = 0;    // compute (sum over row slabs; norms, GEMM, transform)
    double d2h_ms = 0;       // downloads into the numpy output
    long long device_bytes = 0;  // device memory allocated by the call (buffers + temporaries)
    long long launches = 0;      // row slabs x batch chunks of the main compute
};
CallProfile last_profile();

// Device output buffer of the non-symmetric host-pointer gram (row slabs);
// returns the old value. Tests lower it to exercise the multi-slab path. Default 256 MiB.
long long set_slab_bytes(long long bytes);

// Which GEMM the entry points use. cublas_compiled(): built against cuBLAS.
// use_cublas (default true when compiled) = cuBLAS for the inner products of
// gram / batched_gram, false = the extension's own tiled GEMM (fused transform);
// syrk (default true) = the symmetric cuBLAS gram computes one triangle (SYRK)
// instead of the full product (GEMM). Both are for tests and benchmarks.
bool cublas_compiled();
struct Tuning {
    bool use_cublas = true;
    bool syrk = true;
};
Tuning get_tuning();
void set_tuning(const Tuning& t);

// Temporary device memory of one stream-ordered call (e.g. XLA's FFI scratch
// allocator). allocate() returns nullptr when it cannot; the memory must stay
// valid for the work the call enqueues on its stream (stream-ordered release).
// Without one (nullptr), the entry points use cudaMallocAsync/cudaFreeAsync on
// the call's stream.
class Scratch {
   public:
    virtual ~Scratch() = default;
    virtual void* allocate(std::size_t bytes) = 0;
};

// ---- stream-ordered entry points (device pointers, row-major, dense) --------
// out (n x m) = k(X_i, Z_j). symmetric: Z is X (m == n, Z ignored), exactly
// symmetric output with the exact diagonal k(x, x).
template <class T>
void gram_device(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric,
                 KernelId kid, const KernelParams& p, T* out, void* stream, Scratch* scratch = nullptr);

// out (n x t) = K(X, Z) @ v (v: m x t), fused: K is never written to memory.
// symmetric: Z is X and the diagonal of K is the exact k(x, x).
template <class T>
void kernel_matvec_device(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                          index_t t, KernelId kid, const KernelParams& p, T* out, bool symmetric,
                          void* stream, Scratch* scratch = nullptr);

// A (b,n,p), B (b,m,p): out = stack A_i B_i^T (b,n,m) or their sum (n,m).
// symmetric: B is A (exactly symmetric outputs).
template <class T>
void batched_gram_device(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                         bool symmetric, bool reduce_sum, T* out, void* stream,
                         Scratch* scratch = nullptr);

// ---- host pointers in, host pointers out (legacy default stream) ------------
template <class T>
void gram(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric,
          KernelId kid, const KernelParams& p, T* out);

template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                   index_t t, KernelId kid, const KernelParams& p, T* out, bool symmetric);

template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                  bool symmetric, bool reduce_sum, T* out);

// ---- small device utilities for the bindings (DLPack path) ------------------
int get_device();                       // current device of the calling thread
int exchange_device(int device);        // set the current device, return the previous one
void* device_malloc(std::size_t bytes); // cudaMalloc (throws std::runtime_error)
void device_free(void* p) noexcept;     // cudaFree (errors ignored)
void stream_synchronize(void* stream);  // throws on an asynchronous error
// True iff all `count` entries are finite. Enqueued on `stream`, then waits for it.
template <class T>
bool all_finite_device(const T* p, index_t count, void* stream);

}  // namespace cuda
}  // namespace ntkit
