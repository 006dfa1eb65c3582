"""Nonlinearities: the dual activation of each elementwise function, in closed form where one exists.

For a pre-activation that is a centred Gaussian pair ``(u, v)`` with variances ``q1``, ``q2``
and covariance ``c`` (the input state's ``cov1``/``cov2`` diagonals and ``nngp``), a layer
``phi`` maps the NNGP to ``E[phi(u) phi(v)]`` and multiplies the NTK by ``E[phi'(u) phi'(v)]``
(the derivative of the former in ``c``). Each layer below is one function
``pair(c, q1, q2, ntk) -> (c', ntk')`` written for broadcast arrays, applied to ``nngp``
(variances of the two batches) and to ``cov1`` / ``cov2`` (each batch with itself).

Arc-cosine-type layers (ReLU family, Sign, rectified monomials) use the angle
``theta = arctan2(sqrt(det), c)`` with ``det = q1 q2 - c**2``: for identical inputs ``det`` is 0
exactly (``cov1`` is read off the same numbers as ``nngp``), so ``theta = 0`` without the
``arccos`` of a correlation rounded below 1; opposite inputs give ``theta = pi`` exactly.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_int, check_scalar
from ._core import _Diagonal, make_layer
from ._state import pair_terms, self_terms

__all__ = [
    "ABRelu",
    "Abs",
    "Cos",
    "Elementwise",
    "ElementwiseNumerical",
    "Erf",
    "Exp",
    "ExpNormalized",
    "Gaussian",
    "Gelu",
    "Hermite",
    "LeakyRelu",
    "Monomial",
    "Polynomial",
    "Rbf",
    "RectifiedMonomial",
    "Relu",
    "Sigmoid_like",
    "Sign",
    "Sin",
]

_PI = math.pi


def _elementwise(name, fn, pair, key=None):
    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        if fn is None:
            raise NotImplementedError(f"{name} has no finite-width function (only its kernel is defined).")
        return fn(inputs)

    def kernel(k, **ctx):
        if pair is None:
            raise NotImplementedError(f"{name} has no infinite-width kernel (pass nngp_fn).")
        if not k.is_gaussian:
            raise ValueError(f"The input to {name} must be Gaussian: put a Dense / Conv (a random affine map) "
                             "before the nonlinearity.")
        v1, v2, q1, q2 = pair_terms(k)
        nngp, ntk = pair(k.nngp, q1, q2, k.ntk)
        a, b = self_terms(v1, k)
        cov1, _ = pair(k.cov1, a, b, None)
        cov2 = None
        if k.cov2 is not None:
            a, b = self_terms(v2, k)
            cov2, _ = pair(k.cov2, a, b, None)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    return make_layer(name, init_fn, apply_fn, kernel, lambda s: s, {"diagonal_spatial": _Diagonal()}, key=key)


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with a finite (zero) derivative at 0."""
    import jax.numpy as jnp

    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


#: ``det = q1 q2 - c^2`` below this many machine epsilons of ``q1 q2`` is taken as 0 (parallel or
#: opposite inputs). Rounding of the covariances themselves leaves a few epsilons there, which
#: ``sqrt`` would turn into an angle of ~1e-8 (float64) and a relative NTK error of ~1e-9; the
#: snap moves genuinely nearly parallel pairs (|cos theta| within 4 eps of 1, theta < 6e-8) by at
#: most the same amount, below what their float64 inputs determine.
PARALLEL_EPS = 8


def _angle(c, q1, q2):
    """``(sqrt(det), theta)`` with ``theta = arctan2(sqrt(q1 q2 - c^2), c)``; pi/2 for a zero vector."""
    import jax.numpy as jnp

    prod = q1 * q2
    det = prod - c * c
    det = jnp.where(det <= PARALLEL_EPS * jnp.finfo(det.dtype).eps * prod, 0.0, det)
    sd = _safe_sqrt(det)
    zero = (sd == 0) & (c == 0)
    theta = jnp.where(zero, _PI / 2, jnp.arctan2(sd, jnp.where(zero, 1.0, c)))
    return sd, theta


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


# ----------------------------------------------------------------------------------------------
# Any activation


