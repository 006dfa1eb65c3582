// pybind11 bindings for ntkit_native._C (the only file that includes pybind11).
// Every buffer is validated (type, dtype, ndim, shape, C-contiguity via
// strides, alignment, finiteness) before any computation touches it; the GIL
// is released around the compute kernels.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <dlfcn.h>

#include <cmath>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ntkit/cpu_ops.hpp"
#include "ntkit/dlpack_abi.hpp"
#include "ntkit/kernels.hpp"
#ifdef NTKIT_WITH_CUDA
#include "ntkit/cuda_ops.hpp"
#endif
#ifdef NTKIT_WITH_FFI
#include "ntkit/ffi_targets.hpp"
#endif

namespace py = pybind11;
using ntkit::index_t;

#ifndef NTKIT_VERSION
#define NTKIT_VERSION "0.1.0"
#endif

namespace {

// ---------------------------------------------------------------- BLAS
std::once_flag g_blas_once;
std::string g_blas_name = "builtin";

// Fetch scipy's Fortran sgemm/dgemm from the Cython C-API capsules. Called
// lazily (first compute / info()) with the GIL held; failure => builtin GEMM.
std::atomic<bool> g_blas_done{false};

void ensure_blas() {
    if (g_blas_done.load(std::memory_order_acquire)) return;
    // Threads that lose the race wait inside call_once; they must not hold the GIL while they wait,
    // or the winner (which imports scipy and needs the GIL) deadlocks with them.
    py::gil_scoped_release release;
    std::call_once(g_blas_once, [] {
        py::gil_scoped_acquire acquire;
        try {
            py::module_ cb = py::module_::import("scipy.linalg.cython_blas");
            py::dict capi = cb.attr("__pyx_capi__");
            py::capsule cs = capi["sgemm"].cast<py::capsule>();
            py::capsule cd = capi["dgemm"].cast<py::capsule>();
            auto s = reinterpret_cast<ntkit::cpu::sgemm_t>(cs.get_pointer());
            auto d = reinterpret_cast<ntkit::cpu::dgemm_t>(cd.get_pointer());
            if (s != nullptr && d != nullptr) {
                ntkit::cpu::set_blas(s, d);
                g_blas_name = "scipy";
                // Find OpenBLAS' thread-local thread-count setter in the same library.
                Dl_info dli;
                if (dladdr(reinterpret_cast<void*>(s), &dli) != 0 && dli.dli_fname != nullptr) {
                    void* h = dlopen(dli.dli_fname, RTLD_NOW | RTLD_NOLOAD);
                    if (h != nullptr) {
                        void* f = dlsym(h, "openblas_set_num_threads_local");
                        if (f == nullptr) f = dlsym(h, "scipy_openblas_set_num_threads_local");
                        if (f != nullptr)
                            ntkit::cpu::set_blas_threads_local(
                                reinterpret_cast<ntkit::cpu::blas_threads_local_t>(f));
                        // handle intentionally kept: the library stays loaded with scipy
                    }
                }
            }
        } catch (py::error_already_set& e) {
            // scipy missing or without the capsules: keep the builtin GEMM.
        }
        g_blas_done.store(true, std::memory_order_release);
    });
}

// ---------------------------------------------------------------- buffers
struct Arr {
    py::array a;
    int itemsize = 0;  // 4 or 8
    std::vector<index_t> shape;
    const void* ptr = nullptr;
    index_t size = 0;
};

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

Arr check_array(py::handle obj, const char* name, int ndim_lo, int ndim_hi) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " + type_name(obj));
    Arr r;
    r.a = py::reinterpret_borrow<py::array>(obj);
    py::dtype dt = r.a.dtype();
    const char kind = dt.kind();
    const int isz = int(dt.itemsize());
    const bool native = dt.attr("isnative").cast<bool>();
    if (kind != 'f' || (isz != 4 && isz != 8) || !native)
        throw py::type_error(std::string(name) + " has unsupported dtype " +
                             std::string(py::str(dt)) + "; expected float32 or float64");
    r.itemsize = isz;
    const int nd = int(r.a.ndim());
    if (nd < ndim_lo || nd > ndim_hi) {
        std::string want = ndim_lo == ndim_hi ? std::to_string(ndim_lo) + "-D"
                                              : std::to_string(ndim_lo) + "-D or " +
                                                    std::to_string(ndim_hi) + "-D";
        throw py::value_error(std::string(name) + " must be " + want + ", got " +
                              std::to_string(nd) + "-D array");
    }
    r.size = 1;
    for (int k = 0; k < nd; ++k) {
        r.shape.push_back(index_t(r.a.shape(k)));
        r.size *= index_t(r.a.shape(k));
    }
    if (r.size > 0) {
        index_t expect = isz;
        for (int k = nd - 1; k >= 0; --k) {
            if (r.shape[k] != 1 && index_t(r.a.strides(k)) != expect)
                throw py::value_error(std::string(name) +
                                      " must be C-contiguous (the raw _C binding does not copy; "
                                      "use the ntkit_native wrappers or np.ascontiguousarray)");
            expect *= r.shape[k];
        }
        if (reinterpret_cast<std::uintptr_t>(r.a.data()) % std::uintptr_t(isz) != 0)
            throw py::value_error(std::string(name) + " must be aligned");
    }
    r.ptr = r.a.data();
    return r;
}

// NaN iff some entry is NaN/Inf (x*0 is 0 for finite x); one parallel pass for large arrays.
template <class T>
bool all_finite(const T* p, index_t n) {
    T acc = 0;
#pragma omp parallel for simd reduction(+ : acc) if (n > (index_t(1) << 20))
    for (index_t i = 0; i < n; ++i) acc += p[i] * T(0);
    return acc == T(0);
}

bool all_finite(const void* ptr, index_t n, bool f32) {
    py::gil_scoped_release nogil;
    return f32 ? all_finite(static_cast<const float*>(ptr), n) : all_finite(static_cast<const double*>(ptr), n);
}

