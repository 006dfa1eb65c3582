"""Linearised and Taylor-expanded networks: the finite-width models whose training the NTK describes.

``linearize(f, params)`` is the first-order model ``f(θ0) + J(θ0)(θ - θ0)`` around ``θ0 = params``,
evaluated without forming J: one forward-mode product (``jax.jvp``) per call. ``taylor_expand``
carries the series to any degree with nested forward-mode products. Both follow
``neural_tangents.linearize`` / ``taylor_expand``: ``f(params, *args, **kwargs)`` returns any
pytree, and the result is a function of new parameters with the same signature as ``f``.
"""

from __future__ import annotations

import numpy as np

from .._validation import InvalidParameterError

__all__ = ["linearize", "taylor_expand"]


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def _check_f(f, owner):
    if not callable(f):
        raise TypeError(f"f must be a callable f(params, *args, **kwargs) (the network's apply_fn) for {owner}; got "
                        f"{type(f).__name__}.")


def _shift(params, new_params, owner):
    """``new_params - params`` leaf by leaf, in each leaf's dtype of ``params`` (jvp needs equal types)."""
    jax, jnp = _jax()
    tree0 = jax.tree_util.tree_structure(params)
    tree1 = jax.tree_util.tree_structure(new_params)
    if tree0 != tree1:
        raise ValueError(f"the parameters passed to the {owner} model must have the structure of the expansion "
                         f"point; expected {tree0}, found {tree1}.")
    return jax.tree_util.tree_map(lambda p, p0: (jnp.asarray(p) - p0).astype(jnp.result_type(p0)), new_params,
                                  params)


def linearize(f, params):
    """The first-order Taylor model of ``f`` around ``params``.

    ``f_lin(p, *args, **kwargs) = f(params, *args, **kwargs) + J (p - params)``, with the
    Jacobian-vector product computed by forward-mode differentiation (``jax.jvp``), never the
    Jacobian itself. Gradient descent on ``f_lin`` is what the empirical NTK at ``params``
    describes exactly. Same semantics as ``neural_tangents.linearize``.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs)`` returning an array or any pytree of arrays.
    params : pytree of float arrays
        The expansion point.

    Returns
    -------
    callable
        ``f_lin(p, *args, **kwargs)`` with the signature of ``f``; jit-able.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ntkit import linearize
    >>> f = lambda p, x: jnp.sin(p * x)
    >>> f_lin = linearize(f, jnp.array(0.0))
    >>> round(float(f_lin(jnp.array(0.1), 2.0)), 6)  # sin(0) + cos(0) * 2 * 0.1
    0.2
    """
    _check_f(f, "linearize")
    jax, _ = _jax()

    def f_lin(p, *args, **kwargs):
        dp = _shift(params, p, "linearized")
        f0, df = jax.jvp(lambda q: f(q, *args, **kwargs), (params,), (dp,))
        return jax.tree_util.tree_map(lambda a, b: a + b, f0, df)

    return f_lin


def taylor_expand(f, params, degree):
    """The Taylor polynomial of ``f`` of order ``degree`` around ``params``.

    ``f_tayl(p, *args, **kwargs) = sum_{k <= degree} D^k f(params)[p - params]^k / k!``, the k-th
    directional derivatives from ``degree`` nested forward-mode products (one nested evaluation
    gives all orders). ``degree=1`` is :func:`linearize`; ``degree=0`` the constant
    ``f(params)``. Same semantics as ``neural_tangents.taylor_expand``.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs)`` returning an array or any pytree of arrays.
    params : pytree of float arrays
        The expansion point.
    degree : int >= 0
        The order of the expansion. The cost grows like ``2^degree`` forward passes.

    Returns
    -------
    callable
        ``f_tayl(p, *args, **kwargs)`` with the signature of ``f``; jit-able.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ntkit import taylor_expand
    >>> f = lambda p, x: jnp.exp(p * x)
    >>> f2 = taylor_expand(f, jnp.array(0.0), 2)
    >>> float(f2(jnp.array(0.5), 1.0))  # 1 + 0.5 + 0.5**2 / 2
    1.625
    """
    _check_f(f, "taylor_expand")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise InvalidParameterError(
            f"The 'degree' parameter of taylor_expand must be an int in the range [0, inf). Got {degree!r} instead.")
    degree = int(degree)
    jax, _ = _jax()

    def f_tayl(p, *args, **kwargs):
        dp = _shift(params, p, "Taylor-expanded")

        def orders(q):  # (f(q),) at order 0
            return (f(q, *args, **kwargs),)

        for _ in range(degree):
            # (g_0, ..., g_k) -> (g_0, ..., g_k, D g_k [dp]): the primal keeps the lower orders and
            # the tangent of the last one is the next order.
            def orders(q, prev=orders):
                primal, tangent = jax.jvp(prev, (q,), (dp,))
                return primal + (tangent[-1],)

        terms = orders(params)
        # Horner form of sum_k D^k / k!: g_0 + (g_1 + (g_2 + ... / 3) / 2) / 1
        acc = terms[-1]
        for k in range(degree - 1, -1, -1):
            acc = jax.tree_util.tree_map(lambda a, b, k=k: a + b / (k + 1), terms[k], acc)
        return acc

    return f_tayl
