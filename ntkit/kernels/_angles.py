"""Exact angles for the arc-cosine and ReLU network kernels on near-parallel and near-opposite pairs.

The arc-cosine kernels and the ReLU network kernels are functions of the angle ``t`` between x
and z (layer by layer, for the networks). ``arccos(<x, z> / (|x| |z|))`` is accurate for most
pairs and poor near ``cos t = +-1``: a rounding ``delta`` of the correlation moves ``t`` by
``delta / sin t``, up to ``sqrt(2 delta)`` (1e-8 in float64), so identical, parallel and opposite
inputs came out wrong in the eighth digit.

Two stages, so that the common case costs what it always did:

1. Every pair goes through the arccos formula (``_block``). A pair is flagged when its input gap
   ``1 - |cos t_0|`` is at most ``flag_tau(n_features)`` or the gap of a later layer (the networks)
   may be at most ``flag_tau(1)``: for the networks by a proven bound on how fast a layer can shrink
   the gap (:func:`ntkit.kernels._relu.relu_flags`); ``ntkit_native`` tracks the gaps themselves.
2. The flagged pairs are recomputed from their rows (``fix_flagged``): the angle is carried by
   its two gaps

       lo = 1 - cos t = |x^ - z^|^2 / 2,   hi = 1 + cos t = |x^ + z^|^2 / 2   (x^ = x / |x|),

   summed from the normalised rows (no cancellation), ``sin t = sqrt(lo hi)``,
   ``cos t = (hi - lo) / 2``, ``pi - t = atan2(sin t, -cos t)``, the terms that cancel at the
   ends (``sin t - t cos t`` near 0, Cho & Saul's ``J_1``, ``J_2`` near pi) by their series, and
   the network's gaps carried from layer to layer without cancellation
   (:func:`ntkit.kernels._relu.relu_from_gaps`).

Why the thresholds are where they are: the input correlation carries an absolute error of about
``sqrt(n_features) eps`` (the rounding of one inner product), which moves ``t`` by
``sqrt(n_features) eps / sin t``. Above ``flag_tau(n_features) = 2^-15 n_features`` (so
``sin t > 2^-7 sqrt(n_features)``) that is at most ``2^7 eps``, and each layer's factor
``(pi - t) / (2 pi)`` changes by at most ``2^7 eps / pi ~ 40 eps`` relative. In later layers that
error keeps its size relative to the gap (the gaps shrink by row factors, ``relu_flags``) and the
layer's own rounding of ``q / s`` adds a few eps absolute, which needs the gap above
``flag_tau(1) = 2^-15`` for the same 40 eps: below 1e-13 after eight layers even if every layer
sat at its threshold. Random data in high dimension has ``|cos t| ~ 1 / sqrt(n_features)`` and no
flagged pair but the diagonal; the second stage then costs one gathered row per row.
"""

from __future__ import annotations

import math

__all__ = ["ANGLE_GUARD", "angle_guard", "flag_tau", "fix_flagged", "half_angle", "sin_minus_t_cos", "j1", "j2"]

#: ``2 - 2 |cos t|`` per input feature below which a pair is recomputed from its rows (see the module docstring).
ANGLE_GUARD = 2.0**-14

# Below this angle the terms that cancel are summed as series (10 and 13 terms: < 1e-18 relative at 1).
_SERIES_BELOW = 1.0

#: Pairs recomputed at once by the numpy path (times n_features elements).
_CHUNK_ELEMENTS = 1 << 18


def angle_guard(n_features) -> float:
    """``2 - 2 |cos t|`` at or below which a pair is recomputed from its rows (see ``ANGLE_GUARD``)."""
    return min(0.25, ANGLE_GUARD * max(int(n_features), 1))


def flag_tau(n_features) -> float:
    """The gap ``1 - |cos t|`` at or below which a pair goes to the second stage: the input's with
    ``n_features``, a later layer's with 1 (its correlation carries no inner-product rounding of its own)."""
    return 0.5 * angle_guard(n_features)


# --------------------------------------------------------------------------- gaps from the rows
def _unit_rows(xp, X, sq):
    """``X / |x|`` row by row (a division, not a product with ``1 / |x|``: rows that are equal,
    opposite or power-of-two multiples give equal or opposite unit rows, bit for bit, provided their
    squared norms ``sq`` were summed the same way); zero rows stay 0."""
    r = xp.sqrt(sq)[:, None]
    return X / xp.where(r > 0, r, 1)


