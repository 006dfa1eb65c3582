"""Infinite-width kernels of deep ReLU networks (NNGP and NTK), closed form at any depth."""

from __future__ import annotations

import math

from .._validation import check_int, check_scalar
from ._base import DotProductKernel
from ._angles import fix_flagged, flag_tau, half_angle, j1, sin_minus_t_cos
from ._dot import arccos_terms

__all__ = ["ReluNNGP", "ReluNTK"]

_INV_2PI = 1.0 / (2.0 * math.pi)
_INV_PI = 1.0 / math.pi


def relu_recursion(xp, dot, sx, sz, n_features, depth, w_var, b_var, *, diagonal=False):
    """NNGP and NTK of ``[Dense, Relu] * depth + Dense`` in NTK parameterisation.

    ``dot``, ``sx``, ``sz`` are <x, z>, |x|^2, |z|^2 (broadcastable). The first
    Dense layer sees ``w_var <x, z> / n_features + b_var``. Each ReLU maps the
    covariance through the arc-cosine formula ``q -> s (sin t + (pi - t) cos t) / (2 pi)``
    and multiplies the NTK by ``(pi - t) / (2 pi)``; each Dense maps
    ``q -> w_var q + b_var`` and ``ntk -> q_new + w_var ntk``. With
    ``diagonal=True`` the angle is exactly 0 (x = z). Near ``cos t = +-1`` the angle carries
    the rounding of the correlation: the primitive recomputes the pairs :func:`relu_flags` names
    by :func:`relu_from_gaps` (:mod:`ntkit.kernels._angles`).
    """
    scale = w_var / n_features if n_features > 0 else 0.0
    q = scale * dot + b_var
    qx = scale * sx + b_var
    qz = scale * sz + b_var
    ntk = q
    for _ in range(depth):
        if diagonal:
            q_relu = 0.5 * q
            qdot = 0.5
        else:
            s, rho, theta, sin_t = arccos_terms(xp, q, qx, qz)
            q_relu = _INV_2PI * s * (sin_t + (math.pi - theta) * rho)
            qdot = _INV_2PI * (math.pi - theta)
        ntk = ntk * qdot
        q = w_var * q_relu + b_var
        qx = w_var * (0.5 * qx) + b_var
        qz = w_var * (0.5 * qz) + b_var
        ntk = q + w_var * ntk
    return q, ntk


#: ``c`` of the bound ``B(g) >= g / (1 + c sqrt(g))^2`` in :func:`relu_flags` (any c >= 0.6 holds).
_FLAG_C = 0.625