void check_finite(const Arr& r, const char* name) {
    if (r.size && !all_finite(r.ptr, r.size, r.itemsize == 4))
        throw py::value_error(std::string(name) + " contains NaN or Inf");
}

// A kernel result must be finite when its inputs are: NaN or Inf there means a parameter the
// dtype cannot represent on this data (an inf*0 in Matern 5/2 with a tiny lengthscale, weight_std**2
// or gamma**degree overflowing), which is an error, never a silent NaN.
[[noreturn]] void throw_nonfinite(const char* op, const std::string& kernel, py::handle params, bool f32) {
    const std::string ps = params.is_none() ? std::string("(defaults)") : py::repr(params).cast<std::string>();
    throw py::value_error(std::string(op) + ": kernel '" + kernel + "' with parameters " + ps +
                          " gave NaN or Inf on finite inputs: a parameter is outside what " +
                          (f32 ? "float32" : "float64") +
                          " can represent on this data (e.g. a lengthscale far below the spacing of the "
                          "points, or weight_std**2, bias_std**2, gamma**degree overflowing); rescale the "
                          "parameters or the data");
}

void check_result(const py::array& out, const char* op, const std::string& kernel, py::handle params) {
    const bool f32 = out.itemsize() == 4;
    if (out.size() == 0 || all_finite(out.data(), static_cast<index_t>(out.size()), f32)) return;
    throw_nonfinite(op, kernel, params, f32);
}

void check_same_dtype(const Arr& a, const char* an, const Arr& b, const char* bn) {
    if (a.itemsize != b.itemsize)
        throw py::type_error(std::string(bn) + " has dtype " + (b.itemsize == 4 ? "float32" : "float64") +
                             " but " + an + " has dtype " + (a.itemsize == 4 ? "float32" : "float64") +
                             "; all arrays must share one dtype");
}

// ---------------------------------------------------------------- params
double param_real(py::handle v, const std::string& key) {
    if (v.is_none()) throw py::value_error("parameter '" + key + "' is missing (None)");
    if (PyBool_Check(v.ptr()) || !PyNumber_Check(v.ptr()) || PyComplex_Check(v.ptr()))
        throw py::value_error("parameter '" + key + "' must be a real number, got " + type_name(v));
    double x = PyFloat_AsDouble(v.ptr());
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error("parameter '" + key + "' must be a real number, got " + type_name(v));
    }
    return x;
}

long long param_int(py::handle v, const std::string& key) {
    if (v.is_none()) throw py::value_error("parameter '" + key + "' is missing (None)");
    if (PyBool_Check(v.ptr()) || PyFloat_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
        throw py::value_error("parameter '" + key + "' must be an int, got " + type_name(v));
    int overflow = 0;
    py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
    if (!idx) throw py::error_already_set();
    long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    if (overflow) throw py::value_error("parameter '" + key + "' is out of range");
    return x;
}

ntkit::KernelParams parse_params(ntkit::KernelId kid, py::handle params) {
    ntkit::KernelParams p;
    if (params.is_none()) return p;
    if (!py::isinstance<py::dict>(params))
        throw py::type_error("params must be a dict or None, got " + type_name(params));
    const auto valid = ntkit::kernel_param_names(kid);
    const std::string kname = ntkit::kernel_names()[kid];
    for (auto item : py::reinterpret_borrow<py::dict>(params)) {
        if (!py::isinstance<py::str>(item.first))
            throw py::value_error("parameter names must be strings");
        const std::string key = item.first.cast<std::string>();
        bool known = false;
        for (const auto& v : valid) known = known || (v == key);
        if (!known) {
            std::string vs;
            for (const auto& v : valid) vs += (vs.empty() ? "" : ", ") + v;
            throw py::value_error("unknown parameter '" + key + "' for kernel '" + kname +
                                  "' (valid: " + (vs.empty() ? "none" : vs) + ")");
        }
        if (key == "lengthscale") p.lengthscale = param_real(item.second, key);
        else if (key == "gamma") p.gamma = param_real(item.second, key);
        else if (key == "coef0") p.coef0 = param_real(item.second, key);
        else if (key == "weight_std") p.weight_std = param_real(item.second, key);
        else if (key == "bias_std") p.bias_std = param_real(item.second, key);
        else if (key == "degree") p.degree = param_int(item.second, key);
        else if (key == "depth") p.depth = param_int(item.second, key);
    }
    ntkit::validate_params(kid, p);  // throws std::invalid_argument -> ValueError
    return p;
}

bool parse_device(const std::string& device) {
    if (device == "cpu") return false;
    if (device == "cuda") {
#ifdef NTKIT_WITH_CUDA
        if (ntkit::cuda::device_count() > 0) return true;
        throw std::runtime_error("device='cuda' requested but no CUDA device is available");
#else
        throw std::runtime_error(
            "device='cuda' requested but ntkit_native was built without CUDA support");
#endif
    }
    throw py::value_error("device must be 'cpu' or 'cuda', got '" + device + "'");
}

int cuda_devices() {
#ifdef NTKIT_WITH_CUDA
    return ntkit::cuda::device_count();
#else
    return 0;
#endif
}

// ---------------------------------------------------------------- ops
template <class T>
py::array gram_t(const Arr& X, const Arr* Z, ntkit::KernelId kid, const ntkit::KernelParams& p,
                 bool cuda) {
    const index_t n = X.shape[0], d = X.shape[1];
    const index_t m = Z ? Z->shape[0] : n;
    py::array_t<T> out({n, m});
    const T* xp = static_cast<const T*>(X.ptr);
    const T* zp = Z ? static_cast<const T*>(Z->ptr) : xp;
    T* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (cuda) {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::gram<T>(xp, n, zp, m, d, Z == nullptr, kid, p, op);
#endif
        } else {
            ntkit::cpu::gram<T>(xp, n, zp, m, d, Z == nullptr, kid, p, op);
        }
    }
    return out;
}

