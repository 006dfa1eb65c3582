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

// ---- angle kernels (arc-cosine, ReLU NNGP / NTK) ---------------------------
// The second stage of ntkit/kernels/_angles.py (see its docstring), step for step: for the pairs
// the first stage (below) flags, whose input gap 1 - |cos t| is at most angle_guard(d) / 2 or a
// later layer's at most angle_guard(1) / 2, the angle t is carried by its gaps lo = 1 - cos t = |x^ - z^|^2 / 2 and hi = 1 + cos t =
// |x^ + z^|^2 / 2 (x^ = x / |x|) summed from the rows (angle_gaps_exact): sin t and cos t
// algebraic in the gaps, the angle by asin / acos where each is well conditioned, the terms that
// cancel at t = 0 or pi summed as series: exact angles on identical, parallel and opposite inputs.
template <int KID>
struct is_angular {
    static constexpr bool value = KID == K_ARCCOS0 || KID == K_ARCCOS1 || KID == K_ARCCOS2 ||
                                  KID == K_RELU_NNGP || KID == K_RELU_NTK;
};

// min(0.25, 2^-14 * max(d, 1)): ntkit.kernels._angles.angle_guard.
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T angle_guard(index_t d) {
    const T g = T(6.103515625e-05) * T(d > 1 ? d : 1);
    return g < T(0.25) ? g : T(0.25);
}

// |x^ -+ z^|^2 / 2 (x^ = x / |x|) as |x -+ c z|^2 / (2 |x|^2), c = |x| / |z|, with the norms summed
// here by one loop for both rows and the pair ordered by norm (symmetric in x and z): equal,
// opposite and power-of-two-multiple rows have c = 1 or a power of two, so c z is exact and the
// gap exactly 0, with or without fused multiply-adds. (numpy and jax divide each row by its norm
// instead: the same values up to rounding.)
template <class T>
NTKIT_HD inline void angle_gaps_exact(const T* x, const T* z, index_t d, T& lo, T& hi) {
    T sx = 0, sz = 0;
    for (index_t k = 0; k < d; ++k) {
        sx += x[k] * x[k];
        sz += z[k] * z[k];
    }
    if (sx < sz) {
        const T* t = x;
        x = z;
        z = t;
        const T u = sx;
        sx = sz;
        sz = u;
    }
    const T c = std::sqrt(sx) / std::sqrt(sz);
    T su = 0, sv = 0;
    for (index_t k = 0; k < d; ++k) {
        const T a = x[k] - c * z[k], b = x[k] + c * z[k];
        su += a * a;
        sv += b * b;
    }
    lo = T(0.5) * su / sx;
    hi = T(0.5) * sv / sx;
}

template <class T>
struct HalfAngle {
    T sin_t, cos_t, theta, phi, one_minus_cos;  // phi = pi - theta
};

// From lo = 1 - cos t >= 0, hi = 1 + cos t >= 0 (their sum 2 up to rounding): sin t = sqrt(lo hi) and
// cos t = (hi - lo) / 2 are accurate
// relative to themselves, and so is the angle taken by asin of the sine near the ends (where
// pi - t itself is accurate to a few ulps near t = pi) and by acos of the cosine in between (both
// well conditioned there; numpy and jax take atan2(sin t, -+cos t), which is slower in libm and the
// same to a few ulps). OBTUSE: t may exceed pi/2.
template <bool OBTUSE, class T>
NTKIT_HD NTKIT_FORCEINLINE HalfAngle<T> half_angle(T lo, T hi) {
    HalfAngle<T> a;  // (lo + hi = 2 up to rounding: no normalisation)
    a.sin_t = std::sqrt(lo * hi);
    a.cos_t = T(0.5) * (hi - lo);
    const T pi = k_pi<T>();
    if (a.cos_t > T(0.7)) {
        a.theta = std::asin(a.sin_t);
        a.phi = pi - a.theta;
    } else if (OBTUSE && a.cos_t < T(-0.7)) {
        a.phi = std::asin(a.sin_t);
        a.theta = pi - a.phi;
    } else {
        a.theta = std::acos(a.cos_t);
        a.phi = pi - a.theta;
    }
    a.one_minus_cos = lo;
    return a;
}