def relu_flags(xp, dot, sx, sz, n_features, depth, w_var, b_var, tau, tau_input=None):
    """Pairs of :func:`relu_recursion` whose gap ``1 - |cos t_l|`` may reach ``tau`` in some layer
    (or whose input gap ``1 - |cos t_in|`` is at most ``tau_input``, default ``tau``).

    ``dot`` (n, m), ``sx`` (n,), ``sz`` (m,); a superset of the pairs that do, from the input's
    correlation and row-separable factors, in one cheap elementwise pass (tracking the gaps inside
    the recursion would give XLA a second output and split its single fused loop into one pass per
    layer: 1.8x slower at depth 8). Why: the ReLU map of the correlation, ``f(rho) = J_1(t) / pi``,
    has ``f'(rho) = 1 - t / pi``, increasing, so ``1 - f(rho) >= (1 - rho)(1 - t / pi)`` and
    ``>= (1 - rho) / 2`` for ``rho >= 0``; with ``t <= pi sqrt((1 - rho) / 2)`` that is
    ``B(g) = g max(1/2, 1 - sqrt(g / 2)) >= phi(g) = g / (1 + c sqrt(g))^2`` at ``g = 1 - rho``
    (c = 0.625; equality region checked at sqrt(g) = 1/sqrt(2)). A Dense layer with bias gives
    ``s' - q' >= sqrt(a_x a_z) (1 - f)`` (``s' = sqrt((a_x + b)(a_z + b)) >= sqrt(a_x a_z) + b``),
    so the gap shrinks at most by ``r_x r_z``, ``r = sqrt(a / (a + b))``, on both sides for the
    first layer; ``B(r g) >= r B(g)`` pulls these factors out, and ``phi`` composes as
    ``phi^k(g) = 1 / (1 / sqrt(g) + k c)^2``. Every layer's gap is then at least
    ``phi^(depth-1)(g_in) P_x P_z`` (``P`` the product of a row's r over the layers, ``g_in = 1 - |rho_in|``),
    which is below ``tau`` iff ``g_in <= 1 / (sqrt(P_x P_z / tau) - (depth - 1) c)^2`` or the bracket is
    <= 0. (One comparison of ``g_in`` with a threshold formed from row vectors: XLA keeps it fused.)
    """
    inv = _inv_norm
    rho = xp.clip(dot * (inv(xp, sx)[:, None] * inv(xp, sz)[None, :]), -1, 1)
    g = 1 - xp.abs(rho)
    scale = w_var / n_features if n_features > 0 else 0.0
    px, pz = xp.ones_like(sx), xp.ones_like(sz)
    if b_var > 0:
        ax, az = scale * sx, scale * sz
        for _ in range(depth):
            px, pz = px * xp.sqrt(ax / (ax + b_var)), pz * xp.sqrt(az / (az + b_var))  # P = prod r
            ax, az = (0.5 * w_var) * (ax + b_var), (0.5 * w_var) * (az + b_var)
    den = (xp.sqrt(px / tau)[:, None] * xp.sqrt(pz)[None, :]) - (depth - 1) * _FLAG_C
    limit = xp.where(den > 0, 1 / xp.where(den > 0, den * den, 1), xp.inf)
    if tau_input is not None:
        limit = xp.maximum(limit, tau_input)
    # (A zero row has P = 0, a vacuous bound; its pairs keep the first stage, as padding rows need.)
    nonzero = (sx > 0)[:, None] & (sz > 0)[None, :]
    return nonzero & (g <= limit)


def _inv_norm(xp, sq):
    r = xp.sqrt(sq)
    pos = r > 0
    return xp.where(pos, 1 / xp.where(pos, r, 1), 0)


def _bias_gap(xp, b_var, ax, az, two_ac, s_new):
    """``sqrt((ax + b)(az + b)) - sqrt(ax az) - b``, as
    ``b (ax - az)^2 / ((ax + az + 2 sqrt(ax az)) (s_new + sqrt(ax az) + b))``

    with ``two_ac = 2 sqrt(ax az)`` and ``s_new = sqrt((ax + b)(az + b))``: what the bias adds to
    the covariance gap ``s - q`` when the variances differ, without the cancellation of the
    difference (b > 0; 0 where ax = az = 0).
    """
    den = (ax + az + two_ac) * (s_new + 0.5 * two_ac + b_var)
    return b_var * (ax - az) ** 2 / xp.where(den > 0, den, 1)


