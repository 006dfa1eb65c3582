// GEMM back end of the CUDA path: cuBLAS when the extension is built against it
// (NTKIT_WITH_CUBLAS), plus the run-time switches (get_tuning / set_tuning) and
// the per-device SM count.
//
// cuBLAS handles: one per (thread, device, stream), created on first use and
// never destroyed (a handle destroyed at process exit may run after the CUDA
// runtime has shut down). One handle per stream because a handle's default
// workspace must not be shared by kernels running concurrently on two streams.
// Math mode CUBLAS_DEFAULT_MATH: FP32 GEMMs are true FP32 (TF32 only with
// CUBLAS_TF32_TENSOR_OP_MATH, which is never set); FP64 may use the FP64 tensor
// cores (IEEE FP64 FMA, same precision).
#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>

#include "common.cuh"

#ifdef NTKIT_WITH_CUBLAS
#include <cublas_v2.h>
#endif

namespace ntkit {
namespace cuda {

namespace {
std::atomic<bool> g_use_cublas{true};
std::atomic<bool> g_syrk{true};
}  // namespace

bool cublas_compiled() {
#ifdef NTKIT_WITH_CUBLAS
    return true;
#else
    return false;
#endif
}

Tuning get_tuning() {
    Tuning t;
    t.use_cublas = g_use_cublas.load() && cublas_compiled();
    t.syrk = g_syrk.load();
    return t;
}

void set_tuning(const Tuning& t) {
    g_use_cublas.store(t.use_cublas);
    g_syrk.store(t.syrk);
}

namespace detail {

bool use_cublas() { return cublas_compiled() && g_use_cublas.load(); }
bool use_syrk() { return g_syrk.load(); }

int sm_count() {
    static std::mutex mu;
    static std::vector<int> counts;
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    std::lock_guard<std::mutex> lk(mu);
    if (int(counts.size()) <= dev) counts.resize(dev + 1, 0);
    if (counts[dev] == 0) CUDA_CHECK(cudaDeviceGetAttribute(&counts[dev], cudaDevAttrMultiProcessorCount, dev));
    return counts[dev];
}

#ifdef NTKIT_WITH_CUBLAS
namespace {
void check_int(ll v, const char* what) {
    if (v < 0 || v > ll(INT_MAX))
        throw std::runtime_error(std::string("ntkit cuda: ") + what + " = " + std::to_string(v) +
                                 " exceeds the cuBLAS int range");
}

// beta == 0 and k == 0: C <- 0 (without trusting the GEMM with an empty inner dimension)
template <class T>
void zero_rows(cudaStream_t st, ll n, ll m, T* C, ll ldc) {
    if (n <= 0 || m <= 0) return;
    CUDA_CHECK(cudaMemset2DAsync(C, sizeof(T) * size_t(ldc), 0, sizeof(T) * size_t(m), size_t(n), st));
}
}  // namespace

#define CUBLAS_CHECK(expr)                                                                        \
    do {                                                                                          \
        cublasStatus_t ntkit_st_ = (expr);                                                        \
        if (ntkit_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
            throw std::runtime_error(std::string("cuBLAS error in ") + #expr + ": " +             \
                                     cublasGetStatusString(ntkit_st_));                           \
    } while (0)

namespace {
struct HandleEntry {
    int device;
    cudaStream_t stream;
    cublasHandle_t handle;
};

cublasHandle_t handle_for(cudaStream_t st) {
    thread_local std::vector<HandleEntry> cache;
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    for (const auto& e : cache)
        if (e.device == dev && e.stream == st) return e.handle;
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, st));
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    cache.push_back({dev, st, h});
    return h;
}

// Row-major C = A B^T is column-major C^T = B^T-as-stored ... : with A (n x k) and B (m x k)
// row-major, i.e. column-major k x n and k x m, C^T (m x n) = op_T(B) * op_N(A).
cublasStatus_t gemm_t(cublasHandle_t h, int m, int n, int k, const float* B, int ldb, const float* A, int lda,
                      float beta, float* C, int ldc) {
    const float one = 1.0f;
    return cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, B, ldb, A, lda, &beta, C, ldc);
}
cublasStatus_t gemm_t(cublasHandle_t h, int m, int n, int k, const double* B, int ldb, const double* A, int lda,
                      double beta, double* C, int ldc) {
    const double one = 1.0;
    return cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, B, ldb, A, lda, &beta, C, ldc);
}
// Row-major upper triangle of A A^T = column-major lower triangle of op_T(A) op_T(A)^T.
cublasStatus_t syrk_t(cublasHandle_t h, int n, int k, const float* A, int lda, float beta, float* C, int ldc) {
    const float one = 1.0f;
    return cublasSsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, k, &one, A, lda, &beta, C, ldc);
}
cublasStatus_t syrk_t(cublasHandle_t h, int n, int k, const double* A, int lda, double beta, double* C, int ldc) {
    const double one = 1.0;
    return cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, k, &one, A, lda, &beta, C, ldc);
}
cublasStatus_t gemm_batched_t(cublasHandle_t h, int m, int n, int k, const float* B, int ldb, ll sB,
                              const float* A, int lda, ll sA, float* C, int ldc, ll sC, int batch) {
    const float one = 1.0f, zero = 0.0f;
    return cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, B, ldb, sB, A, lda, sA, &zero,
                                     C, ldc, sC, batch);
}
cublasStatus_t gemm_batched_t(cublasHandle_t h, int m, int n, int k, const double* B, int ldb, ll sB,
                              const double* A, int lda, ll sA, double* C, int ldc, ll sC, int batch) {
    const double one = 1.0, zero = 0.0;
    return cublasDgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, B, ldb, sB, A, lda, sA, &zero,
                                     C, ldc, sC, batch);
}
}  // namespace

