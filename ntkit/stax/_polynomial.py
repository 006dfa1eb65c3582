"""Polynomial activations: Hermite, Monomial, Polynomial (duals from Gaussian moments and Hermite expansions)."""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_int
from ._elementwise import _elementwise

__all__ = ["Hermite", "Monomial", "Polynomial"]


# ----------------------------------------------------------------------------------------------
# Polynomials


def Hermite(degree):
    """Normalised probabilists' Hermite polynomial ``He_n(x) / sqrt(n!)``, for unit-variance inputs.

    NNGP ``c^n``, NTK factor ``n c^(n-1)`` (valid when the inputs' variances are 1, e.g. after
    :func:`LayerNorm`; as in neural-tangents this is not checked).

    Parameters
    ----------
    degree : int >= 0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Hermite(2)
    >>> np.round(apply_fn((), np.array([2.0])), 4)  # (x^2 - 1) / sqrt(2)
    Array([2.1213], dtype=float32)
    """
    n = check_int(degree, "degree", "Hermite", low=0)
    coeffs = np.polynomial.hermite_e.herme2poly([0] * n + [1]) / math.sqrt(math.factorial(n))

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        out = c ** n
        if ntk is not None:
            ntk = jnp.zeros_like(ntk) if n == 0 else ntk * n * c ** (n - 1)
        return out, ntk

    def fn(x):
        import jax.numpy as jnp

        return jnp.polyval(jnp.asarray(coeffs[::-1], x.dtype if hasattr(x, "dtype") else None), x)

    return _elementwise(f"Hermite({n})", fn, pair, key=(n,))


def _monomial_moment(n, c, Q):
    """``E[u^n v^n]`` for a centred Gaussian pair with covariance ``c`` and ``Q = var(u) var(v)``."""
    import jax.numpy as jnp

    if n < 0:
        return jnp.zeros_like(c)
    if n == 0:
        return jnp.ones_like(c)
    if n == 1:
        return c
    if n == 2:
        return 2 * c ** 2 + Q
    if n == 3:
        return 6 * c ** 3 + 9 * c * Q
    if n == 4:
        return 24 * c ** 4 + 72 * c ** 2 * Q + 9 * Q ** 2
    return 120 * c ** 5 + 600 * c ** 3 * Q + 225 * c * Q ** 2


def Monomial(degree):
    """``x^degree`` for degree 0 to 5 (Isserlis' theorem gives the moments in closed form).

    Parameters
    ----------
    degree : int in [0, 5]

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Monomial(2))
    >>> kernel_fn(np.array([[1.0]]), None, "nngp")  # E[x^4] = 3
    Array([[3.]], dtype=float32)
    """
    n = check_int(degree, "degree", "Monomial", low=0, high=5)

    def pair(c, q1, q2, ntk):
        Q = q1 * q2
        out = _monomial_moment(n, c, Q)
        return out, None if ntk is None else ntk * n * n * _monomial_moment(n - 1, c, Q)

    def fn(x):
        return x ** n

    return _elementwise(f"Monomial({n})", fn, pair, key=(n,))


def Polynomial(coef):
    """``coef[0] + coef[1] x + ... + coef[n] x^n`` (numpy.polynomial order).

    Expanding ``p(sqrt(q) z)`` in normalised Hermite polynomials ``h_l(z)``, the NNGP is
    ``sum_l t_l(q1) t_l(q2) c^l`` with ``t_l(q) = sum_i coef[l + 2i] (l + 2i)! q^i / (2^i i! sqrt(l!))``,
    and the NTK factor ``sum_l l t_l(q1) t_l(q2) c^(l-1)`` (no division by the variances, so a
    zero input is fine).

    Parameters
    ----------
    coef : sequence of float

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Polynomial([1.0, 0.0, 1.0]))
    >>> kernel_fn(np.array([[1.0]]), None, "nngp")  # E[(1 + x^2)^2] = 1 + 2 + 3
    Array([[6.]], dtype=float32)
    """
    try:
        coef = np.asarray(coef, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"The 'coef' parameter of Polynomial must be a sequence of numbers. Got {coef!r} instead.") \
            from None
    if not np.all(np.isfinite(coef)):
        raise ValueError(f"The 'coef' parameter of Polynomial must be finite. Got {coef!r} instead.")
    deg = len(coef)
    # t[l][i]: coefficient of q^i in t_l
    t = []
    for l in range(deg):
        t.append([coef[l + 2 * i] * math.factorial(l + 2 * i) / (2 ** i * math.factorial(i) *
                                                                    math.sqrt(math.factorial(l)))
                  for i in range((deg - 1 - l) // 2 + 1)])

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        def tl(l, q):
            acc = 0.0
            for i, a in enumerate(t[l]):
                acc = acc + a * q ** i
            return acc

        out = jnp.zeros_like(c)
        dot = jnp.zeros_like(c)
        for l in range(deg):
            prod = tl(l, q1) * tl(l, q2)
            out = out + prod * c ** l
            if l:
                dot = dot + l * prod * c ** (l - 1)
        return out, None if ntk is None else ntk * dot

    def fn(x):
        import jax.numpy as jnp

        return jnp.polyval(jnp.asarray(coef[::-1]), x)

    return _elementwise("Polynomial", fn, pair, key=tuple(float(v) for v in coef))
