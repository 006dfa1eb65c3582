"""The arc-cosine family: Relu, ABRelu, LeakyRelu, Abs, Sign, RectifiedMonomial (closed forms in the angle ``theta = arctan2(sqrt(det), c)``, exact at parallel and opposite inputs)."""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_int, check_scalar
from ._elementwise import _PI, _angle, _elementwise, _safe_sqrt

__all__ = ["ABRelu", "Abs", "LeakyRelu", "RectifiedMonomial", "Relu", "Sign"]


# ----------------------------------------------------------------------------------------------
# The ReLU family


def ABRelu(a, b, do_stabilize=False):
    """``a * min(x, 0) + b * max(x, 0)``.

    NNGP ``(a - b)^2 / (2 pi) sqrt(q1 q2 - c^2) + ((a^2 + b^2) / 2 - (a - b)^2 theta / (2 pi)) c``;
    the NTK is multiplied by the bracket (Cho & Saul's arc-cosine kernels).

    Parameters
    ----------
    a, b : float
        Slopes for ``x < 0`` and ``x > 0``.
    do_stabilize : bool, default=False
        Rescale the covariances by their largest entry while computing (very deep networks).

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    Y. Cho and L. Saul, "Kernel methods for deep learning", NeurIPS 2009.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.ABRelu(-1.0, 1.0))
    >>> kernel_fn(np.array([[1.0], [-1.0]]), None, "nngp")  # |x|: E[x^2] for both
    Array([[1., 1.],
           [1., 1.]], dtype=float32)
    """
    a = check_scalar(a, "a", "ABRelu")
    b = check_scalar(b, "b", "ABRelu")
    f = (a - b) ** 2 / (2 * _PI)
    m = (a * a + b * b) / 2

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        scale = None
        if do_stabilize:
            scale = jnp.maximum(jnp.max(jnp.abs(c)), 1e-12)
            c, q1, q2 = c / scale, q1 / scale, q2 / scale
        sd, theta = _angle(c, q1, q2)
        dot = m - f * theta
        out = f * sd + dot * c
        if scale is not None:
            out = out * scale
        return out, None if ntk is None else ntk * dot

    def fn(x):
        import jax.numpy as jnp

        return a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0)

    return _elementwise(f"ABRelu({a}, {b})", fn, pair, key=(a, b, bool(do_stabilize)))


def Relu(do_stabilize=False):
    """ReLU, ``max(x, 0)``: the arc-cosine kernel of order 1.

    Parameters
    ----------
    do_stabilize : bool, default=False

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu())
    >>> kernel_fn(np.array([[2.0]]), None, "nngp")
    Array([[2.]], dtype=float32)
    """
    return ABRelu(0.0, 1.0, do_stabilize)


def LeakyRelu(alpha, do_stabilize=False):
    """Leaky ReLU, ``alpha * min(x, 0) + max(x, 0)``.

    Parameters
    ----------
    alpha : float
    do_stabilize : bool, default=False

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.LeakyRelu(0.1)
    >>> apply_fn((), np.array([-1.0, 2.0]))
    Array([-0.1,  2. ], dtype=float32)
    """
    return ABRelu(alpha, 1.0, do_stabilize)


def Abs(do_stabilize=False):
    """Absolute value, ``|x|``.

    Parameters
    ----------
    do_stabilize : bool, default=False

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Abs()
    >>> apply_fn((), np.array([-1.5, 2.0]))
    Array([1.5, 2. ], dtype=float32)
    """
    return ABRelu(-1.0, 1.0, do_stabilize)


def Sign():
    """Sign function: NNGP ``1 - 2 theta / pi``; the NTK is 0 (the derivative is 0 almost everywhere).

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Sign())
    >>> kernel_fn(np.array([[1.0], [-3.0]]), None, "nngp")
    Array([[ 1., -1.],
           [-1.,  1.]], dtype=float32)
    """
    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        _, theta = _angle(c, q1, q2)
        return 1 - 2 * theta / _PI, None if ntk is None else jnp.zeros_like(ntk)

    def fn(x):
        import jax.numpy as jnp

        return jnp.sign(x)

    return _elementwise("Sign", fn, pair, key=())


def RectifiedMonomial(degree):
    """``x^degree`` for ``x >= 0``, 0 otherwise: the arc-cosine kernel of order ``degree``.

    NNGP ``(q1 q2)^(n/2) J_n(theta) / (2 pi)`` with
    ``J_n = (pi - theta) P_n(cos theta) + sin theta sum_k C(n, k) P_{k-1}(cos theta) P_{n-k}(cos theta)``,
    where ``P_0 = 1``, ``P_{m+1}(u) = (1 - u^2) P_m'(u) + (2m + 1) u P_m(u)`` (the derivatives of
    ``(1 - u^2)^(-1/2)``); NTK factor ``n^2`` times the NNGP of degree ``n - 1``. This is exact at
    ``theta = 0`` (neural-tangents' automatic-differentiation form is not defined there).

    Parameters
    ----------
    degree : int >= 0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    Y. Cho and L. Saul, "Kernel methods for deep learning", NeurIPS 2009.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.RectifiedMonomial(2))
    >>> kernel_fn(np.array([[1.0]]), None, "nngp")  # E[max(x, 0)^4] = 3 / 2
    Array([[1.5]], dtype=float32)
    """
    n = check_int(degree, "degree", "RectifiedMonomial", low=0)
    from numpy.polynomial import polynomial as P

    polys = [np.array([1.0])]
    for m in range(n):
        p = polys[-1]
        nxt = P.polyadd(P.polymul(P.polyder(p) if len(p) > 1 else [0.0], [1.0, 0.0, -1.0]),
                        P.polymul(p, [0.0, 2 * m + 1]))
        polys.append(np.asarray(nxt, dtype=float))

    def J(order, u, s, theta):
        import jax.numpy as jnp

        def ev(p):
            return jnp.polyval(jnp.asarray(p[::-1], u.dtype), u)

        out = (_PI - theta) * ev(polys[order])
        if order:
            acc = 0.0
            for kk in range(1, order + 1):
                acc = acc + math.comb(order, kk) * ev(polys[kk - 1]) * ev(polys[order - kk])
            out = out + s * acc
        return out

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        sd, theta = _angle(c, q1, q2)
        r = _safe_sqrt(q1 * q2)
        pos = r > 0
        u = jnp.clip(jnp.where(pos, c / jnp.where(pos, r, 1.0), 0.0), -1.0, 1.0)
        s = jnp.where(pos, sd / jnp.where(pos, r, 1.0), 1.0)
        nngp = r ** n * J(n, u, s, theta) / (2 * _PI)
        if ntk is not None:
            ntk = jnp.zeros_like(ntk) if n == 0 else ntk * (n * n * r ** (n - 1) * J(n - 1, u, s, theta) / (2 * _PI))
        return nngp, ntk

    def fn(x):
        import jax.numpy as jnp

        return jnp.where(x >= 0, x ** n, 0.0)

    return _elementwise(f"RectifiedMonomial({n})", fn, pair, key=(n,))