def relu_from_gaps(xp, dot, sx, sz, n_features, depth, w_var, b_var, lo, hi):
    """:func:`relu_recursion` from the input's angle gaps ``lo = 1 - cos t``, ``hi = 1 + cos t``.

    The angle of each layer is not taken from ``q / s`` (whose rounding near 1 costs half the
    digits) but carried by its gaps (:mod:`ntkit.kernels._angles`): the input's exact (summed from
    the rows), then layer to layer by ``s' - q' = [bias term] + (w_var s / (2 pi)) (pi - J_1(t))``
    with ``pi - J_1(t) = pi (1 - cos t) - (sin t - t cos t)``: sums of terms that do not cancel.
    Shapes broadcast (the primitive passes 1-D arrays of the flagged pairs). ``ntkit_native``
    (``relu_from_gaps`` in ``kernels.hpp``) runs the same recursion (its own groupings and libm
    calls: the same values to a few ulps).
    """
    scale = w_var / n_features if n_features > 0 else 0.0
    q = scale * dot + b_var
    ntk = q
    if depth == 0:
        return q, ntk
    qx, qz = scale * sx + b_var, scale * sz + b_var
    s = xp.sqrt(qx) * xp.sqrt(qz)  # (symmetric in x and z)
    if b_var > 0:  # s > 0; the gaps of w x.z/d + b from those of x.z, plus the bias term
        ac = scale * (xp.sqrt(sx) * xp.sqrt(sz))  # sqrt(ax az), ax = w |x|^2 / d
        e = _bias_gap(xp, b_var, scale * sx, scale * sz, 2 * ac, s)
        inv_s = 1 / s
        lo, hi = (e + ac * lo) * inv_s, (e + ac * hi + 2 * b_var) * inv_s
    # (b = 0: the gaps of the inputs')

    def layer(state, first):
        q, ntk, s, qx, qz, lo, hi = state
        sin_t, cos_t, theta, phi = half_angle(xp, lo, hi, obtuse=first)
        # J_1 by its series near pi (opposite inputs) only in layer 0: after it, q >= 0 and t <= pi/2.
        jay = j1(xp, sin_t, cos_t, phi) if first else sin_t + phi * cos_t
        q_relu = (_INV_2PI * s) * jay
        ntk = ntk * (_INV_2PI * phi)
        q = w_var * q_relu + b_var
        ntk = q + w_var * ntk
        # the next layer's gaps (unused after the last layer)
        pi_minus_j1 = math.pi * lo - sin_minus_t_cos(xp, theta, sin_t, cos_t)
        if b_var > 0:
            ax, az = half_w * qx, half_w * qz
            qx, qz = ax + b_var, az + b_var
            s_new = xp.sqrt(qx) * xp.sqrt(qz)
            inv_s = 1 / s_new
            lo = (_bias_gap(xp, b_var, ax, az, w_var * s, s_new) + (_INV_PI * half_w) * s * pi_minus_j1) * inv_s
            hi = 1 + q * inv_s
            s = s_new
        else:  # s' = w s / 2: the gaps depend on the angle only
            s = half_w * s
            lo = _INV_PI * pi_minus_j1
            hi = 1 + _INV_PI * jay
        return q, ntk, s, qx, qz, lo, hi

    half_w = 0.5 * w_var
    shape = xp.broadcast_shapes(xp.shape(q), xp.shape(lo)) if xp.__name__ != "numpy" else None
    if shape is not None:  # fixed shapes for the loop's carry
        q, ntk, s, lo, hi = (xp.broadcast_to(v, shape) for v in (q, ntk, s, lo, hi))
    state = layer((q, ntk, s, qx, qz, lo, hi), True)
    if xp.__name__ == "numpy":
        for _ in range(depth - 1):
            state = layer(state, False)
    elif depth > 1:  # one traced layer in a loop: the compiled size does not grow with the depth
        import jax

        state = jax.lax.fori_loop(1, depth, lambda _, st: layer(st, False), state)
    q, ntk = state[0], state[1]
    return q, ntk


