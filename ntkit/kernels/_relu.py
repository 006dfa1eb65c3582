"""Infinite-width kernels of deep ReLU networks (NNGP and NTK), closed form at any depth."""

from __future__ import annotations

import math

from .._validation import check_int, check_scalar
from ._base import DotProductKernel
from ._dot import arccos_terms

__all__ = ["ReluNNGP", "ReluNTK"]

_INV_2PI = 1.0 / (2.0 * math.pi)


def relu_recursion(xp, dot, sx, sz, n_features, depth, w_var, b_var, *, diagonal=False):
    """NNGP and NTK of ``[Dense, Relu] * depth + Dense`` in NTK parameterisation.

    ``dot``, ``sx``, ``sz`` are <x, z>, |x|^2, |z|^2 (broadcastable). The first
    Dense layer sees ``w_var <x, z> / n_features + b_var``. Each ReLU maps the
    covariance through the arc-cosine formula ``q -> s (sin t + (pi - t) cos t) / (2 pi)``
    and multiplies the NTK by ``(pi - t) / (2 pi)``; each Dense maps
    ``q -> w_var q + b_var`` and ``ntk -> q_new + w_var ntk``. With
    ``diagonal=True`` the angle is exactly 0 (x = z).
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

    def _block(self, xp, dot, sx, sz, n_features, params):
        return self._both(xp, dot, sx[:, None], sz[None, :], n_features, params)[1]

    def _diag(self, xp, sx, n_features, params):
        return self._both(xp, sx, sx, sx, n_features, params, diagonal=True)[1]