py::array py_gram(py::handle Xo, py::handle Zo, const std::string& kernel, py::handle params,
                  const std::string& device) {
    const ntkit::KernelId kid = ntkit::kernel_from_name(kernel);
    const ntkit::KernelParams p = parse_params(kid, params);
    const bool cuda = parse_device(device);
    Arr X = check_array(Xo, "X", 2, 2);
    Arr Z;
    const bool haveZ = !Zo.is_none();
    if (haveZ) {
        Z = check_array(Zo, "Z", 2, 2);
        check_same_dtype(X, "X", Z, "Z");
        if (Z.shape[1] != X.shape[1])
            throw py::value_error("X has " + std::to_string(X.shape[1]) + " features but Z has " +
                                  std::to_string(Z.shape[1]) + " features");
    }
    check_finite(X, "X");
    if (haveZ) check_finite(Z, "Z");
    ensure_blas();
    py::array out = X.itemsize == 4 ? gram_t<float>(X, haveZ ? &Z : nullptr, kid, p, cuda)
                                    : gram_t<double>(X, haveZ ? &Z : nullptr, kid, p, cuda);
    check_result(out, "gram", kernel, params);
    return out;
}

template <class T>
py::array matvec_t(const Arr& X, const Arr* Zp, const Arr& V, ntkit::KernelId kid,
                   const ntkit::KernelParams& p, index_t br, index_t bc, bool cuda) {
    const bool sym = Zp == nullptr;
    const Arr& Z = sym ? X : *Zp;
    const index_t n = X.shape[0], d = X.shape[1], m = Z.shape[0];
    const bool vec = V.shape.size() == 1;
    const index_t t = vec ? 1 : V.shape[1];
    py::array_t<T> out = vec ? py::array_t<T>({n}) : py::array_t<T>({n, t});
    const T* xp = static_cast<const T*>(X.ptr);
    const T* zp = static_cast<const T*>(Z.ptr);
    const T* vp = static_cast<const T*>(V.ptr);
    T* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (cuda) {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::kernel_matvec<T>(xp, n, zp, m, d, vp, t, kid, p, op, sym);
#endif
        } else {
            ntkit::cpu::kernel_matvec<T>(xp, n, zp, m, d, vp, t, kid, p, op, br, bc, sym);
        }
    }
    return out;
}

py::array py_kernel_matvec(py::handle Xo, py::handle Zo, py::handle Vo, const std::string& kernel,
                           py::handle params, py::handle block_rows, py::handle block_cols,
                           const std::string& device) {
    const ntkit::KernelId kid = ntkit::kernel_from_name(kernel);
    const ntkit::KernelParams p = parse_params(kid, params);
    const bool cuda = parse_device(device);
    index_t br = 0, bc = 0;
    if (!block_rows.is_none()) br = param_int(block_rows, "block_rows");
    if (!block_cols.is_none()) bc = param_int(block_cols, "block_cols");
    if (!block_rows.is_none() && br < 1) throw py::value_error("block_rows must be >= 1");
    if (!block_cols.is_none() && bc < 1) throw py::value_error("block_cols must be >= 1");
    Arr X = check_array(Xo, "X", 2, 2);
    const bool haveZ = !Zo.is_none();  // None: Z is X, with the exact diagonal
    Arr Z = haveZ ? check_array(Zo, "Z", 2, 2) : X;
    Arr V = check_array(Vo, "v", 1, 2);
    check_same_dtype(X, "X", Z, "Z");
    check_same_dtype(X, "X", V, "v");
    if (Z.shape[1] != X.shape[1])
        throw py::value_error("X has " + std::to_string(X.shape[1]) + " features but Z has " +
                              std::to_string(Z.shape[1]) + " features");
    if (V.shape[0] != Z.shape[0])
        throw py::value_error("v has " + std::to_string(V.shape[0]) + " rows but Z has " +
                              std::to_string(Z.shape[0]) + " rows");
    check_finite(X, "X");
    if (haveZ) check_finite(Z, "Z");
    check_finite(V, "v");
    ensure_blas();
    py::array out = X.itemsize == 4 ? matvec_t<float>(X, haveZ ? &Z : nullptr, V, kid, p, br, bc, cuda)
                                    : matvec_t<double>(X, haveZ ? &Z : nullptr, V, kid, p, br, bc, cuda);
    check_result(out, "kernel_matvec", kernel, params);
    return out;
}

template <class T>
py::array batched_t(const Arr& A, const Arr* B, bool reduce_sum, bool cuda) {
    const index_t b = A.shape[0], n = A.shape[1], pp = A.shape[2];
    const index_t m = B ? B->shape[1] : n;
    py::array_t<T> out = reduce_sum ? py::array_t<T>({n, m}) : py::array_t<T>({b, n, m});
    const T* ap = static_cast<const T*>(A.ptr);
    const T* bp = B ? static_cast<const T*>(B->ptr) : ap;
    T* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (cuda) {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::batched_gram<T>(ap, b, n, bp, m, pp, B == nullptr, reduce_sum, op);
#endif
        } else {
            ntkit::cpu::batched_gram<T>(ap, b, n, bp, m, pp, B == nullptr, reduce_sum, op);
        }
    }
    return out;
}

