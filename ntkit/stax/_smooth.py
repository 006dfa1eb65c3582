"""Smooth activations with closed-form duals: Erf, Sigmoid_like, Gelu, Sin, Cos, Rbf, Exp, Gaussian, ExpNormalized."""

from __future__ import annotations

import math

from .._validation import check_scalar
from ._elementwise import _PI, _elementwise, _safe_sqrt

__all__ = ["Cos", "Erf", "Exp", "ExpNormalized", "Gaussian", "Gelu", "Rbf", "Sigmoid_like", "Sin"]


# ----------------------------------------------------------------------------------------------
# Smooth activations with closed forms


def Erf(a=1.0, b=1.0, c=0.0):
    """``a * erf(b x) + c``.

    NNGP ``a^2 (2 / pi) arcsin(2 b^2 c12 / sqrt((1 + 2 b^2 q1)(1 + 2 b^2 q2))) + c^2``, written with
    ``arctan2`` for accuracy near ±1; NTK factor ``a^2 b^2 (4 / pi) / sqrt((1 + 2 b^2 q1)(1 + 2 b^2 q2) - 4 b^4 c12^2)``.

    Parameters
    ----------
    a : float, default=1.0
        Output scale.
    b : float, default=1.0
        Input scale.
    c : float, default=0.0
        Output shift.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    C. Williams, "Computing with infinite networks", NeurIPS 1997.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Erf())
    >>> np.round(kernel_fn(np.array([[1.0]]), None, "nngp"), 4)  # (2/pi) arcsin(2/3)
    Array([[0.4646]], dtype=float32)
    """
    a = check_scalar(a, "a", "Erf")
    b = check_scalar(b, "b", "Erf")
    c = check_scalar(c, "c", "Erf")
    shift = c

    def pair(cv, q1, q2, ntk):
        import jax.numpy as jnp

        b2 = b * b
        cv, q1, q2 = cv * b2, q1 * b2, q2 * b2
        den = _safe_sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * cv * cv)
        out = (2 / _PI) * jnp.arctan2(2 * cv, den)
        if ntk is not None:
            ntk = ntk * b2 * (4 / _PI) / den * a * a
        return a * a * out + shift * shift, ntk

    def fn(x):
        import jax.scipy.special as jss

        return a * jss.erf(b * x) + shift

    return _elementwise(f"Erf({a}, {b}, {c})", fn, pair, key=(a, b, c))


def Sigmoid_like():
    """``0.5 erf(x / 2.4020563531719796) + 0.5``, an Erf fitted to the logistic sigmoid on [-5, 5].

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Sigmoid_like()
    >>> apply_fn((), np.array([0.0]))
    Array([0.5], dtype=float32)
    """
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


def Gelu(approximate=False):
    """Gaussian error linear unit ``x Phi(x)``.

    Closed-form NNGP and NTK of the exact GELU (Tsuchida et al.); ``approximate`` only changes
    the finite-width ``apply_fn`` (tanh approximation).

    Parameters
    ----------
    approximate : bool, default=False

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    R. Tsuchida, T. Pearce, C. van der Heide, F. Roosta, M. Gallagher, "Avoiding kernel fixed
    points: computing with ELU and GELU infinite networks", AAAI 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Gelu()
    >>> round(float(apply_fn((), np.array([1.0]))[0]), 4)
    0.8413
    """
    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        P1 = (q1 + 1) * (q2 + 1)
        Q = q1 * q2
        d2 = P1 - c * c
        d = _safe_sqrt(d2)
        ang = jnp.arctan2(c, d)
        out = c / 4 + ((c * c + Q * d2) / (P1 * d) + c * ang) / (2 * _PI)
        if ntk is not None:
            first = (1 / d2 + (1 - Q) / P1 + 1) * c / d / (2 * _PI)
            ntk = ntk * (first + 0.25 + ang / (2 * _PI))
        return out, ntk

    def fn(x):
        import jax

        return jax.nn.gelu(x, approximate=approximate)

    return _elementwise("Gelu", fn, pair, key=(bool(approximate),))


def Sin(a=1.0, b=1.0, c=0.0):
    """``a sin(b x + c)``.

    NNGP ``a^2 / 2 (exp(b^2 (c12 - (q1 + q2) / 2)) - cos(2c) exp(-b^2 (c12 + (q1 + q2) / 2)))``;
    NTK factor ``a^2 b^2 / 2`` times the sum of the two exponentials (with the ``cos(2c)``).

    Parameters
    ----------
    a : float, default=1.0
    b : float, default=1.0
    c : float, default=0.0
        Phase shift.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Sin()
    >>> np.round(apply_fn((), np.array([np.pi / 2])), 4)
    Array([1.], dtype=float32)
    """
    a = check_scalar(a, "a", "Sin")
    b = check_scalar(b, "b", "Sin")
    c = check_scalar(c, "c", "Sin")
    half = a * a / 2

    def pair(cv, q1, q2, ntk):
        import jax.numpy as jnp

        s = -(q1 + q2) / 2
        s1 = jnp.exp(b * b * (s + cv))
        s2 = jnp.exp(b * b * (s - cv)) * math.cos(2 * c)
        return half * (s1 - s2), None if ntk is None else ntk * half * b * b * (s1 + s2)

    def fn(x):
        import jax.numpy as jnp

        return a * jnp.sin(b * x + c)

    return _elementwise(f"Sin({a}, {b}, {c})", fn, pair, key=(a, b, c))


