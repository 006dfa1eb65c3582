// CUDA implementations (defined in csrc/cuda/*.cu, only built with NTKIT_WITH_CUDA).
// Host pointers in, host pointers out; device memory is managed internally.
#pragma once
#include "common.hpp"
#include "kernels.hpp"

namespace ntkit {
namespace cuda {

int device_count();  // 0 when no device / driver (never throws)

// Phase timings (CUDA events on the GPU timeline) and device memory of the
// most recent CUDA call in this process; for benchmarks and tests only.
struct CallProfile {
    const char* op = "";     // "gram", "kernel_matvec", "batched_gram" or "" (no call yet)
    double h2d_ms = 0;       // uploads (+ squared norms)
    double kernel_ms = 0;    // compute kernels (sum over row slabs)
    double d2h_ms = 0;       // downloads into the numpy output
    long long device_bytes = 0;  // device memory allocated by the call (all buffers live at once)
    long long launches = 0;      // main compute kernel launches (row slabs x batch chunks)
};
CallProfile last_profile();

// Device output buffer of the non-symmetric gram (row slabs); returns the old
// value. Tests lower it to exercise the multi-slab path. Default 256 MiB.
long long set_slab_bytes(long long bytes);

template <class T>
void gram(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric,
          KernelId kid, const KernelParams& p, T* out);

template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                   index_t t, KernelId kid, const KernelParams& p, T* out, bool symmetric);

template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                  bool symmetric, bool reduce_sum, T* out);

}  // namespace cuda
}  // namespace ntkit