py::array py_batched_gram(py::handle Ao, py::handle Bo, const std::string& reduce,
                          const std::string& device) {
    if (reduce != "none" && reduce != "sum")
        throw py::value_error("reduce must be 'none' or 'sum', got '" + reduce + "'");
    const bool cuda = parse_device(device);
    Arr A = check_array(Ao, "A", 3, 3);
    Arr B;
    const bool haveB = !Bo.is_none();
    if (haveB) {
        B = check_array(Bo, "B", 3, 3);
        check_same_dtype(A, "A", B, "B");
        if (B.shape[0] != A.shape[0])
            throw py::value_error("A has batch size " + std::to_string(A.shape[0]) +
                                  " but B has batch size " + std::to_string(B.shape[0]));
        if (B.shape[2] != A.shape[2])
            throw py::value_error("A has " + std::to_string(A.shape[2]) + " features but B has " +
                                  std::to_string(B.shape[2]) + " features");
    }
    check_finite(A, "A");
    if (haveB) check_finite(B, "B");
    ensure_blas();
    const bool rs = reduce == "sum";
    if (A.itemsize == 4) return batched_t<float>(A, haveB ? &B : nullptr, rs, cuda);
    return batched_t<double>(A, haveB ? &B : nullptr, rs, cuda);
}

template <class T>
py::array hadamard_t(const Arr& X, const Arr& S) {
    const index_t n = X.shape[0], d = X.shape[1], nb = S.shape[0], dp = S.shape[2];
    py::array_t<T> out({n, nb * dp});
    const T* xp = static_cast<const T*>(X.ptr);
    const T* sp = static_cast<const T*>(S.ptr);
    T* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        ntkit::cpu::hadamard_blocks<T>(xp, n, d, sp, nb, dp, op);
    }
    return out;
}

py::array py_hadamard_blocks(py::handle Xo, py::handle So) {
    Arr X = check_array(Xo, "X", 2, 2);
    Arr S = check_array(So, "signs", 3, 3);
    check_same_dtype(X, "X", S, "signs");
    const index_t dp = S.shape[2];
    if (S.shape[1] != 3)
        throw py::value_error("signs must have shape (n_blocks, 3, dp), got middle dimension " +
                              std::to_string(S.shape[1]));
    if (dp < 1 || (dp & (dp - 1)) != 0)
        throw py::value_error("signs' last dimension dp must be a power of two, got " + std::to_string(dp));
    if (X.shape[1] > dp)
        throw py::value_error("X has " + std::to_string(X.shape[1]) + " features, more than dp = " +
                              std::to_string(dp));
    check_finite(X, "X");
    check_finite(S, "signs");
    if (X.itemsize == 4) return hadamard_t<float>(X, S);
    return hadamard_t<double>(X, S);
}

