// Kernel ids, parameters and the elementwise kernel formulas shared by the
// CPU and CUDA paths. Every kernel is a function of dot = <x,z>, sx = |x|^2,
// sz = |z|^2. Framework-free; compiles with plain g++ and with nvcc.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "vexp.hpp"

namespace ntkit {

enum KernelId : int {
    K_LINEAR = 0,
    K_RBF,
    K_LAPLACE,
    K_MATERN12,
    K_MATERN32,
    K_MATERN52,
    K_POLYNOMIAL,
    K_ARCCOS0,
    K_ARCCOS1,
    K_ARCCOS2,
    K_RELU_NNGP,
    K_RELU_NTK,
    K_NUM_KERNELS
};

inline const std::vector<std::string>& kernel_names() {
    static const std::vector<std::string> names = {
        "linear",   "rbf",     "laplace", "matern12", "matern32",  "matern52",
        "polynomial", "arccos0", "arccos1", "arccos2", "relu_nngp", "relu_ntk"};
    return names;
}

inline std::string kernel_names_joined() {
    std::string s;
    for (const auto& n : kernel_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

inline KernelId kernel_from_name(const std::string& name) {
    const auto& names = kernel_names();
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == name) return static_cast<KernelId>(i);
    NTKIT_CHECK(false, "unknown kernel_id '" << name << "'; valid ids: " << kernel_names_joined());
    return K_LINEAR;
}

// Which parameters each kernel takes (names used for validation messages).
inline std::vector<std::string> kernel_param_names(KernelId k) {
    switch (k) {
        case K_RBF: case K_LAPLACE: case K_MATERN12: case K_MATERN32: case K_MATERN52:
            return {"lengthscale"};
        case K_POLYNOMIAL: return {"degree", "gamma", "coef0"};
        case K_RELU_NNGP: case K_RELU_NTK: return {"depth", "weight_std", "bias_std"};
        default: return {};
    }
}

// User-facing parameters (double precision, validated by validate_params).
struct KernelParams {
    double lengthscale = 1.0;
    long long degree = 3;
    double gamma = 1.0;
    double coef0 = 1.0;
    long long depth = 1;
    double weight_std = 1.0;
    double bias_std = 0.0;
};

inline void validate_params(KernelId k, const KernelParams& p) {
    NTKIT_CHECK(k >= 0 && k < K_NUM_KERNELS, "invalid kernel id " << int(k));
    switch (k) {
        case K_RBF: case K_LAPLACE: case K_MATERN12: case K_MATERN32: case K_MATERN52:
            NTKIT_CHECK(std::isfinite(p.lengthscale) && p.lengthscale > 0,
                        "parameter 'lengthscale' must be finite and > 0, got " << p.lengthscale);
            break;
        case K_POLYNOMIAL:
            NTKIT_CHECK(p.degree >= 1 && p.degree <= 1000000,
                        "parameter 'degree' must be a positive int, got " << p.degree);
            NTKIT_CHECK(std::isfinite(p.gamma), "parameter 'gamma' must be finite, got " << p.gamma);
            NTKIT_CHECK(std::isfinite(p.coef0), "parameter 'coef0' must be finite, got " << p.coef0);
            break;
        case K_RELU_NNGP: case K_RELU_NTK:
            NTKIT_CHECK(p.depth >= 0 && p.depth <= 100000,
                        "parameter 'depth' must be an int >= 0, got " << p.depth);
            NTKIT_CHECK(std::isfinite(p.weight_std) && p.weight_std > 0,
                        "parameter 'weight_std' must be finite and > 0, got " << p.weight_std);
            NTKIT_CHECK(std::isfinite(p.bias_std) && p.bias_std >= 0,
                        "parameter 'bias_std' must be finite and >= 0, got " << p.bias_std);
            break;
        default: break;
    }
}

// Precomputed per-dtype constants used inside the hot loops.
template <class T>
struct KConst {
    T inv_2l2;   // 1 / (2 l^2)
    T inv_l;     // 1 / l
    T gamma, coef0;
    int degree;
    int depth;
    T w2, b2;    // weight_std^2, bias_std^2
    T w2_over_d; // weight_std^2 / d  (0 when d == 0)
};

template <class T>
inline KConst<T> make_kconst(const KernelParams& p, index_t d) {
    KConst<T> c;
    c.inv_2l2 = T(1.0 / (2.0 * p.lengthscale * p.lengthscale));
    c.inv_l = T(1.0 / p.lengthscale);
    c.gamma = T(p.gamma);
    c.coef0 = T(p.coef0);
    c.degree = int(p.degree);
    c.depth = int(p.depth);
    c.w2 = T(p.weight_std * p.weight_std);
    c.b2 = T(p.bias_std * p.bias_std);
    c.w2_over_d = d > 0 ? T(p.weight_std * p.weight_std / double(d)) : T(0);
    return c;
}

template <class T> NTKIT_HD NTKIT_FORCEINLINE T k_pi() { return T(3.14159265358979323846); }

// ---- building blocks -------------------------------------------------------
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T ipow(T base, int deg) {
    T r = base;
    for (int i = 1; i < deg; ++i) r *= base;
    return r;
}

template <class T>
NTKIT_HD NTKIT_FORCEINLINE T pos_part(T v) { return v > T(0) ? v : T(0); }

template <class T>
NTKIT_HD NTKIT_FORCEINLINE T clip_rho(T rho) {
    rho = rho > T(1) ? T(1) : rho;
    return rho < T(-1) ? T(-1) : rho;
}

// Arc-cosine kernel of order N given rho (already clipped) and nrm = std::sqrt(sx*sz).
template <int N, class T>
NTKIT_HD NTKIT_FORCEINLINE T arccos_from_rho(T rho, T theta, T sx_sz, T nrm) {
    const T pi = k_pi<T>();
    T sin_t = std::sqrt(pos_part((T(1) - rho) * (T(1) + rho)));
    if (N == 0) return (pi - theta) / pi;
    if (N == 1) return nrm / pi * (sin_t + (pi - theta) * rho);
    return sx_sz / pi * (T(3) * sin_t * rho + (pi - theta) * (T(1) + T(2) * rho * rho));
}

// ReLU NNGP / NTK recursion; `diag` forces rho = 1 when the scale is > 0.
template <bool NTK, class T>
NTKIT_HD inline T relu_kernel(const KConst<T>& c, T dot, T sx, T sz, bool diag) {
    const T pi = k_pi<T>();
    T q = c.w2_over_d * dot + c.b2;
    T qx = c.w2_over_d * sx + c.b2;
    T qz = c.w2_over_d * sz + c.b2;
    T ntk = q;
    for (int l = 0; l < c.depth; ++l) {
        T s, rho, theta;
        if (diag) {
            s = qx;
            rho = s > T(0) ? T(1) : T(0);
            theta = s > T(0) ? T(0) : pi / T(2);
        } else {
            s = std::sqrt(qx * qz);
            rho = s > T(0) ? clip_rho(q / s) : T(0);
            theta = std::acos(rho);
        }
        T sin_t = std::sqrt(pos_part((T(1) - rho) * (T(1) + rho)));
        T q_relu = s / (T(2) * pi) * (sin_t + (pi - theta) * rho);
        T qdot = (pi - theta) / (T(2) * pi);
        ntk = ntk * qdot;
        q = c.w2 * q_relu + c.b2;
        qx = c.w2 * qx / T(2) + c.b2;
        qz = c.w2 * qz / T(2) + c.b2;
        ntk = q + c.w2 * ntk;
    }
    return NTK ? ntk : q;
}

// ---- the kernel formula for id KID ---------------------------------------
template <int KID>
struct is_stationary {
    static constexpr bool value = KID == K_RBF || KID == K_LAPLACE || KID == K_MATERN12 ||
                                  KID == K_MATERN32 || KID == K_MATERN52;
};

// Stationary kernels from the squared distance d2 >= 0 (lengthscale applied here).
template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval_d2(const KConst<T>& c, T d2) {
    if constexpr (KID == K_RBF) {
        return vexp(-d2 * c.inv_2l2);
    } else {
        T r = std::sqrt(d2) * c.inv_l;
        if constexpr (KID == K_MATERN32) {
            T a = T(1.7320508075688772) * r;
            return (T(1) + a) * vexp(-a);
        } else if constexpr (KID == K_MATERN52) {
            T a = T(2.23606797749979) * r;
            return (T(1) + a + T(5) * r * r / T(3)) * vexp(-a);
        } else {
            return vexp(-r);  // Laplace, Matern 1/2
        }
    }
}

template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval(const KConst<T>& c, T dot, T sx, T sz) {
    if constexpr (KID == K_LINEAR) {
        return dot;
    } else if constexpr (is_stationary<KID>::value) {
        T d2 = sx + sz - T(2) * dot;
        return keval_d2<KID>(c, d2 < T(0) ? T(0) : d2);  // (NaN stays NaN)
    } else if constexpr (KID == K_POLYNOMIAL) {
        return ipow(c.gamma * dot + c.coef0, c.degree);
    } else if constexpr (KID == K_ARCCOS0 || KID == K_ARCCOS1 || KID == K_ARCCOS2) {
        T sx_sz = sx * sz;
        T nrm = std::sqrt(sx_sz);
        T rho = sx_sz != T(0) ? clip_rho(dot / nrm) : T(0);
        T theta = std::acos(rho);
        return arccos_from_rho<KID - K_ARCCOS0>(rho, theta, sx_sz, nrm);
    } else if constexpr (KID == K_RELU_NNGP) {
        return relu_kernel<false>(c, dot, sx, sz, false);
    } else {
        static_assert(KID == K_RELU_NTK, "unknown kernel id");
        return relu_kernel<true>(c, dot, sx, sz, false);
    }
}

// Cancellation guard for stationary kernels. The expansion |x|^2 + |z|^2 - 2<x,z>
// carries an error of a few eps * (|x|^2 + |z|^2) per feature; when the result is
// below guard_factor * (|x|^2 + |z|^2) (near-duplicates, the diagonal) it has lost
// most of its digits and the squared distance is recomputed from differences.
// The numpy backend of ntkit applies the same rule (CANCELLATION_GUARD = 16).
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T guard_factor(index_t d) {
    const T eps = sizeof(T) == 4 ? T(1.1920928955078125e-07) : T(2.220446049250313e-16);
    return T(16) * T(d > 1 ? d : 1) * eps;
}

template <class T>
NTKIT_HD inline T exact_sqdist(const T* x, const T* z, index_t d) {
    T s = 0;
    for (index_t k = 0; k < d; ++k) {
        const T df = x[k] - z[k];
        s += df * df;
    }
    return s;
}

// keval with the guard (used where a branch per entry is cheap, e.g. on the GPU).
template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval_guarded(const KConst<T>& c, T dot, T sx, T sz, const T* x,
                                           const T* z, index_t d, T g) {
    if constexpr (is_stationary<KID>::value) {
        T d2 = sx + sz - T(2) * dot;
        if (d2 <= g * (sx + sz)) d2 = exact_sqdist(x, z, d);
        return keval_d2<KID>(c, d2 < T(0) ? T(0) : d2);  // (NaN stays NaN)
    } else {
        return keval<KID>(c, dot, sx, sz);
    }
}

// Exact diagonal value k(x, x) (uses rho = 1 / distance 0 instead of the
// cancellation-prone dot-product formula). Matches keval's convention that
// rho := 0 when the norm product is 0.
template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval_diag(const KConst<T>& c, T sx) {
    if constexpr (KID == K_LINEAR) {
        return sx;
    } else if constexpr (KID == K_RBF || KID == K_LAPLACE || KID == K_MATERN12 ||
                         KID == K_MATERN32 || KID == K_MATERN52) {
        return T(1);
    } else if constexpr (KID == K_POLYNOMIAL) {
        return ipow(c.gamma * sx + c.coef0, c.degree);
    } else if constexpr (KID == K_ARCCOS0 || KID == K_ARCCOS1 || KID == K_ARCCOS2) {
        T sx_sz = sx * sx;
        bool pos = sx_sz != T(0);
        T rho = pos ? T(1) : T(0);
        T theta = pos ? T(0) : k_pi<T>() / T(2);
        return arccos_from_rho<KID - K_ARCCOS0>(rho, theta, sx_sz, sx);
    } else if constexpr (KID == K_RELU_NNGP) {
        return relu_kernel<false>(c, sx, sx, sx, true);
    } else {
        return relu_kernel<true>(c, sx, sx, sx, true);
    }
}

// Runtime -> compile-time kernel id dispatch: calls F::template run<KID>(args...).
#define NTKIT_KERNEL_CASE(ID) \
    case ID: return F::template run<ID>(std::forward<Args>(args)...);

template <class F, class... Args>
inline auto dispatch_kernel(KernelId k, Args&&... args) {
    switch (k) {
        NTKIT_KERNEL_CASE(K_LINEAR)
        NTKIT_KERNEL_CASE(K_RBF)
        NTKIT_KERNEL_CASE(K_LAPLACE)
        NTKIT_KERNEL_CASE(K_MATERN12)
        NTKIT_KERNEL_CASE(K_MATERN32)
        NTKIT_KERNEL_CASE(K_MATERN52)
        NTKIT_KERNEL_CASE(K_POLYNOMIAL)
        NTKIT_KERNEL_CASE(K_ARCCOS0)
        NTKIT_KERNEL_CASE(K_ARCCOS1)
        NTKIT_KERNEL_CASE(K_ARCCOS2)
        NTKIT_KERNEL_CASE(K_RELU_NNGP)
        NTKIT_KERNEL_CASE(K_RELU_NTK)
        default: break;
    }
    throw std::invalid_argument("invalid kernel id");
}
#undef NTKIT_KERNEL_CASE

}  // namespace ntkit