def _pair_gaps_numpy(A, B):
    """Gaps of the row pairs ``(A[k], B[k])``: ``|a^ -+ b^|^2 / 2``."""
    import numpy as np

    a = _unit_rows(np, A, np.einsum("ij,ij->i", A, A))
    b = _unit_rows(np, B, np.einsum("ij,ij->i", B, B))
    diff = a - b
    lo = 0.5 * np.einsum("ij,ij->i", diff, diff)
    np.add(a, b, out=diff)
    return lo, 0.5 * np.einsum("ij,ij->i", diff, diff)


def _sq_norms_jax(A):
    # Feature by feature (not a reduction XLA may order by shape): x and -x, or x and 2x, in X and in Z
    # get norms that are equal (or exactly 4 times) bit for bit, hence exactly equal or opposite unit rows.
    import jax
    import jax.numpy as jnp

    return jax.lax.fori_loop(0, A.shape[1], lambda k, acc: acc + jnp.square(A[:, k]), jnp.zeros(A.shape[0], A.dtype))


def _gap_sums_jax(a_of, b_of, n_features, shape, dtype):
    """``|a - b|^2 / 2`` and ``|a + b|^2 / 2`` feature by feature in a fixed order (the same bits for
    (x, z) and (z, x): K(X, X) stays exactly symmetric)."""
    import jax
    import jax.numpy as jnp

    def body(k, acc):
        a, b = a_of(k), b_of(k)
        return acc[0] + jnp.square(a - b), acc[1] + jnp.square(a + b)

    zero = jnp.zeros(shape, dtype)
    lo, hi = jax.lax.fori_loop(0, n_features, body, (zero, zero))
    return 0.5 * lo, 0.5 * hi


# --------------------------------------------------------------------------- the second stage
def fix_flagged(xp, K, flag, X, Z, dot, sx, sz, exact):
    """Replace the entries of ``K`` where ``flag`` by ``exact(xp, dot, sx, sz, lo, hi)`` evaluated
    on those pairs (1-D arrays) with gaps from the rows.

    ``K``, ``flag``, ``dot``: (n, m); ``sx``, ``sz``: (n,), (m,); X, Z the rows. numpy or jax (inside
    ``jit`` too: with at most ``_ROW_PASSES`` flagged pairs in every row, one pass per flagged pair
    of the most-flagged row recomputes a pair per row as a vector; more than that, and every pair
    is recomputed, n * m * n_features work).
    """
    n, m = K.shape
    if n == 0 or m == 0 or X.shape[1] == 0:
        return K
    if xp.__name__ == "numpy":
        return _fix_numpy(K, flag, X, Z, dot, sx, sz, exact)
    return _fix_jax(K, flag, X, Z, dot, sx, sz, exact)