def Elementwise(fn=None, nngp_fn=None, d_nngp_fn=None):
    """An activation given by its function and its dual ``nngp_fn(c, q1, q2) = E[fn(u) fn(v)]``.

    The NTK factor is ``d_nngp_fn(c, q1, q2) = E[fn'(u) fn'(v)]``, by default the derivative of
    ``nngp_fn`` in ``c`` (automatic differentiation).

    Parameters
    ----------
    fn : callable, optional
        The finite-width activation (needed by ``apply_fn`` only).
    nngp_fn : callable, optional
        Scalar function of ``(c, q1, q2)`` (needed by ``kernel_fn`` only).
    d_nngp_fn : callable, optional

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import jax.numpy as jnp, numpy as np
    >>> from ntkit import stax
    >>> def relu_nngp(c, q1, q2):
    ...     theta = jnp.arccos(jnp.clip(c / jnp.sqrt(q1 * q2), -1, 1))
    ...     return jnp.sqrt(q1 * q2) * (jnp.sin(theta) + (jnp.pi - theta) * jnp.cos(theta)) / (2 * jnp.pi)
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Elementwise(nngp_fn=relu_nngp))
    >>> [[round(float(v), 4) for v in row] for row in kernel_fn(np.eye(2), None, "nngp")]
    [[0.25, 0.0796], [0.0796, 0.25]]
    """
    if fn is None and nngp_fn is None:
        raise ValueError("Elementwise needs fn (finite width), nngp_fn (infinite width) or both; got neither.")
    for name, f in (("fn", fn), ("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn)):
        if f is not None and not callable(f):
            raise TypeError(f"The {name!r} parameter of Elementwise must be callable. Got {type(f).__name__}.")
    name = getattr(fn if fn is not None else nngp_fn, "__name__", "Elementwise")
    pair = None
    if nngp_fn is not None:
        def pair(c, q1, q2, ntk):
            import jax
            import jax.numpy as jnp

            nn_fn = jnp.vectorize(nngp_fn)
            out = nn_fn(c, q1, q2)
            if ntk is not None:
                d = jnp.vectorize(d_nngp_fn) if d_nngp_fn is not None else jnp.vectorize(jax.grad(nngp_fn))
                ntk = ntk * d(c, q1, q2)
            return out, ntk

    return _elementwise(name, fn, pair, key=(fn, nngp_fn, d_nngp_fn))


def ElementwiseNumerical(fn, deg, df=None):
    """Any activation, with the dual computed by ``deg x deg``-point Gauss–Hermite quadrature.

    ``E[fn(u) fn(v)]`` is a 2-d Gaussian integral; writing ``u = sqrt(2 q1) s``,
    ``v = sqrt(2) c / sqrt(q1) s + sqrt(2 (q2 - c^2 / q1)) t`` turns it into
    ``sum_ij w_i w_j fn(u_i) fn(v_ij) / pi`` over the Hermite nodes. The NTK uses ``df``
    (default: ``jax.grad(fn)``). Accurate for smooth activations (``deg = 25`` is a good
    start); the error of non-smooth ones (ReLU) decays slowly.

    Parameters
    ----------
    fn : callable
        Scalar activation, applied elementwise to jax arrays.
    deg : int >= 1
        Quadrature points per dimension.
    df : callable, optional
        Derivative of ``fn``.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    I. Han, A. Zandieh, J. Lee, R. Novak, L. Xiao, A. Karbasi, "Fast neural kernel embeddings
    for general activations", NeurIPS 2022.

    Examples
    --------
    >>> import jax.numpy as jnp, numpy as np
    >>> from ntkit import stax
    >>> _, _, k_num = stax.serial(stax.Dense(1), stax.ElementwiseNumerical(jnp.tanh, deg=25))
    >>> float(k_num(np.array([[1.0]]), None, "nngp")[0, 0]) > 0.39
    True
    """
    if not callable(fn):
        raise TypeError(f"The 'fn' parameter of ElementwiseNumerical must be callable. Got {type(fn).__name__}.")
    if df is not None and not callable(df):
        raise TypeError(f"The 'df' parameter of ElementwiseNumerical must be callable. Got {type(df).__name__}.")
    deg = check_int(deg, "deg", "ElementwiseNumerical", low=1)
    nodes, weights = np.polynomial.hermite.hermgauss(deg)

    def pair(c, q1, q2, ntk):
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(nodes, c.dtype)
        w = jnp.asarray(weights, c.dtype)
        grid = jnp.outer(w, w) / _PI
        ex = (Ellipsis,) + (None,) * c.ndim
        s = x[:, None][ex]  # (deg, 1, ...)
        t = x[None, :][ex]  # (1, deg, ...)
        q1b = jnp.broadcast_to(q1, c.shape)
        q2b = jnp.broadcast_to(q2, c.shape)
        u = jnp.sqrt(2 * jnp.maximum(q1b, 0.0)) * s
        slope = c / jnp.sqrt(jnp.maximum(q1b / 2, 1e-30))
        v = slope * s + jnp.sqrt(2 * jnp.maximum(q2b - c * c / jnp.maximum(q1b, 1e-30), 0.0)) * t

        def integrate(f):
            return jnp.tensordot(grid, f(u) * f(v), axes=((0, 1), (0, 1)))

        out = integrate(fn)
        if ntk is not None:
            d = df if df is not None else jnp.vectorize(jax.grad(fn))
            ntk = ntk * integrate(d)
        return out, ntk

    return _elementwise(f"ElementwiseNumerical(deg={deg})", fn, pair, key=(fn, deg, df))