def Cos(a=1.0, b=1.0, c=0.0):
    """``a cos(b x + c)``, i.e. ``Sin(a, b, c + pi / 2)``.

    Parameters
    ----------
    a : float, default=1.0
    b : float, default=1.0
    c : float, default=0.0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Cos()
    >>> np.round(apply_fn((), np.array([0.0])), 4)
    Array([1.], dtype=float32)
    """
    c = check_scalar(c, "c", "Cos")
    return Sin(a=a, b=b, c=c + _PI / 2)


def Rbf(gamma=1.0):
    """The activation ``sqrt(2) sin(sqrt(2 gamma) x + pi / 4)`` whose NNGP is the RBF kernel.

    NNGP ``exp(-gamma (q1 + q2 - 2 c))`` (``exp(-gamma |x - x'|^2 / d)`` after a Dense layer);
    NTK factor ``2 gamma`` times it.

    Parameters
    ----------
    gamma : float, default=1.0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Rbf(0.5))
    >>> np.round(kernel_fn(np.array([[0.0], [2.0]]), None, "nngp"), 4)
    Array([[1.    , 0.1353],
           [0.1353, 1.    ]], dtype=float32)
    """
    gamma = check_scalar(gamma, "gamma", "Rbf")

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        out = jnp.exp(gamma * (2 * c - q1 - q2))
        return out, None if ntk is None else ntk * 2 * gamma * out

    def fn(x):
        import jax.numpy as jnp

        return math.sqrt(2) * jnp.sin(math.sqrt(2 * gamma) * x + _PI / 4)

    return _elementwise(f"Rbf({gamma})", fn, pair, key=(gamma,))


def Exp(a=1.0, b=1.0):
    """``a exp(b x)``: NNGP ``a^2 exp(b^2 ((q1 + q2) / 2 + c))``, NTK factor ``b^2`` times it.

    Parameters
    ----------
    a : float, default=1.0
    b : float, default=1.0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Exp())
    >>> np.round(kernel_fn(np.array([[0.5]]), None, "nngp"), 4)  # E[e^{2x}], x ~ N(0, 1/4)
    Array([[1.6487]], dtype=float32)
    """
    a = check_scalar(a, "a", "Exp")
    b = check_scalar(b, "b", "Exp")

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        out = jnp.exp(b * b * ((q1 + q2) / 2 + c))
        return a * a * out, None if ntk is None else ntk * b * b * out * a * a

    def fn(x):
        import jax.numpy as jnp

        return a * jnp.exp(b * x)

    return _elementwise(f"Exp({a}, {b})", fn, pair, key=(a, b))


def Gaussian(a=1.0, b=-1.0):
    """``a exp(b x^2)``: NNGP ``a^2 / sqrt((1 - 2 b q1)(1 - 2 b q2) - 4 b^2 c^2)``.

    Parameters
    ----------
    a : float, default=1.0
    b : float, default=-1.0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Gaussian())
    >>> np.round(kernel_fn(np.array([[1.0]]), None, "nngp"), 4)  # 1 / sqrt(5)
    Array([[0.4472]], dtype=float32)
    """
    a = check_scalar(a, "a", "Gaussian")
    b = check_scalar(b, "b", "Gaussian")

    def pair(c, q1, q2, ntk):
        det = _safe_sqrt((1 - 2 * b * q1) * (1 - 2 * b * q2) - 4 * b * b * c * c)
        out = 1 / det
        if ntk is not None:
            ntk = ntk * (4 * b * b * c / det ** 3) * a * a
        return a * a * out, ntk

    def fn(x):
        import jax.numpy as jnp

        return a * jnp.exp(b * x * x)

    return _elementwise(f"Gaussian({a}, {b})", fn, pair, key=(a, b))


def ExpNormalized(gamma=1.0, shift=-1.0, do_clip=False):
    """The "Gaussian normalised kernel" layer: NNGP ``sqrt(q1 q2) exp(gamma (c / sqrt(q1 q2) + shift))``.

    A kernel-only layer (no finite-width ``apply_fn``), from Shankar et al.

    Parameters
    ----------
    gamma : float, default=1.0
    shift : float, default=-1.0
    do_clip : bool, default=False
        Clip the normalised covariance to [-1, 1].

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    V. Shankar et al., "Neural kernels without tangents", ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.ExpNormalized())
    >>> kernel_fn(np.array([[2.0]]), None, "nngp")
    Array([[4.]], dtype=float32)
    """
    gamma = check_scalar(gamma, "gamma", "ExpNormalized")
    shift = check_scalar(shift, "shift", "ExpNormalized")

    def pair(c, q1, q2, ntk):
        import jax.numpy as jnp

        r = jnp.sqrt(jnp.maximum(q1 * q2, 1e-30))
        rho = c / r
        if do_clip:
            rho = jnp.clip(rho, -1, 1)
        e = jnp.exp(gamma * (rho + shift))
        return r * e, None if ntk is None else gamma * ntk * e

    return _elementwise(f"ExpNormalized({gamma}, {shift})", None, pair, key=(gamma, shift, bool(do_clip)))