template <class T>
void blas_gemm_nt(cudaStream_t st, ll n, ll m, ll k, const T* A, ll lda, const T* B, ll ldb, T beta, T* C,
                  ll ldc) {
    if (n <= 0 || m <= 0) return;
    if (k <= 0) {
        if (beta == T(0)) zero_rows(st, n, m, C, ldc);
        return;  // beta == 1: nothing to add (callers only use 0 and 1)
    }
    check_int(m, "m");
    check_int(k, "k");
    check_int(lda, "lda");
    check_int(ldb, "ldb");
    check_int(ldc, "ldc");
    cublasHandle_t h = handle_for(st);
    const ll step = ll(INT_MAX);
    for (ll r0 = 0; r0 < n; r0 += step) {
        const ll rows = std::min(step, n - r0);
        CUBLAS_CHECK(gemm_t(h, int(m), int(rows), int(k), B, int(ldb), A + r0 * lda, int(lda), beta, C + r0 * ldc,
                            int(ldc)));
    }
}

template <class T>
void blas_syrk_upper(cudaStream_t st, ll n, ll k, const T* A, ll lda, T beta, T* C, ll ldc) {
    if (n <= 0) return;
    if (k <= 0) {
        if (beta == T(0)) zero_rows(st, n, n, C, ldc);
        return;
    }
    check_int(n, "n");
    check_int(k, "k");
    check_int(lda, "lda");
    check_int(ldc, "ldc");
    CUBLAS_CHECK(syrk_t(handle_for(st), int(n), int(k), A, int(lda), beta, C, int(ldc)));
}

template <class T>
void blas_gemm_nt_batched(cudaStream_t st, ll batch, ll n, ll m, ll k, const T* A, ll lda, ll sA, const T* B,
                          ll ldb, ll sB, T* C, ll ldc, ll sC) {
    if (batch <= 0 || n <= 0 || m <= 0) return;
    if (k <= 0) {
        for (ll s = 0; s < batch; ++s) zero_rows(st, n, m, C + s * sC, ldc);
        return;
    }
    check_int(n, "n");
    check_int(m, "m");
    check_int(k, "k");
    check_int(lda, "lda");
    check_int(ldb, "ldb");
    check_int(ldc, "ldc");
    cublasHandle_t h = handle_for(st);
    const ll step = ll(INT_MAX);
    for (ll s0 = 0; s0 < batch; s0 += step) {
        const ll cnt = std::min(step, batch - s0);
        CUBLAS_CHECK(gemm_batched_t(h, int(m), int(n), int(k), B + s0 * sB, int(ldb), sB, A + s0 * sA, int(lda), sA,
                                    C + s0 * sC, int(ldc), sC, int(cnt)));
    }
}

#else  // !NTKIT_WITH_CUBLAS: never called (use_cublas() is false)

template <class T>
void blas_gemm_nt(cudaStream_t, ll, ll, ll, const T*, ll, const T*, ll, T, T*, ll) {
    throw std::runtime_error("ntkit cuda: built without cuBLAS");
}
template <class T>
void blas_syrk_upper(cudaStream_t, ll, ll, const T*, ll, T, T*, ll) {
    throw std::runtime_error("ntkit cuda: built without cuBLAS");
}
template <class T>
void blas_gemm_nt_batched(cudaStream_t, ll, ll, ll, ll, const T*, ll, ll, const T*, ll, ll, T*, ll, ll) {
    throw std::runtime_error("ntkit cuda: built without cuBLAS");
}

#endif

#define NTKIT_BLAS_INSTANTIATE(T)                                                                    \
    template void blas_gemm_nt<T>(cudaStream_t, ll, ll, ll, const T*, ll, const T*, ll, T, T*, ll); \
    template void blas_syrk_upper<T>(cudaStream_t, ll, ll, const T*, ll, T, T*, ll);                \
    template void blas_gemm_nt_batched<T>(cudaStream_t, ll, ll, ll, ll, const T*, ll, ll, const T*, ll, \
                                          ll, T*, ll, ll);
NTKIT_BLAS_INSTANTIATE(float)
NTKIT_BLAS_INSTANTIATE(double)
#undef NTKIT_BLAS_INSTANTIATE

}  // namespace detail
}  // namespace cuda
}  // namespace ntkit