py::tuple py_grf_features(py::handle indptr_o, py::handle indices_o, py::handle U_o, py::handle starts_o,
                          long long n_walks, double p_halt, py::handle f_o, unsigned long long seed, int mode) {
    auto as_i64 = [](py::handle h, const char* name) {
        if (!py::isinstance<py::array>(h)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
        py::array a = py::reinterpret_borrow<py::array>(h);
        if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D");
        if (!(a.dtype().kind() == 'i' && a.dtype().itemsize() == 8 && a.dtype().attr("isnative").cast<bool>()))
            throw py::type_error(std::string(name) + " must have dtype int64");
        if (a.size() > 1 && a.strides(0) != 8) throw py::value_error(std::string(name) + " must be contiguous");
        if (a.size() > 0 && reinterpret_cast<std::uintptr_t>(a.data()) % 8 != 0)  // read as index_t*
            throw py::value_error(std::string(name) + " must be aligned");
        return a;
    };
    auto as_f64 = [](py::handle h, const char* name) {
        if (!py::isinstance<py::array>(h)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
        py::array a = py::reinterpret_borrow<py::array>(h);
        if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D");
        if (!(a.dtype().kind() == 'f' && a.dtype().itemsize() == 8 && a.dtype().attr("isnative").cast<bool>()))
            throw py::type_error(std::string(name) + " must have dtype float64");
        if (a.size() > 1 && a.strides(0) != 8) throw py::value_error(std::string(name) + " must be contiguous");
        if (a.size() > 0 && reinterpret_cast<std::uintptr_t>(a.data()) % 8 != 0)  // read as double*
            throw py::value_error(std::string(name) + " must be aligned");
        return a;
    };
    py::array ip = as_i64(indptr_o, "indptr"), ix = as_i64(indices_o, "indices"), st = as_i64(starts_o, "starts");
    py::array u = as_f64(U_o, "weights"), f = as_f64(f_o, "modulation");
    const index_t n = index_t(ip.size()) - 1;
    if (n < 0) throw py::value_error("indptr must have n_nodes + 1 entries");
    const index_t* ipp = static_cast<const index_t*>(ip.data());
    const index_t* ixp = static_cast<const index_t*>(ix.data());
    const index_t* stp = static_cast<const index_t*>(st.data());
    if (ipp[0] != 0 || ipp[n] != index_t(ix.size()) || index_t(u.size()) != index_t(ix.size()))
        throw py::value_error("inconsistent CSR graph: indptr[0] must be 0 and indptr[-1] == len(indices) == len(weights)");
    for (index_t i = 0; i < n; ++i)
        if (ipp[i + 1] < ipp[i]) throw py::value_error("indptr must be non-decreasing");
    for (index_t e = 0; e < index_t(ix.size()); ++e)
        if (ixp[e] < 0 || ixp[e] >= n) throw py::value_error("indices must lie in [0, n_nodes)");
    for (index_t s = 0; s < index_t(st.size()); ++s)
        if (stp[s] < 0 || stp[s] >= n) throw py::value_error("starts must lie in [0, n_nodes)");
    if (n_walks < 1) throw py::value_error("n_walks must be >= 1");
    if (!(p_halt > 0.0 && p_halt < 1.0)) throw py::value_error("p_halt must lie in (0, 1)");
    if (f.size() < 1) throw py::value_error("modulation must have at least one entry");
    if ((mode & 1) && (n_walks % 2)) throw py::value_error("antithetic termination needs an even n_walks");
    Arr ua = check_array(u, "weights", 1, 1), fa = check_array(f, "modulation", 1, 1);
    check_finite(ua, "weights");
    check_finite(fa, "modulation");
    std::vector<index_t> rp, cols;
    std::vector<double> vals;
    long long steps = 0;
    {
        py::gil_scoped_release nogil;
        ntkit::cpu::grf_features(ipp, ixp, static_cast<const double*>(u.data()), n, stp, index_t(st.size()),
                                 index_t(n_walks), p_halt, static_cast<const double*>(f.data()), index_t(f.size()),
                                 std::uint64_t(seed), mode, rp, cols, vals, steps);
    }
    py::array_t<index_t> rp_a(rp.size()), c_a(cols.size());
    py::array_t<double> v_a(vals.size());
    std::copy(rp.begin(), rp.end(), rp_a.mutable_data());
    std::copy(cols.begin(), cols.end(), c_a.mutable_data());
    std::copy(vals.begin(), vals.end(), v_a.mutable_data());
    return py::make_tuple(rp_a, c_a, v_a, steps);
}

// ---------------------------------------------------------------- XLA FFI targets
std::vector<std::string> ffi_platforms() {
    std::vector<std::string> out;
#ifdef NTKIT_WITH_FFI
    for (const auto& t : ntkit::ffi_targets::targets()) {
        bool seen = false;
        for (const auto& p : out) seen = seen || p == t.platform;
        if (!seen) out.emplace_back(t.platform);
    }
#endif
    return out;
}

// name -> PyCapsule holding the XLA_FFI_Handler* (for jax.ffi.register_ffi_target);
// platform None: {platform: {name: capsule}} for every platform of the build.
py::dict ffi_targets(py::handle platform_obj) {
    py::dict d;
#ifdef NTKIT_WITH_FFI
    if (platform_obj.is_none()) {
        for (const auto& p : ffi_platforms()) d[py::str(p)] = ffi_targets(py::str(p));
        return d;
    }
    const std::string platform = platform_obj.cast<std::string>();
    bool known = false;
    for (const auto& t : ntkit::ffi_targets::targets()) {
        if (platform != t.platform) continue;
        known = true;
        d[py::str(t.name)] = py::capsule(t.handler);
    }
    if (!known)
        throw py::value_error("no XLA FFI targets for platform '" + platform + "' (built for: " +
                              [] {
                                  std::string s;
                                  for (const auto& p : ffi_platforms()) s += (s.empty() ? "" : ", ") + p;
                                  return s;
                              }() +
                              ")");
#else
    (void)platform_obj;
    throw std::runtime_error("ntkit_native was built without XLA FFI support (jaxlib headers not found at build time)");
#endif
    return d;
}

// ---------------------------------------------------------------- DLPack (CUDA tensors)
namespace dl = ntkit::dlpack;

// A consumed "dltensor" capsule: renamed "used_dltensor"; the producer's deleter runs
// when this object goes out of scope (with the GIL held).
class DlInput {
   public:
    DlInput(py::handle cap, const char* name) : name_(name) {
        if (!PyCapsule_IsValid(cap.ptr(), "dltensor"))
            throw py::type_error(std::string(name) + ": expected an unconsumed DLPack capsule ('dltensor')");
        mt_ = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
        if (mt_ == nullptr) throw py::error_already_set();
        if (PyCapsule_SetName(cap.ptr(), "used_dltensor") != 0) throw py::error_already_set();
    }
    ~DlInput() {
        if (mt_ != nullptr && mt_->deleter != nullptr) mt_->deleter(mt_);
    }
    DlInput(const DlInput&) = delete;
    DlInput& operator=(const DlInput&) = delete;

    const dl::Tensor& t() const { return mt_->dl_tensor; }
    int itemsize() const { return t().dtype.bits / 8; }
    int device() const { return t().device.device_id; }
    index_t dim(int k) const { return index_t(t().shape[k]); }
    index_t size() const {
        index_t s = 1;
        for (int k = 0; k < t().ndim; ++k) s *= dim(k);
        return s;
    }
    const void* data() const { return static_cast<const char*>(t().data) + t().byte_offset; }

    // CUDA device, float32/float64, ndim in [lo, hi], C-contiguous, aligned.
    void check(int lo, int hi) const {
        const dl::Tensor& x = t();
        if (x.device.device_type != dl::kCUDA)
            throw py::type_error(std::string(name_) + " is a DLPack tensor on device type " +
                                 std::to_string(x.device.device_type) + "; expected a CUDA device (2)");
        if (x.dtype.code != dl::kFloat || (x.dtype.bits != 32 && x.dtype.bits != 64) || x.dtype.lanes != 1)
            throw py::type_error(std::string(name_) + " has an unsupported dtype (code " +
                                 std::to_string(x.dtype.code) + ", " + std::to_string(x.dtype.bits) +
                                 " bits); expected float32 or float64");
        if (x.ndim < lo || x.ndim > hi)
            throw py::value_error(std::string(name_) + " must be " + std::to_string(lo) + "-D" +
                                  (lo == hi ? std::string() : " or " + std::to_string(hi) + "-D") + ", got " +
                                  std::to_string(x.ndim) + "-D");
        if (size() > 0) {
            if (x.strides != nullptr) {
                int64_t expect = 1;
                for (int k = x.ndim - 1; k >= 0; --k) {
                    if (x.shape[k] != 1 && x.strides[k] != expect)
                        throw py::value_error(std::string(name_) +
                                              " must be C-contiguous (device tensors are not copied; "
                                              "call .contiguous() / cupy.ascontiguousarray first)");
                    expect *= x.shape[k];
                }
            }
            if (reinterpret_cast<std::uintptr_t>(data()) % std::uintptr_t(itemsize()) != 0)
                throw py::value_error(std::string(name_) + " must be aligned");
        }
    }

   private:
    dl::ManagedTensor* mt_ = nullptr;
    const char* name_;
};

#ifdef NTKIT_WITH_CUDA
struct DlOutput {
    dl::ManagedTensor mt{};
    int64_t shape[3] = {0, 0, 0};
};

void dl_output_deleter(dl::ManagedTensor* self) {
    if (self == nullptr) return;
    DlOutput* o = static_cast<DlOutput*>(self->manager_ctx);
    ntkit::cuda::device_free(self->dl_tensor.data);
    delete o;
}

void dl_capsule_destructor(PyObject* cap) {
    // never handed to a consumer: free it here (a consumer renames it "used_dltensor")
    if (PyCapsule_IsValid(cap, "dltensor")) {
        auto* mt = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
        if (mt != nullptr && mt->deleter != nullptr) mt->deleter(mt);
    } else {
        PyErr_Clear();
    }
}

// A fresh device buffer of the given shape (float32/float64) owned by a DLPack managed tensor.
class DlResult {
   public:
    DlResult(std::vector<int64_t> shape, int itemsize, int device) : o_(new DlOutput) {
        index_t count = 1;
        for (size_t k = 0; k < shape.size(); ++k) {
            o_->shape[k] = shape[k];
            count *= shape[k];
        }
        dl::Tensor& t = o_->mt.dl_tensor;
        t.data = ntkit::cuda::device_malloc(std::size_t(count) * std::size_t(itemsize));
        t.device = {dl::kCUDA, device};
        t.ndim = int32_t(shape.size());
        t.dtype = {dl::kFloat, uint8_t(itemsize * 8), 1};
        t.shape = o_->shape;
        t.strides = nullptr;
        t.byte_offset = 0;
        o_->mt.manager_ctx = o_;
        o_->mt.deleter = dl_output_deleter;
        count_ = count;
    }
    ~DlResult() {
        if (o_ != nullptr) dl_output_deleter(&o_->mt);
    }
    void* data() const { return o_->mt.dl_tensor.data; }
    index_t count() const { return count_; }
    py::tuple release(int itemsize, int device) {
        py::tuple shape(o_->mt.dl_tensor.ndim);
        for (int k = 0; k < o_->mt.dl_tensor.ndim; ++k) shape[k] = py::int_(o_->shape[k]);
        PyObject* cap = PyCapsule_New(&o_->mt, "dltensor", dl_capsule_destructor);
        if (cap == nullptr) throw py::error_already_set();
        o_ = nullptr;  // owned by the capsule now
        return py::make_tuple(py::reinterpret_steal<py::object>(cap), shape, itemsize == 4 ? "float32" : "float64",
                              device);
    }

   private:
    DlOutput* o_;
    index_t count_ = 0;
};

class DeviceGuard {
   public:
    explicit DeviceGuard(int dev) : prev_(ntkit::cuda::exchange_device(dev)) {}
    ~DeviceGuard() {
        try {
            ntkit::cuda::exchange_device(prev_);
        } catch (...) {
        }
    }

   private:
    int prev_;
};

void dl_check_finite(const DlInput& a, const char* name) {
    bool ok;
    {
        py::gil_scoped_release nogil;
        ok = a.itemsize() == 4 ? ntkit::cuda::all_finite_device(static_cast<const float*>(a.data()), a.size(), nullptr)
                               : ntkit::cuda::all_finite_device(static_cast<const double*>(a.data()), a.size(), nullptr);
    }
    if (!ok) throw py::value_error(std::string(name) + " contains NaN or Inf");
}

bool dl_result_finite(const DlResult& r, int itemsize) {
    py::gil_scoped_release nogil;
    return itemsize == 4 ? ntkit::cuda::all_finite_device(static_cast<const float*>(r.data()), r.count(), nullptr)
                         : ntkit::cuda::all_finite_device(static_cast<const double*>(r.data()), r.count(), nullptr);
}

void dl_same(const DlInput& a, const char* an, const DlInput& b, const char* bn) {
    if (a.itemsize() != b.itemsize())
        throw py::type_error(std::string(bn) + " has dtype " + (b.itemsize() == 4 ? "float32" : "float64") + " but " +
                             an + " has dtype " + (a.itemsize() == 4 ? "float32" : "float64") +
                             "; all arrays must share one dtype");
    if (a.device() != b.device())
        throw py::value_error(std::string(an) + " and " + bn + " are on different CUDA devices (" +
                              std::to_string(a.device()) + " and " + std::to_string(b.device()) + ")");
}
#endif

#ifndef NTKIT_WITH_CUDA
[[noreturn]] void no_cuda_dlpack() {
    throw std::runtime_error("CUDA tensors need ntkit_native built with CUDA (NTKIT_CUDA=1 on a machine with a GPU)");
}
#endif

// The *_dlpack functions take DLPack capsules of CUDA tensors (the Python wrappers obtain them
// with __dlpack__(stream=1): ready on the legacy default stream), compute on the device with the
// stream-ordered entry points on that stream, wait for the result, and return
// (capsule, shape, dtype name, device id) of a new device array. No host copies.
py::tuple py_gram_dlpack(py::handle Xc, py::handle Zc, const std::string& kernel, py::handle params) {
#ifdef NTKIT_WITH_CUDA
    const ntkit::KernelId kid = ntkit::kernel_from_name(kernel);
    const ntkit::KernelParams p = parse_params(kid, params);
    DlInput X(Xc, "X");
    X.check(2, 2);
    std::unique_ptr<DlInput> Z;
    if (!Zc.is_none()) {
        Z.reset(new DlInput(Zc, "Z"));
        Z->check(2, 2);
        dl_same(X, "X", *Z, "Z");
        if (Z->dim(1) != X.dim(1))
            throw py::value_error("X has " + std::to_string(X.dim(1)) + " features but Z has " +
                                  std::to_string(Z->dim(1)) + " features");
    }
    DeviceGuard guard(X.device());
    dl_check_finite(X, "X");
    if (Z) dl_check_finite(*Z, "Z");
    const index_t n = X.dim(0), d = X.dim(1), m = Z ? Z->dim(0) : n;
    DlResult out({n, m}, X.itemsize(), X.device());
    {
        py::gil_scoped_release nogil;
        if (X.itemsize() == 4)
            ntkit::cuda::gram_device<float>(static_cast<const float*>(X.data()), n,
                                            Z ? static_cast<const float*>(Z->data()) : nullptr, m, d, !Z, kid, p,
                                            static_cast<float*>(out.data()), nullptr);
        else
            ntkit::cuda::gram_device<double>(static_cast<const double*>(X.data()), n,
                                             Z ? static_cast<const double*>(Z->data()) : nullptr, m, d, !Z, kid, p,
                                             static_cast<double*>(out.data()), nullptr);
    }
    if (!dl_result_finite(out, X.itemsize())) throw_nonfinite("gram", kernel, params, X.itemsize() == 4);
    return out.release(X.itemsize(), X.device());
#else
    (void)Xc, (void)Zc, (void)kernel, (void)params;
    no_cuda_dlpack();
    return py::tuple();
#endif
}

py::tuple py_kernel_matvec_dlpack(py::handle Xc, py::handle Zc, py::handle Vc, const std::string& kernel,
                                  py::handle params) {
#ifdef NTKIT_WITH_CUDA
    const ntkit::KernelId kid = ntkit::kernel_from_name(kernel);
    const ntkit::KernelParams p = parse_params(kid, params);
    DlInput X(Xc, "X");
    X.check(2, 2);
    std::unique_ptr<DlInput> Z;
    if (!Zc.is_none()) {
        Z.reset(new DlInput(Zc, "Z"));
        Z->check(2, 2);
        dl_same(X, "X", *Z, "Z");
        if (Z->dim(1) != X.dim(1))
            throw py::value_error("X has " + std::to_string(X.dim(1)) + " features but Z has " +
                                  std::to_string(Z->dim(1)) + " features");
    }
    DlInput V(Vc, "v");
    V.check(1, 2);
    dl_same(X, "X", V, "v");
    const index_t n = X.dim(0), d = X.dim(1), m = Z ? Z->dim(0) : n;
    if (V.dim(0) != m)
        throw py::value_error("v has " + std::to_string(V.dim(0)) + " rows but Z has " + std::to_string(m) + " rows");
    const bool vec = V.t().ndim == 1;
    const index_t t = vec ? 1 : V.dim(1);
    DeviceGuard guard(X.device());
    dl_check_finite(X, "X");
    if (Z) dl_check_finite(*Z, "Z");
    dl_check_finite(V, "v");
    DlResult out(vec ? std::vector<int64_t>{n} : std::vector<int64_t>{n, t}, X.itemsize(), X.device());
    {
        py::gil_scoped_release nogil;
        if (X.itemsize() == 4)
            ntkit::cuda::kernel_matvec_device<float>(
                static_cast<const float*>(X.data()), n, Z ? static_cast<const float*>(Z->data()) : nullptr, m, d,
                static_cast<const float*>(V.data()), t, kid, p, static_cast<float*>(out.data()), !Z, nullptr);
        else
            ntkit::cuda::kernel_matvec_device<double>(
                static_cast<const double*>(X.data()), n, Z ? static_cast<const double*>(Z->data()) : nullptr, m, d,
                static_cast<const double*>(V.data()), t, kid, p, static_cast<double*>(out.data()), !Z, nullptr);
    }
    if (!dl_result_finite(out, X.itemsize())) throw_nonfinite("kernel_matvec", kernel, params, X.itemsize() == 4);
    return out.release(X.itemsize(), X.device());
#else
    (void)Xc, (void)Zc, (void)Vc, (void)kernel, (void)params;
    no_cuda_dlpack();
    return py::tuple();
#endif
}

py::tuple py_batched_gram_dlpack(py::handle Ac, py::handle Bc, const std::string& reduce) {
#ifdef NTKIT_WITH_CUDA
    if (reduce != "none" && reduce != "sum")
        throw py::value_error("reduce must be 'none' or 'sum', got '" + reduce + "'");
    DlInput A(Ac, "A");
    A.check(3, 3);
    std::unique_ptr<DlInput> B;
    if (!Bc.is_none()) {
        B.reset(new DlInput(Bc, "B"));
        B->check(3, 3);
        dl_same(A, "A", *B, "B");
        if (B->dim(0) != A.dim(0))
            throw py::value_error("A has batch size " + std::to_string(A.dim(0)) + " but B has batch size " +
                                  std::to_string(B->dim(0)));
        if (B->dim(2) != A.dim(2))
            throw py::value_error("A has " + std::to_string(A.dim(2)) + " features but B has " +
                                  std::to_string(B->dim(2)) + " features");
    }
    DeviceGuard guard(A.device());
    dl_check_finite(A, "A");
    if (B) dl_check_finite(*B, "B");
    const index_t b = A.dim(0), n = A.dim(1), pp = A.dim(2), m = B ? B->dim(1) : n;
    const bool rs = reduce == "sum";
    DlResult out(rs ? std::vector<int64_t>{n, m} : std::vector<int64_t>{b, n, m}, A.itemsize(), A.device());
    {
        py::gil_scoped_release nogil;
        if (A.itemsize() == 4)
            ntkit::cuda::batched_gram_device<float>(static_cast<const float*>(A.data()), b, n,
                                                    B ? static_cast<const float*>(B->data()) : nullptr, m, pp, !B, rs,
                                                    static_cast<float*>(out.data()), nullptr);
        else
            ntkit::cuda::batched_gram_device<double>(static_cast<const double*>(A.data()), b, n,
                                                     B ? static_cast<const double*>(B->data()) : nullptr, m, pp, !B,
                                                     rs, static_cast<double*>(out.data()), nullptr);
        ntkit::cuda::stream_synchronize(nullptr);
    }
    return out.release(A.itemsize(), A.device());
#else
    (void)Ac, (void)Bc, (void)reduce;
    no_cuda_dlpack();
    return py::tuple();
#endif
}

py::dict py_info() {
    ensure_blas();
    py::dict d;
    d["available"] = true;
    d["version"] = NTKIT_VERSION;
#ifdef NTKIT_WITH_CUDA
    d["cuda_compiled"] = true;
#else
    d["cuda_compiled"] = false;
#endif
    d["cuda_devices"] = cuda_devices();
    d["openmp"] = ntkit::cpu::openmp_enabled();
    d["omp_max_threads"] = ntkit::cpu::omp_max_threads();
    d["blas"] = g_blas_name;
    d["blas_threads_local"] = ntkit::cpu::blas_threads_local() != nullptr;
    d["kernels"] = ntkit::kernel_names();
    const std::vector<std::string> plats = ffi_platforms();
    d["ffi"] = !plats.empty();
    d["ffi_platforms"] = plats;
#ifdef NTKIT_WITH_CUDA
    d["cublas"] = ntkit::cuda::cublas_compiled();
#else
    d["cublas"] = false;
#endif
    return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "ntkit native kernels (CPU, optional CUDA). Use the ntkit_native wrappers.";
    m.def("gram", &py_gram, py::arg("X"), py::arg("Z"), py::arg("kernel_id"), py::arg("params"),
          py::arg("device") = "cpu");
    m.def("kernel_matvec", &py_kernel_matvec, py::arg("X"), py::arg("Z"), py::arg("v"),
          py::arg("kernel_id"), py::arg("params"), py::arg("block_rows") = py::none(),
          py::arg("block_cols") = py::none(), py::arg("device") = "cpu");
    m.def("batched_gram", &py_batched_gram, py::arg("A"), py::arg("B"), py::arg("reduce") = "none",
          py::arg("device") = "cpu");
    m.def("hadamard_blocks", &py_hadamard_blocks, py::arg("X"), py::arg("signs"),
          "Structured projections H D3 H D2 H D1 [x, 0] per block (see ntkit_native.hadamard_blocks).");
    m.def("grf_features", &py_grf_features, py::arg("indptr"), py::arg("indices"), py::arg("weights"),
          py::arg("starts"), py::arg("n_walks"), py::arg("p_halt"), py::arg("modulation"), py::arg("seed"),
          py::arg("mode"), "Graph random features of the start nodes (CSR rows); see ntkit_native.grf_features.");
    m.def("info", &py_info);
    m.def("ffi_platforms", &ffi_platforms,
          "Platforms ('cpu', 'CUDA') with XLA FFI targets in this build (empty without FFI).");
    m.def("ffi_targets", &ffi_targets, py::arg("platform") = py::none(),
          "XLA FFI handlers: dict name -> PyCapsule for one platform ('cpu', 'CUDA'), or "
          "{platform: {name: capsule}} when platform is None (for jax.ffi.register_ffi_target).");
    m.def("gram_dlpack", &py_gram_dlpack, py::arg("X"), py::arg("Z"), py::arg("kernel_id"), py::arg("params"));
    m.def("kernel_matvec_dlpack", &py_kernel_matvec_dlpack, py::arg("X"), py::arg("Z"), py::arg("v"),
          py::arg("kernel_id"), py::arg("params"));
    m.def("batched_gram_dlpack", &py_batched_gram_dlpack, py::arg("A"), py::arg("B"), py::arg("reduce") = "none");
    // GEMM back end of the CUDA path (tests, benchmarks): (use_cublas, syrk); None without CUDA.
    m.def("_cuda_get_tuning", []() -> py::object {
#ifdef NTKIT_WITH_CUDA
        const ntkit::cuda::Tuning t = ntkit::cuda::get_tuning();
        return py::make_tuple(t.use_cublas, t.syrk);
#else
        return py::none();
#endif
    });
    m.def("_cuda_set_tuning", [](bool use_cublas, bool syrk) {
#ifdef NTKIT_WITH_CUDA
        ntkit::cuda::Tuning t;
        t.use_cublas = use_cublas;
        t.syrk = syrk;
        ntkit::cuda::set_tuning(t);
#else
        (void)use_cublas, (void)syrk;
#endif
    }, py::arg("use_cublas"), py::arg("syrk"));
    m.def("cuda_device_count", &cuda_devices);
    m.def("_cuda_set_slab_bytes", [](long long bytes) -> long long {
#ifdef NTKIT_WITH_CUDA
        return ntkit::cuda::set_slab_bytes(bytes);
#else
        (void)bytes;
        return 0;
#endif
    });
    // Phase timings / device memory of the last CUDA call (benchmarks, tests); None without CUDA.
    m.def("_cuda_last_profile", []() -> py::object {
#ifdef NTKIT_WITH_CUDA
        const ntkit::cuda::CallProfile pr = ntkit::cuda::last_profile();
        py::dict d;
        d["op"] = std::string(pr.op);
        d["h2d_ms"] = pr.h2d_ms;
        d["kernel_ms"] = pr.kernel_ms;
        d["d2h_ms"] = pr.d2h_ms;
        d["device_bytes"] = pr.device_bytes;
        d["launches"] = pr.launches;
        return std::move(d);
#else
        return py::none();
#endif
    });
#ifdef NTKIT_WITH_CUDA
    m.attr("cuda_compiled") = true;
#else
    m.attr("cuda_compiled") = false;
#endif
    m.def("kernel_params", [](const std::string& k) {
        return ntkit::kernel_param_names(ntkit::kernel_from_name(k));
    });
    m.def("_set_tuning", [](int gram_mode, long long gram_tile, int matvec_blas) {
        auto& t = ntkit::cpu::tuning();
        t.gram_mode = gram_mode;
        t.gram_tile = gram_tile;
        t.matvec_blas = matvec_blas;
    });
    m.def("_use_builtin_blas", [](bool builtin) {
        ensure_blas();
        if (builtin) {
            ntkit::cpu::set_blas(nullptr, nullptr);
            ntkit::cpu::set_blas_threads_local(nullptr);
            g_blas_name = "builtin";
        }
    });
}
