"""ReluNNGP, ReluNTK and ArcCosine against a 90-digit reference, on the inputs where ``arccos`` of a
rounded correlation used to lose half the digits: identical, parallel, opposite and nearly
(anti-)parallel pairs (issue 21), at depths 1..8, on every backend of the primitive.

The reference (``decimal``, 90 significant digits) takes the float inputs as exact rationals,
forms ``<x,z>``, ``|x|^2``, ``|z|^2`` and ``|x|^2 |z|^2 - <x,z>^2`` by the Lagrange identity
``sum_{i<j} (x_i z_j - x_j z_i)^2`` (no cancellation), and runs the layer recursion with
``t = atan2(sqrt(det), q)``, ``sin t = sqrt(det) / s``, ``cos t = q / s``. Identical and opposite
inputs get exactly 0 and pi, and a reference value of exactly 0 (opposite inputs without bias)
must be met exactly.

Bounds: ``450 eps`` relative in the input's dtype (float64 1e-13, float32 5.4e-5). The computed
angle of a pair whose angle comes near 0 or pi in some layer is exact up to a few ulps (its gaps
are summed from the normalised rows); the others keep arccos of the correlation, whose error
``sqrt(n_features) eps`` moves the angle by at most ``2^7 eps`` above the guard (see
``ntkit.kernels._angles``), i.e. each layer's factor ``(pi - t) / (2 pi)`` by ``40 eps``
relative; each layer adds ~10 roundings of relative size eps and maps relative errors with
constants of order 1 (the recursion is Lipschitz in the angle and in the variances): depth 8
stays below ~400 eps even if every layer sat at the guard ("above_guard" puts the first one
there). Measured (the guard pair at depth 8): float64 3.4e-14, float32 1.1e-5 (94 eps).
For the generic pair the error is measured against the Cauchy-Schwarz scale
``sqrt(K(x, x) K(z, z))``: without bias the depth-1 NTK of an obtuse pair is a difference of two
terms of that size (``q_1 + w q_0 (pi - t) / (2 pi)`` with ``q_0 < 0``), and the rounding of the
input ``<x, z>`` is relative to ``|x| |z|``, not to the difference; that conditioning is the
problem's, not the formula's. So is the near-opposite pair's (see ``_partners``).
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal as D

import numpy as np
import pytest

from ntkit.kernels import ArcCosine, ReluNNGP, ReluNTK
from ntkit.kernels._angles import angle_guard
from ntkit.ops import gram, kernel_matvec
from tests.conftest import BACKENDS

_CTX = decimal.Context(prec=90)
_PI = _CTX.plus(D("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534"
                  "211706798214808651"))
_TINY = D(10) ** -95
BOUND = {np.dtype(t): 450 * float(np.finfo(t).eps) for t in (np.float64, np.float32)}
D_FEATURES = 7
# (weight_std, bias_std); the last: a bias that dominates, so the later layers' gaps shrink (~2x per layer)
PARAMS = [(1.0, 0.0), (1.3, 0.2), (1.0, 2.0)]


# --------------------------------------------------------------------------- 90-digit reference
def _atan01(t):
    """atan(t) for 0 <= t <= 1: argument halving, then Taylor."""
    halvings = 0
    while t > D("0.05"):
        t = t / (1 + (1 + t * t).sqrt())
        halvings += 1
    t2, term, s, k = t * t, t, D(0), 0
    while abs(term) > _TINY:
        s += term / (2 * k + 1)
        term = -term * t2
        k += 1
    return s * 2**halvings


def _atan2(y, x):
    """The angle of (x, y), y >= 0, in [0, pi]."""
    if y == 0:
        return D(0) if x >= 0 else _PI
    if x == 0:
        return _PI / 2
    a = abs(x)
    r = _atan01(y / a) if y <= a else _PI / 2 - _atan01(a / y)
    return r if x > 0 else _PI - r


def _moments(x, z):
    xs, zs = [D(float(v)) for v in x], [D(float(v)) for v in z]
    dot = sum((a * b for a, b in zip(xs, zs)), D(0))
    sx, sz = sum((a * a for a in xs), D(0)), sum((b * b for b in zs), D(0))
    det = sum(((xs[i] * zs[j] - xs[j] * zs[i]) ** 2 for i in range(len(xs)) for j in range(i + 1, len(xs))), D(0))
    d2 = sum(((a - b) ** 2 for a, b in zip(xs, zs)), D(0))
    return dot, sx, sz, det, d2


def _angle(det, q, s):
    """(t, sin t, cos t) of the covariance [[., q], [q, .]] with det = qx qz - q^2 and s = sqrt(qx qz)."""
    if s == 0:
        return _PI / 2, D(1), D(0)
    r = max(det, D(0)).sqrt()
    return _atan2(r, q), r / s, q / s


def ref_relu(x, z, depth, weight_std, bias_std):
    """[(NNGP, NTK) at depth 0, 1, ..., depth] of [Dense, Relu] * depth + Dense (NTK parameterisation)."""
    with decimal.localcontext(_CTX):
        dot, sx, sz, det, d2 = _moments(x, z)
        w, b = D(weight_std) ** 2, D(bias_std) ** 2
        c = w / len(x)
        q, qx, qz = c * dot + b, c * sx + b, c * sz + b
        qdet = c * c * det + b * c * d2  # qx qz - q^2, exactly
        ntk = q
        out = [(q, ntk)]
        for _ in range(depth):
            s = (qx * qz).sqrt()
            t, sin_t, cos_t = _angle(qdet, q, s)
            q_relu = s * (sin_t + (_PI - t) * cos_t) / (2 * _PI)
            ntk = ntk * (_PI - t) / (2 * _PI)
            qx, qz, q = w * qx / 2 + b, w * qz / 2 + b, w * q_relu + b
            qdet = qx * qz - q * q  # 90 digits: ~40 left after the cancellation at angle 1e-9
            ntk = q + w * ntk
            out.append((q, ntk))
        return out


def ref_arccos(x, z, order):
    with decimal.localcontext(_CTX):
        dot, sx, sz, det, _ = _moments(x, z)
        s = (sx * sz).sqrt()
        t, sin_t, cos_t = _angle(det, dot, s)
        J = [_PI - t, sin_t + (_PI - t) * cos_t, 3 * sin_t * cos_t + (_PI - t) * (1 + 2 * cos_t * cos_t)][order]
        return s**order * J / _PI


# --------------------------------------------------------------------------- the inputs
def _partners(x, rng):
    """The partners z of x, by name (computed in float64; the reference takes them as they are)."""
    e = rng.standard_normal(x.shape)
    e -= (e @ x) / (x @ x) * x
    e *= np.linalg.norm(x) / np.linalg.norm(e)  # |e| = |x|, e orthogonal to x

    def rotated(a):
        return math.cos(a) * x + math.sin(a) * e

    # "near_opposite" (angle pi - 1e-7) is held to the generic pair's scale: without bias the kernels
    # vanish there like (pi - t)^3, and the angle of two unequal-norm vectors this close to opposite
    # is only known to an absolute O(eps) (the normalisation's rounding), i.e. (pi - t) to 1e-9
    # relative. -2.5 x is not opposite to x once rounded (angle pi - O(eps)); -x, -2x are.
    # "above_guard": 1 - cos t at 1.2 times the gap below which the primitive recomputes a pair from
    # its rows (ntkit.kernels._angles): the first stage's (arccos) worst case.
    a = math.sqrt(2.4 * 0.5 * angle_guard(D_FEATURES))
    return {"identical": x.copy(), "parallel_x3": 3 * x, "parallel_x2": 2 * x, "opposite": -x,
            "opposite_x2": -2 * x, "angle_1e-6": rotated(1e-6), "angle_1e-9": rotated(1e-9),
            "above_guard": rotated(a), "above_guard_opposite": rotated(math.pi - a),
            "near_opposite": rotated(math.pi - 1e-7), "generic": rng.standard_normal(x.shape)}


def _inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(D_FEATURES)
    parts = _partners(x, rng)
    X = x[None].astype(dtype)
    Z = np.stack(list(parts.values())).astype(dtype)
    return X, Z, list(parts)


def _check(values, refs, scales, names, bound, what):
    """|value - ref| <= bound * scale, scale = |ref| (0 must be met exactly) or the generic pair's scale."""
    for v, r, s, name in zip(values, refs, scales, names):
        err = abs(float(v) - float(r))
        assert err <= bound * float(s), f"{what} {name}: {float(v)!r} vs {float(r)!r} (error {err:.2e})"