// sin t - t cos t: sum_{k>=1} (-1)^(k+1) 2k t^(2k+1) / (2k+1)! below t = 1 (10 terms).
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T sin_minus_t_cos(T t, T sin_t, T cos_t) {
    if (!(t < T(1))) return sin_t - t * cos_t;
    const T t2 = t * t;
    T acc = T(-3.9145882126782523e-19);
    acc = acc * t2 + T(1.4797143443923793e-16);
    acc = acc * t2 + T(-4.498331606952833e-14);
    acc = acc * t2 + T(1.0706029224547743e-11);
    acc = acc * t2 + T(-1.9270852604185937e-09);
    acc = acc * t2 + T(2.505210838544172e-07);
    acc = acc * t2 + T(-2.2045855379188714e-05);
    acc = acc * t2 + T(0.0011904761904761906);
    acc = acc * t2 + T(-0.03333333333333333);
    acc = acc * t2 + T(0.3333333333333333);
    return acc * t2 * t;
}

// J_1 = sin t + (pi - t) cos t = sin p - p cos p at p = pi - t.
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T arccos_j1(const HalfAngle<T>& a) {
    return a.phi < T(1) ? sin_minus_t_cos(a.phi, a.sin_t, -a.cos_t) : a.sin_t + a.phi * a.cos_t;
}

// J_2 = 3 sin t cos t + (pi - t)(1 + 2 cos^2 t); near t = pi, in y = 2 (pi - t):
// sum_{k>=2} (-1)^k (k - 1) y^(2k+1) / (2k+1)!.
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T arccos_j2(const HalfAngle<T>& a) {
    if (!(a.phi < T(1))) return T(3) * a.sin_t * a.cos_t + a.phi * (T(1) + T(2) * a.cos_t * a.cos_t);
    const T y = T(2) * a.phi, y2 = y * y;  // coefficients (-1)^k (k - 1) / (2k+1)!, k = 14 .. 2
    T acc = T(1.4702951752382032e-30);
    acc = acc * y2 + T(-1.1020427836554655e-27);
    acc = acc * y2 + T(7.091645312822921e-25);
    acc = acc * y2 + T(-3.868170170630684e-22);
    acc = acc * y2 + T(1.7615646957052136e-19);
    acc = acc * y2 + T(-6.576508197299464e-17);
    acc = acc * y2 + T(1.9680200780418645e-14);
    acc = acc * y2 + T(-4.58829823909189e-12);
    acc = acc * y2 + T(8.029521918410807e-10);
    acc = acc * y2 + T(-1.0020843354176688e-07);
    acc = acc * y2 + T(8.267195767195768e-06);
    acc = acc * y2 + T(-0.0003968253968253968);
    acc = acc * y2 + T(0.008333333333333333);
    return acc * y2 * y2 * y;
}

// Arc-cosine kernel of order N from the gaps.
template <int N, class T>
NTKIT_HD NTKIT_FORCEINLINE T arccos_from_gaps(T lo, T hi, T sx, T sz) {
    const T inv_pi = T(0.31830988618379067154);
    const HalfAngle<T> a = half_angle<true>(lo, hi);
    if (N == 0) return inv_pi * a.phi;
    if (N == 1) return (inv_pi * (std::sqrt(sx) * std::sqrt(sz))) * arccos_j1(a);
    return (inv_pi * (sx * sz)) * arccos_j2(a);
}

// sqrt((ax + b)(az + b)) - sqrt(ax az) - b = b (ax - az)^2 / ((ax + az + 2 sqrt(ax az)) (s_new + sqrt(ax az) + b))
// with two_ac = 2 sqrt(ax az), s_new = sqrt((ax + b)(az + b)); b > 0, 0 where ax = az = 0.
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T bias_gap(T b2, T ax, T az, T two_ac, T s_new) {
    const T den = (ax + az + two_ac) * (s_new + T(0.5) * two_ac + b2);
    return b2 * (ax - az) * (ax - az) / (den > T(0) ? den : T(1));
}