class _ReluNetworkKernel(DotProductKernel):
    def __init__(self, depth=2, bias_std=0.0, weight_std=1.0):
        self.depth = depth
        self.bias_std = bias_std
        self.weight_std = weight_std

    def _validated(self):
        owner = type(self).__name__
        return {
            "depth": check_int(self.depth, "depth", owner, low=0),
            "weight_std": check_scalar(self.weight_std, "weight_std", owner, low=0.0, closed="right"),
            "bias_std": check_scalar(self.bias_std, "bias_std", owner, low=0.0),
        }

    def _both(self, xp, dot, sx, sz, n_features, params, diagonal=False):
        return relu_recursion(
            xp, dot, sx, sz, n_features, params["depth"], params["weight_std"] ** 2, params["bias_std"] ** 2,
            diagonal=diagonal,
        )

    def _block_rows(self, xp, X, Z, dot, sx, sz, n_features, params):
        # The primitive's entry: pairs whose angle came near 0 or pi in some layer from their rows (_angles).
        which = self._which
        w_var, b_var, depth = params["weight_std"] ** 2, params["bias_std"] ** 2, params["depth"]
        out = relu_recursion(xp, dot, sx[:, None], sz[None, :], n_features, depth, w_var, b_var)[which]
        if depth == 0:  # (no angle)
            return out
        flag = relu_flags(xp, dot, sx, sz, n_features, depth, w_var, b_var, flag_tau(1), flag_tau(n_features))

        def exact(xp, dot, sx, sz, lo, hi):
            return relu_from_gaps(xp, dot, sx, sz, n_features, depth, w_var, b_var, lo, hi)[which]

        return fix_flagged(xp, out, flag, X, Z, dot, sx, sz, exact)

    def _native_spec(self, params):
        return self._native_id, dict(params)


class ReluNNGP(_ReluNetworkKernel):
    """NNGP kernel of an infinitely wide ReLU network, in neural-tangents' conventions.

    The network is ``stax.serial(*[Dense(W, b), Relu] * depth, Dense(W, b))`` with
    ``W = weight_std``, ``b = bias_std``: each Dense layer computes
    ``W / sqrt(fan_in) * (weights @ h) + b * bias`` with standard normal weights.
    The kernel of the output is the covariance of the network at initialisation.

    Parameters
    ----------
    depth : int >= 0, default=2
        Number of hidden ``Dense + Relu`` layers.
    bias_std : float >= 0, default=0.0
    weight_std : float > 0, default=1.0

    References
    ----------
    J. Lee et al., "Deep neural networks as Gaussian processes", ICLR 2018.
    R. Novak et al., "Neural Tangents", ICLR 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import ReluNNGP
    >>> X = np.eye(2)
    >>> np.round(ReluNNGP(depth=1)(X), 4)
    array([[0.25  , 0.0796],
           [0.0796, 0.25  ]])
    """

    _native_id = "relu_nngp"
    _which = 0

    def _block(self, xp, dot, sx, sz, n_features, params):
        return self._both(xp, dot, sx[:, None], sz[None, :], n_features, params)[0]

    def _diag(self, xp, sx, n_features, params):
        return self._both(xp, sx, sx, sx, n_features, params, diagonal=True)[0]


class ReluNTK(_ReluNetworkKernel):
    """Neural tangent kernel of an infinitely wide ReLU network (NTK parameterisation).

    Same network and conventions as :class:`ReluNNGP`; the kernel is the limit
    of the empirical NTK ``<df(x)/dtheta, df(z)/dtheta>`` as the width grows.

    Parameters
    ----------
    depth : int >= 0, default=2
        Number of hidden ``Dense + Relu`` layers.
    bias_std : float >= 0, default=0.0
    weight_std : float > 0, default=1.0

    References
    ----------
    A. Jacot, F. Gabriel, C. Hongler, "Neural tangent kernel", NeurIPS 2018.
    S. Arora et al., "On exact computation with an infinitely wide neural net", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import ReluNTK
    >>> X = np.eye(2)
    >>> np.round(ReluNTK(depth=1)(X), 4)
    array([[0.5   , 0.0796],
           [0.0796, 0.5   ]])
    """

    _native_id = "relu_ntk"
    _which = 1

    def _block(self, xp, dot, sx, sz, n_features, params):
        return self._both(xp, dot, sx[:, None], sz[None, :], n_features, params)[1]

    def _diag(self, xp, sx, n_features, params):
        return self._both(xp, sx, sx, sx, n_features, params, diagonal=True)[1]