def _scales(refs, names, diag_x, diag_z):
    return [abs(r) if n not in _ABSOLUTE else (dx * dz).sqrt() for r, n, dx, dz in zip(refs, names, diag_x, diag_z)]


_ABSOLUTE = ("generic", "near_opposite", "above_guard_opposite")  # checked against sqrt(K(x, x) K(z, z)); the others relative


# jax compiles one block per kernel and depth: all depths on numpy and native; on jax depth 4 (layer 0
# and the later layers run different code; depths beyond repeat the later layers) and fewer kernels.
def _depths(backend, dtype):
    return (4,) if backend == "jax" else range(1, 9)


def _kernels(backend, dtype, b):
    if backend == "jax" and (dtype == np.float32 or b == 0):
        return (ReluNTK,)
    return (ReluNNGP, ReluNTK)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_kernels_match_90_digit_reference(backend, dtype):
    X, Z, names = _inputs(dtype)
    x64, z64 = X.astype(np.float64), Z.astype(np.float64)
    for w, b in PARAMS if backend != "jax" or dtype == np.float64 else PARAMS[1:2]:
        ref = [ref_relu(x64[0], z, 8, w, b) for z in z64]
        ref_xx = ref_relu(x64[0], x64[0], 8, w, b)
        ref_zz = [ref_relu(z, z, 8, w, b) for z in z64]
        for depth in _depths(backend, dtype):
            for Kernel in _kernels(backend, dtype, b):
                which = 0 if Kernel is ReluNNGP else 1
                K = gram(Kernel(depth, bias_std=b, weight_std=w), X, Z, backend=backend)
                assert K.dtype == dtype
                refs = [r[depth][which] for r in ref]
                scales = _scales(refs, names, [ref_xx[depth][which]] * len(names), [r[depth][which] for r in ref_zz])
                _check(K[0], refs, scales, names, BOUND[np.dtype(dtype)],
                       f"{Kernel.__name__}(depth={depth}, w={w}, b={b}) {backend} {np.dtype(dtype)}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_arccos_matches_90_digit_reference(backend, dtype):
    X, Z, names = _inputs(dtype, seed=1)
    x64, z64 = X.astype(np.float64), Z.astype(np.float64)
    for order in (0, 1, 2) if backend != "jax" or dtype == np.float64 else (1,):
        K = gram(ArcCosine(order), X, Z, backend=backend)
        refs = [ref_arccos(x64[0], z, order) for z in z64]
        scales = _scales(refs, names, [ref_arccos(x64[0], x64[0], order)] * len(names),
                         [ref_arccos(z, z, order) for z in z64])
        _check(K[0], refs, scales, names, BOUND[np.dtype(dtype)], f"ArcCosine({order}) {backend} {np.dtype(dtype)}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_near_parallel_partner_per_row(backend):
    """Many rows, each with one near-parallel or near-opposite column (jax's gathered fix-up path)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, D_FEATURES))
    Z = np.stack([X[0], 2 * X[1], -X[2], -0.5 * X[3], X[4] + 1e-9 * X[5], X[5] * (1 + 1e-12)])
    k = ReluNTK(depth=5, bias_std=0.2, weight_std=1.3)
    K = gram(k, X, Z, backend=backend)
    refs = [ref_relu(X[i], Z[i], 5, 1.3, 0.2)[5][1] for i in range(6)]
    _check(np.diagonal(K), refs, [abs(r) for r in refs], range(6), BOUND[np.dtype(np.float64)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_parallel_partners_per_row(backend):
    """Every pair parallel or opposite: 10 flagged pairs per row, more than jax's row passes (8), so its
    every-pair path; the first 4 rows alone take the row passes."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(D_FEATURES)
    X = np.outer([1.0, 2.0, -1.0, 0.5, 4.0, -3.0, 0.25, -0.5, 8.0, 3.0], x)
    k = ReluNTK(depth=3, bias_std=0.2, weight_std=1.3)
    K = gram(k, X, backend=backend)
    refs = [[ref_relu(a, b, 3, 1.3, 0.2)[3][1] for b in X] for a in X]
    for i in range(len(X)):
        _check(K[i], refs[i], [abs(r) for r in refs[i]], range(len(X)), BOUND[np.dtype(np.float64)], backend)
    K4 = gram(k, X[:4], backend=backend)
    for i in range(4):
        _check(K4[i], refs[i][:4], [abs(r) for r in refs[i][:4]], range(4), BOUND[np.dtype(np.float64)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matvec_and_diagonal_agree_with_gram(backend):
    """kernel_matvec (its own blocks) keeps the exact angles, and an identical pair equals k.diag."""
    X, Z, names = _inputs(np.float64, seed=3)
    arc = ArcCosine(1)
    K = gram(arc, X, Z, backend=backend)
    np.testing.assert_allclose(kernel_matvec(arc, X, Z, np.eye(len(Z)), backend=backend), K, rtol=1e-14, atol=0)
    assert K[0, names.index("opposite")] == 0.0
    if backend != "jax":  # (jax: the identical pair is checked against the reference above)
        k = ReluNTK(depth=2, bias_std=0.1)
        np.testing.assert_allclose(gram(k, X, Z, backend=backend)[0, names.index("identical")], k.diag(X)[0],
                                   rtol=1e-15)


def test_relu_flags_cover_every_small_gap():
    """relu_flags (jax's and numpy's choice of pairs for the second stage) is a superset of the pairs whose
    gap 1 - |cos t_l| reaches tau in some layer: the layer gaps computed directly, over angles from 1e-6
    to pi, unequal norms (down to 1e-3 of the other) and biases up to 4 times the weights."""
    from ntkit.kernels._relu import relu_flags

    rng = np.random.default_rng(5)
    d, n = 5, 400
    x = rng.standard_normal(d)
    e = rng.standard_normal(d)
    e -= (e @ x) / (x @ x) * x
    e *= np.linalg.norm(x) / np.linalg.norm(e)
    t = np.concatenate([np.geomspace(1e-6, 1.0, n // 2), np.linspace(1.0, math.pi, n // 2)])
    scale = np.geomspace(1e-3, 1e3, n)
    rng.shuffle(scale)
    Z = (np.cos(t)[:, None] * x + np.sin(t)[:, None] * e) * scale[:, None]
    dot, sx, sz = Z @ x, np.array([x @ x]), np.einsum("ij,ij->i", Z, Z)
    for depth in (1, 3, 8):
        for w_var, b_var in ((1.0, 0.0), (2.0, 0.1), (1.0, 4.0)):
            for tau in (1e-4, 1e-2):
                flag = relu_flags(np, dot[None, :], sx, sz, d, depth, w_var, b_var, tau)[0]
                q, qx, qz = w_var * dot / d + b_var, w_var * sx / d + b_var, w_var * sz / d + b_var
                small = np.zeros(n, bool)
                for _ in range(depth):  # the recursion's own correlations, layer by layer
                    rho = np.clip(q / np.sqrt(qx * qz), -1, 1)
                    small |= 1 - np.abs(rho) <= tau
                    th = np.arccos(rho)
                    q = w_var * np.sqrt(qx * qz) * (np.sin(th) + (math.pi - th) * rho) / (2 * math.pi) + b_var
                    qx, qz = w_var * qx / 2 + b_var, w_var * qz / 2 + b_var
                assert small.any() and not (small & ~flag).any(), (depth, w_var, b_var, tau)
