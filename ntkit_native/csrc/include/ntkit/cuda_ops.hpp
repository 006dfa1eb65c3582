// CUDA implementations (defined in csrc/cuda/*.cu, only built with NTKIT_WITH_CUDA).
// Host pointers in, host pointers out; device memory is managed internally.
#pragma once
#include "common.hpp"
#include "kernels.hpp"

namespace ntkit {
namespace cuda {

int device_count();  // 0 when no device / driver (never throws)

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