// ReLU NNGP / NTK recursion from the input gaps (ntkit.kernels._relu._recursion).
template <bool NTK, class T>
NTKIT_HD inline T relu_from_gaps(const KConst<T>& c, T dot, T sx, T sz, T lo, T hi) {
    const T inv_2pi = T(0.15915494309189533577), inv_pi = T(0.31830988618379067154);
    const T pi = k_pi<T>();
    T q = c.w2_over_d * dot + c.b2;
    T ntk = q;
    if (c.depth == 0) return NTK ? ntk : q;
    T qx = c.w2_over_d * sx + c.b2, qz = c.w2_over_d * sz + c.b2;
    T s = std::sqrt(qx * qz);  // (numpy forms the outer product of square roots: the same to an ulp)
    const bool bias = c.b2 > T(0);
    if (bias) {
        const T ac = c.w2_over_d * std::sqrt(sx * sz);
        const T e = bias_gap(c.b2, c.w2_over_d * sx, c.w2_over_d * sz, T(2) * ac, s), inv_s = T(1) / s;
        const T lo0 = (e + ac * lo) * inv_s;
        hi = (e + ac * hi + T(2) * c.b2) * inv_s;
        lo = lo0;
    }
    const T half_w = c.w2 / T(2);
    for (int l = 0; l < c.depth; ++l) {
        const HalfAngle<T> a = l == 0 ? half_angle<true>(lo, hi) : half_angle<false>(lo, hi);
        const T jay = l == 0 ? arccos_j1(a) : a.sin_t + a.phi * a.cos_t;
        const T q_relu = (inv_2pi * s) * jay;
        ntk = ntk * (inv_2pi * a.phi);
        q = c.w2 * q_relu + c.b2;
        ntk = q + c.w2 * ntk;
        if (l + 1 == c.depth) break;
        const T pmj = pi * a.one_minus_cos - sin_minus_t_cos(a.theta, a.sin_t, a.cos_t);
        if (bias) {
            const T ax = half_w * qx, az = half_w * qz;
            qx = ax + c.b2;
            qz = az + c.b2;
            const T s_new = std::sqrt(qx * qz);
            // (bias_gap + (w s / (2 pi)) (pi - J_1)) / s_new with one division
            const T den = (ax + az + c.w2 * s) * (s_new + half_w * s + c.b2);
            const T inv = T(1) / (den * s_new);
            lo = (c.b2 * (ax - az) * (ax - az) + (inv_pi * half_w) * s * pmj * den) * inv;
            hi = T(1) + q * (den * inv);
            s = s_new;
        } else {
            s = half_w * s;
            lo = inv_pi * pmj;
            hi = T(1) + inv_pi * jay;
        }
    }
    return NTK ? ntk : q;
}

// The angle kernel KID from dot, norms and gaps.
template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval_angular(const KConst<T>& c, T dot, T sx, T sz, T lo, T hi) {
    if constexpr (KID == K_RELU_NNGP) {
        return relu_from_gaps<false>(c, dot, sx, sz, lo, hi);
    } else if constexpr (KID == K_RELU_NTK) {
        return relu_from_gaps<true>(c, dot, sx, sz, lo, hi);
    } else {
        return arccos_from_gaps<KID - K_ARCCOS0>(lo, hi, sx, sz);
    }
}

// Exact diagonal of the ReLU kernels: the angle is 0 in every layer.
template <bool NTK, class T>
NTKIT_HD inline T relu_diag(const KConst<T>& c, T sx) {
    T q = c.w2_over_d * sx + c.b2;
    T ntk = q;
    for (int l = 0; l < c.depth; ++l) {
        q = c.w2 * (q / T(2)) + c.b2;
        ntk = q + c.w2 * (ntk / T(2));
    }
    return NTK ? ntk : q;
}

// ---- angle kernels, first stage: arccos of the correlation ---------------------
// Every pair goes through these (ntkit.kernels._dot.arccos_terms / _relu.relu_recursion, the same
// arithmetic), which also report the smallest gap 1 - |cos t| met in any layer; on the CPU the pairs
// whose gap fell to angle_guard(d) / 2 are recomputed from their rows by the gap forms above
// (keval_guarded, ops.cpp). The CUDA kernels (__CUDA_ARCH__) run the first stage only, as they did
// before the gap forms existed: those have compiled for sm_80 / sm_90 but not yet run on a GPU, and
// CUDA code that has not run does not replace code that has. Near-parallel pairs on the GPU keep
// the first stage's error (up to ~1e-8 relative in float64) until then.
template <class T>
NTKIT_HD NTKIT_FORCEINLINE T clip_rho(T rho) {
    rho = rho > T(1) ? T(1) : rho;
    return rho < T(-1) ? T(-1) : rho;
}

template <class T>
NTKIT_HD NTKIT_FORCEINLINE T abs_gap(T rho) { return T(1) - (rho < T(0) ? -rho : rho); }

// Arc-cosine kernel of order N given rho (already clipped) and nrm = std::sqrt(sx*sz).
template <int N, class T>
NTKIT_HD NTKIT_FORCEINLINE T arccos_from_rho(T rho, T theta, T sx_sz, T nrm) {
    const T pi = k_pi<T>();
    T sin_t = std::sqrt(pos_part((T(1) - rho) * (T(1) + rho)));
    if (N == 0) return (pi - theta) / pi;
    if (N == 1) return nrm / pi * (sin_t + (pi - theta) * rho);
    return sx_sz / pi * (T(3) * sin_t * rho + (pi - theta) * (T(1) + T(2) * rho * rho));
}