def _fix_numpy(K, flag, X, Z, dot, sx, sz, exact):
    import numpy as np

    ii, jj = np.nonzero(flag)
    if ii.size == 0:
        return K
    step = max(1, _CHUNK_ELEMENTS // max(X.shape[1], 1))
    for k in range(0, ii.size, step):
        i, j = ii[k:k + step], jj[k:k + step]
        lo, hi = _pair_gaps_numpy(X[i], Z[j])
        K[i, j] = exact(np, dot[i, j], sx[i], sz[j], lo, hi)
    return K


#: Above this many flagged pairs in some row, jax recomputes every pair of the block instead of row by row.
_ROW_PASSES = 8


def _fix_jax(K, flag, X, Z, dot, sx, sz, exact):
    import jax
    import jax.numpy as jnp

    n, m = K.shape
    d = X.shape[1]

    def unit(A):
        return _unit_rows(jnp, A, _sq_norms_jax(A))

    def by_rows(_):
        # The common case (the diagonal of K(X, X), duplicates, a few parallel pairs): one pass per flagged
        # pair of the most-flagged row, each recomputing one pair per row as an n-vector and selecting it
        # in (the exact formula is traced once, inside the loop: small programs, fast compiles).
        Xn, Zn = unit(X), unit(Z)
        cols = jnp.arange(m)

        def body(state):
            Kc, rem = state
            j = jnp.argmax(rem, axis=1)
            Zj = Zn[j]
            lo, hi = _gap_sums_jax(lambda f: Xn[:, f], lambda f: Zj[:, f], d, (n,), K.dtype)
            vals = exact(jnp, jnp.take_along_axis(dot, j[:, None], axis=1)[:, 0], sx, sz[j], lo, hi)
            hit = rem & (cols[None, :] == j[:, None])
            return jnp.where(hit, vals.astype(K.dtype)[:, None], Kc), rem & ~hit

        return jax.lax.while_loop(lambda st: jnp.any(st[1]), body, (K, flag))[0]

    def every(_):
        # Many flagged pairs in some row (clustered or repeated data): every pair (n * m * n_features work).
        Xn, Zn = unit(X), unit(Z)
        lo, hi = _gap_sums_jax(lambda f: Xn[:, f, None], lambda f: Zn[None, :, f], d, (n, m), K.dtype)
        vals = exact(jnp, dot, sx[:, None], sz[None, :], lo, hi)
        return jnp.where(flag, vals.astype(K.dtype), K)

    def none(_):
        return K

    per_row = jnp.max(jnp.sum(flag, axis=1, dtype=jnp.int32))
    branch = jnp.where(per_row == 0, 0, jnp.where(per_row <= _ROW_PASSES, 1, 2))
    return jax.lax.switch(branch, (none, by_rows, every), None)


# --------------------------------------------------------------------------- angle terms from gaps
def half_angle(xp, lo, hi, *, obtuse=True):
    """``(sin t, cos t, t, pi - t)`` from the gaps ``lo = 1 - cos t``, ``hi = 1 + cos t``.

    The gaps sum to 2 up to rounding (the callers form them so), and ``sin t = sqrt(lo hi)``,
    ``cos t = (hi - lo) / 2`` are accurate relative to themselves; so is one ``atan2``:
    ``pi - t = atan2(sin t, -cos t)`` when t may be obtuse (then ``t = pi - (pi - t)`` is accurate
    in absolute terms, which is what its uses need), ``t = atan2(sin t, cos t)`` when ``t <= pi/2``
    is known (``obtuse=False``). (``ntkit_native`` takes asin / acos where each is well
    conditioned: the same to a few ulps.)
    """
    sin_t = xp.sqrt(lo * hi)
    cos_t = 0.5 * (hi - lo)
    if obtuse:
        phi = xp.arctan2(sin_t, -cos_t)
        theta = math.pi - phi
    else:
        theta = xp.arctan2(sin_t, cos_t)
        phi = math.pi - theta
    return sin_t, cos_t, theta, phi


def _series(xp, t, coef):
    """``sum_k coef[k] t^(2k+1)`` by Horner in t^2 (coef[0] first)."""
    t2 = t * t
    acc = coef[-1]
    for c in coef[-2::-1]:
        acc = acc * t2 + c
    return acc * t


def _where_small(xp, t, series, direct):
    """``series(t)`` where ``t < _SERIES_BELOW``, else ``direct``."""
    small = t < _SERIES_BELOW
    return xp.where(small, series(xp.where(small, t, 0)), direct)


# sin t - t cos t = sum_{k>=1} (-1)^(k+1) 2k t^(2k+1) / (2k+1)!  (< 1e-18 relative at t = 1)
_G1 = [0.0] + [(-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) for k in range(1, 11)]
# 3 sin t cos t + (pi - t)(1 + 2 cos^2 t) at t = pi - p, in y = 2p:
# y + (y/2) cos y - 3/2 sin y = sum_{k>=2} (-1)^k (k - 1) y^(2k+1) / (2k+1)!
_G2 = [0.0, 0.0] + [(-1) ** k * (k - 1) / math.factorial(2 * k + 1) for k in range(2, 15)]


def sin_minus_t_cos(xp, t, sin_t, cos_t):
    """``sin t - t cos t`` for t in [0, pi], accurate near 0 (a series) where it cancels."""
    return _where_small(xp, t, lambda s: _series(xp, s, _G1), sin_t - t * cos_t)


def j1(xp, sin_t, cos_t, phi):
    """``J_1 = sin t + (pi - t) cos t`` (= sin p - p cos p at p = pi - t) from the half-angle terms."""
    return _where_small(xp, phi, lambda p: _series(xp, p, _G1), sin_t + phi * cos_t)


def j2(xp, sin_t, cos_t, phi):
    """``J_2 = 3 sin t cos t + (pi - t)(1 + 2 cos^2 t)``, by its series near t = pi (~ 4 p^5 / 15)."""
    direct = 3 * sin_t * cos_t + phi * (1 + 2 * cos_t * cos_t)
    return _where_small(xp, phi, lambda p: _series(xp, 2 * p, _G2), direct)
