"""Dot-product kernels: Linear, Polynomial and Cho & Saul's arc-cosine kernels."""

from __future__ import annotations

import math

from .._validation import InvalidParameterError, check_int, check_scalar
from ._angles import fix_flagged, flag_tau, half_angle, j1, j2
from ._base import DotProductKernel

__all__ = ["Linear", "Polynomial", "ArcCosine", "arccos_terms"]

_INV_PI = 1.0 / math.pi


def arccos_terms(xp, dot, sx, sz):
    """Angle terms shared by arc-cosine and ReLU network kernels.

    Returns ``(s, rho, theta, sin_theta)`` with ``s = sqrt(sx sz)``,
    ``rho = cos(theta) = dot / s`` clipped to [-1, 1] (0 where ``s == 0``, the
    convention for a zero vector), ``theta = arccos(rho)`` and
    ``sin_theta = sqrt((1 - rho)(1 + rho))`` (accurate near rho = 1).
    """
    s = xp.sqrt(sx * sz)
    pos = s > 0
    rho = xp.where(pos, dot / xp.where(pos, s, 1), 0)
    rho = xp.clip(rho, -1, 1)
    theta = xp.arccos(rho)
    sin_theta = xp.sqrt(xp.maximum((1 - rho) * (1 + rho), 0))
    return s, rho, theta, sin_theta


class Linear(DotProductKernel):
    """Linear kernel ``k(x, z) = <x, z>``.

    >>> import numpy as np
    >>> from ntkit.kernels import Linear
    >>> Linear()(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]))
    array([[11.]])
    """

    def __init__(self):
        pass

    def _validated(self):
        return {}

    def _block(self, xp, dot, sx, sz, n_features, params):
        return dot

    def _diag(self, xp, sx, n_features, params):
        return sx

    def _native_spec(self, params):
        return "linear", {}


class Polynomial(DotProductKernel):
    """Polynomial kernel ``k(x, z) = (gamma <x, z> + coef0)^degree``.

    Parameters
    ----------
    degree : int >= 1, default=2
    gamma : float, default=1.0
    coef0 : float, default=1.0

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import Polynomial
    >>> Polynomial(degree=3, gamma=0.5, coef0=1.0)(np.array([[2.0]]), np.array([[1.0]]))
    array([[8.]])
    """

    def __init__(self, degree=2, gamma=1.0, coef0=1.0):
        self.degree = degree
        self.gamma = gamma
        self.coef0 = coef0

    def _validated(self):
        return {
            "degree": check_int(self.degree, "degree", "Polynomial", low=1),
            "gamma": check_scalar(self.gamma, "gamma", "Polynomial"),
            "coef0": check_scalar(self.coef0, "coef0", "Polynomial"),
        }

    @staticmethod
    def _ipow(base, n):
        # Exponentiation by squaring: the same rounding as the native engine.
        result = None
        while n:
            if n & 1:
                result = base if result is None else result * base
            n >>= 1
            if n:
                base = base * base
        return result

    def _block(self, xp, dot, sx, sz, n_features, params):
        return self._ipow(params["gamma"] * dot + params["coef0"], params["degree"])

    def _diag(self, xp, sx, n_features, params):
        return self._ipow(params["gamma"] * sx + params["coef0"], params["degree"])

    def _native_spec(self, params):
        return "polynomial", dict(params)


class ArcCosine(DotProductKernel):
    """Arc-cosine kernel of Cho & Saul (2009), ``k_n(x, z) = |x|^n |z|^n J_n(theta) / pi``.

    ``theta`` is the angle between x and z and
    ``J_0 = pi - theta``, ``J_1 = sin(theta) + (pi - theta) cos(theta)``,
    ``J_2 = 3 sin(theta) cos(theta) + (pi - theta)(1 + 2 cos^2(theta))``.
    It equals ``2 E_w[H(w.x) H(w.z) (w.x)^n (w.z)^n]`` for ``w ~ N(0, I)``: the
    kernel of one infinitely wide layer of step (n=0), ReLU (n=1) or squared
    ReLU (n=2) units. A zero vector is given ``cos(theta) = 0``.

    Parameters
    ----------
    order : {0, 1, 2}, default=1

    References
    ----------
    Y. Cho and L. K. Saul, "Kernel methods for deep learning", NeurIPS 2009.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import ArcCosine
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> np.round(ArcCosine(order=1)(X), 4)
    array([[1.    , 0.6366],
           [0.6366, 4.    ]])
    """

    def __init__(self, order=1):
        self.order = order

    def _validated(self):
        order = self.order
        if isinstance(order, bool) or order not in (0, 1, 2):
            raise InvalidParameterError(
                f"The 'order' parameter of ArcCosine must be one of {{0, 1, 2}}. Got {order!r} instead."
            )
        return {"order": int(order)}

    def _block(self, xp, dot, sx, sz, n_features, params):
        s, rho, theta, sin_t = arccos_terms(xp, dot, sx[:, None], sz[None, :])
        n = params["order"]
        pt = math.pi - theta
        if n == 0:
            return _INV_PI * pt
        if n == 1:
            return _INV_PI * s * (sin_t + pt * rho)
        return _INV_PI * (s * s) * (3 * sin_t * rho + pt * (1 + 2 * rho * rho))

    def _block_rows(self, xp, X, Z, dot, sx, sz, n_features, params):
        # The primitive's entry: near-parallel and near-opposite pairs from their rows (_angles).
        K = self._block(xp, dot, sx, sz, n_features, params)
        n = params["order"]

        def exact(xp, dot, sx, sz, lo, hi):
            sin_t, cos_t, _, phi = half_angle(xp, lo, hi)
            if n == 0:
                return _INV_PI * phi
            if n == 1:  # (products grouped symmetrically in x, z: K(X, X) exactly symmetric)
                return (_INV_PI * (xp.sqrt(sx) * xp.sqrt(sz))) * j1(xp, sin_t, cos_t, phi)
            return (_INV_PI * (sx * sz)) * j2(xp, sin_t, cos_t, phi)

        # |cos t| >= 1 - tau without the correlation K used (its own cheap pass: XLA keeps K's loop fused)
        c = (1 - flag_tau(n_features)) ** 2
        flag = (dot * dot >= c * (sx[:, None] * sz[None, :])) & (sx[:, None] * sz[None, :] > 0)
        return fix_flagged(xp, K, flag, X, Z, dot, sx, sz, exact)

    def _diag(self, xp, sx, n_features, params):
        n = params["order"]
        if n == 0:
            return xp.ones_like(sx)
        if n == 1:
            return sx
        return 3 * sx * sx

    def _native_spec(self, params):
        return f"arccos{params['order']}", {}