// ReLU NNGP / NTK recursion; `diag` forces rho = 1 when the scale is > 0. `gap`: the smallest of
// kappa (1 - |rho_0|) and 1 - |rho_l| over the layers (kappa = flag_tau(1) / flag_tau(d): the pair goes to
// the second stage when its input gap is at most flag_tau(d) or a layer's at most flag_tau(1), i.e.
// when gap <= flag_tau(1); ntkit.kernels._angles).
template <bool NTK, class T>
NTKIT_HD inline T relu_kernel(const KConst<T>& c, T dot, T sx, T sz, bool diag, T& gap, T kappa) {
    const T pi = k_pi<T>();
    T q = c.w2_over_d * dot + c.b2;
    T qx = c.w2_over_d * sx + c.b2;
    T qz = c.w2_over_d * sz + c.b2;
    T ntk = q;
    gap = T(1);
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
#if !defined(__CUDA_ARCH__)  // (the device pass computes exactly the formula that ran on the GPU)
        const T g = l == 0 ? kappa * abs_gap(rho) : abs_gap(rho);
        gap = g < gap ? g : gap;
#endif
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

// First stage of the angle kernel KID; `gap` and `kappa` as above.
template <int KID, class T>
NTKIT_HD NTKIT_FORCEINLINE T keval_arccos(const KConst<T>& c, T dot, T sx, T sz, bool diag, T& gap,
                                          T kappa = T(1)) {
    if constexpr (KID == K_RELU_NNGP) {
        return relu_kernel<false>(c, dot, sx, sz, diag, gap, kappa);
    } else if constexpr (KID == K_RELU_NTK) {
        return relu_kernel<true>(c, dot, sx, sz, diag, gap, kappa);
    } else {
        T sx_sz = sx * sz;
        T nrm = diag ? sx : std::sqrt(sx_sz);
        T rho, theta;
        if (diag) {
            rho = sx_sz != T(0) ? T(1) : T(0);
            theta = sx_sz != T(0) ? T(0) : k_pi<T>() / T(2);
        } else {
            rho = sx_sz != T(0) ? clip_rho(dot / nrm) : T(0);
            theta = std::acos(rho);
        }
#if !defined(__CUDA_ARCH__)
        gap = kappa * abs_gap(rho);
#endif
        return arccos_from_rho<KID - K_ARCCOS0>(rho, theta, sx_sz, nrm);
    }
}

// Both stages for one pair with its rows (x, z of length d).
template <int KID, class T>
NTKIT_HD inline T keval_angle_rows(const KConst<T>& c, T dot, T sx, T sz, const T* x, const T* z, index_t d) {
    T gap;
    const T tau = T(0.5) * angle_guard<T>(1);
    const T v = keval_arccos<KID>(c, dot, sx, sz, false, gap, angle_guard<T>(1) / angle_guard<T>(d));
    if (!(gap <= tau) || !(sx > T(0)) || !(sz > T(0))) return v;  // (a zero row keeps the first stage)
    T lo, hi;
    angle_gaps_exact(x, z, d, lo, hi);
    return keval_angular<KID>(c, dot, sx, sz, lo, hi);
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
    } else {
        static_assert(is_angular<KID>::value, "unknown kernel id");
        T gap;
        return keval_arccos<KID>(c, dot, sx, sz, false, gap);
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
    } else if constexpr (is_angular<KID>::value) {
#if defined(__CUDA_ARCH__)
        T gap;
        return keval_arccos<KID>(c, dot, sx, sz, false, gap);
#else
        return keval_angle_rows<KID>(c, dot, sx, sz, x, z, d);
#endif
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
#if defined(__CUDA_ARCH__)
        T gap;
        return keval_arccos<KID>(c, sx, sx, sx, true, gap);
#else
        const bool pos = sx * sx != T(0);
        return arccos_from_gaps<KID - K_ARCCOS0>(pos ? T(0) : T(1), pos ? T(2) : T(1), sx, sx);
#endif
    } else if constexpr (KID == K_RELU_NNGP) {
#if defined(__CUDA_ARCH__)
        T gap;
        return keval_arccos<KID>(c, sx, sx, sx, true, gap);
#else
        return relu_diag<false>(c, sx);
#endif
    } else {
#if defined(__CUDA_ARCH__)
        T gap;
        return keval_arccos<KID>(c, sx, sx, sx, true, gap);
#else
        return relu_diag<true>(c, sx);
#endif
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
