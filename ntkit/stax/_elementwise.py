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

from .._validation import check_int
from ._core import _Diagonal, make_layer
from ._state import pair_terms, self_terms

__all__ = ["Elementwise", "ElementwiseNumerical"]

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
