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
#include <mutex>
#include <string>
#include <vector>

#include "ntkit/cpu_ops.hpp"
#include "ntkit/kernels.hpp"
#ifdef NTKIT_WITH_CUDA
#include "ntkit/cuda_ops.hpp"
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
void check_result(const py::array& out, const char* op, const std::string& kernel, py::handle params) {
    const bool f32 = out.itemsize() == 4;
    if (out.size() == 0 || all_finite(out.data(), static_cast<index_t>(out.size()), f32)) return;
    const std::string ps = params.is_none() ? std::string("(defaults)") : py::repr(params).cast<std::string>();
    throw py::value_error(std::string(op) + ": kernel '" + kernel + "' with parameters " + ps +
                          " gave NaN or Inf on finite inputs: a parameter is outside what " +
                          (f32 ? "float32" : "float64") +
                          " can represent on this data (e.g. a lengthscale far below the spacing of the "
                          "points, or weight_std**2, bias_std**2, gamma**degree overflowing); rescale the "
                          "parameters or the data");
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
