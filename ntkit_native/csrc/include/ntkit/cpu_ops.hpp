// CPU implementations of the ntkit native ops (framework-free).
#pragma once
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "kernels.hpp"

namespace ntkit {
namespace cpu {

// Fortran BLAS gemm signatures (column-major), e.g. from scipy.linalg.cython_blas.
using sgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*,
                         const float*, const float*, const int*, const float*, const int*,
                         const float*, float*, const int*);
using dgemm_t = void (*)(const char*, const char*, const int*, const int*, const int*,
                         const double*, const double*, const int*, const double*, const int*,
                         const double*, double*, const int*);

// Install external BLAS (nullptr -> builtin blocked GEMM).
void set_blas(sgemm_t s, dgemm_t d);
// Optional OpenBLAS `openblas_set_num_threads_local` (returns the previous value):
// used to keep BLAS single-threaded inside our own OpenMP worker threads.
using blas_threads_local_t = int (*)(int);
void set_blas_threads_local(blas_threads_local_t f);
blas_threads_local_t blas_threads_local();
bool has_blas();

bool openmp_enabled();
int omp_max_threads();

// Tuning knobs (internal; for benchmarking the threading strategies).
//   gram_mode: 0 = sequential tiles, threaded BLAS per tile + OpenMP transform
//              1 = OpenMP over tiles, BLAS per tile inside the threads
//              2 = one threaded BLAS call for all rows, then OpenMP transform
//   matvec_blas: 1 = tile dots through BLAS (inside OpenMP threads, made single-
//                threaded there when possible), 0 = builtin
struct Tuning {
    int gram_mode = 1;
    index_t gram_tile = 1024;
    int matvec_blas = 1;
};
Tuning& tuning();

// out (n x m, row-major) = k(X_i, Z_j). symmetric: Z is X (m == n), only the
// upper block triangle is computed, mirrored, and the diagonal is exact.
template <class T>
void gram(const T* X, index_t n, const T* Z, index_t m, index_t d, bool symmetric,
          KernelId kid, const KernelParams& p, T* out);

// out (n x t) = K(X, Z) @ v (v is m x t), streamed over tiles; K never stored.
// symmetric: Z is X (m == n) and the diagonal of K is the exact k(x, x).
template <class T>
void kernel_matvec(const T* X, index_t n, const T* Z, index_t m, index_t d, const T* v,
                   index_t t, KernelId kid, const KernelParams& p, T* out,
                   index_t block_rows, index_t block_cols, bool symmetric);

// A (b,n,p), B (b,m,p): out = stack A_i B_i^T (b,n,m) or sum (n,m).
template <class T>
void batched_gram(const T* A, index_t b, index_t n, const T* B, index_t m, index_t p,
                  bool symmetric, bool reduce_sum, T* out);

// Structured projections (fast Walsh-Hadamard): X (n x d), signs (nb x 3 x dp), dp a power of
// two >= d; out (n x nb*dp) = per block b: H D3 H D2 H D1 [x, 0], H normalised.
template <class T>
void hadamard_blocks(const T* X, index_t n, index_t d, const T* signs, index_t nb, index_t dp, T* out);

// Graph random features (see csrc/cpu/walks.cpp). CSR graph (indptr n+1, indices, U per edge);
// for each start node, n_walks walks halting with probability p_halt, cut at length f_len-1;
// mode bit 0: antithetic termination, bit 1: repelling walks. Output rows in CSR form.
void grf_features(const index_t* indptr, const index_t* indices, const double* U, index_t n,
                  const index_t* starts, index_t n_starts, index_t n_walks, double p_halt, const double* f,
                  index_t f_len, std::uint64_t seed, int mode, std::vector<index_t>& row_ptr,
                  std::vector<index_t>& cols, std::vector<double>& vals, long long& steps_out);

// Default tile sizes for kernel_matvec.
index_t default_block_rows(int itemsize);
index_t default_block_cols(int itemsize);

}  // namespace cpu
}  // namespace ntkit
