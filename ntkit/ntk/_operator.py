"""The empirical NTK as a matrix-free scipy ``LinearOperator`` (NTK-vector products)."""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._validation import InvalidParameterError, check_scalar
from ..ops._operator import _CheckedProducts
from ._checks import _check_params, _check_x, _compute_dtype, _resolve_apply_fn, _x64

__all__ = ["NTKOperator"]


class NTKOperator(_CheckedProducts, LinearOperator):
    r"""``v ↦ (Θ(x, x) + ridge·I) v`` without forming Θ: one VJP and one JVP per product.

    Each product costs about two passes of the network over ``x`` (``trace`` costs O of
    each), and memory of one VJP, so the NTK of a large training set can go straight into
    CG, Lanczos or EigenPro.

    Parameters
    ----------
    apply_fn, params, x
        As in :func:`ntkit.ntk.empirical_ntk`.
    kind : {"full", "trace", "sum_logits"}
        ``"full"`` acts on vectors of length n·O (row-major (n, O)); the others on length n.
    ridge : float, default=0.0

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ntkit.ntk import NTKOperator, empirical_ntk
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((3, 16, 2))
    >>> params = init(jax.random.PRNGKey(0))
    >>> x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, 3)))
    >>> op = NTKOperator(apply, params, x, kind="trace")
    >>> v = np.ones(4, np.float32)
    >>> bool(np.allclose(op @ v, empirical_ntk(apply, params, x, kind="trace") @ v, rtol=1e-4))
    True
    """

    def __init__(self, apply_fn, params, x, *, kind="full", ridge=0.0):
        import jax
        import jax.numpy as jnp

        if kind not in ("full", "trace", "sum_logits"):
            raise InvalidParameterError(
                f"The 'kind' parameter of NTKOperator must be one of ('full', 'trace', 'sum_logits'). Got {kind!r}.")
        apply_fn = _resolve_apply_fn(apply_fn)
        _, leaves, treedef = _check_params(params)
        x = _check_x(x, "x")
        self.ridge = check_scalar(ridge, "ridge", "NTKOperator", low=0.0)
        dtype = _compute_dtype(leaves, [x])
        self._dtype64 = dtype
        self.kind = kind
        with _x64(dtype):
            lv = [jnp.asarray(leaf, dtype) for leaf in leaves]
            xx = jnp.asarray(x, dtype) if np.dtype(x.dtype).kind == "f" else jnp.asarray(x)
            params_j = jax.tree_util.tree_unflatten(treedef, lv)
            try:
                out = jax.eval_shape(apply_fn, params_j, xx)
            except Exception as exc:  # noqa: BLE001 - x does not fit the network: the caller's input
                raise ValueError(f"apply_fn(params, x) failed for x of shape {tuple(x.shape)}: {exc}. Check that "
                                 "params belong to apply_fn and that x has the network's input shape.") from None
            if len(out.shape) != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(f"apply_fn(params, x) must return shape (n, O) = ({x.shape[0]}, O); got "
                                 f"{tuple(out.shape)}.")
        n, O = int(out.shape[0]), int(out.shape[1])
        self.n_out = O
        size = n * O if kind == "full" else n

        def f(p):
            return apply_fn(p, xx)

        def mv(v):
            if kind == "full":
                ct = v.reshape(n, O)
                (u,) = jax.vjp(f, params_j)[1](ct)
                return jax.jvp(f, (params_j,), (u,))[1].reshape(-1)
            if kind == "sum_logits":
                ct = jnp.broadcast_to(v[:, None] / math.sqrt(O), (n, O))
                (u,) = jax.vjp(f, params_j)[1](ct)
                return jax.jvp(f, (params_j,), (u,))[1].sum(axis=1) / math.sqrt(O)
            _, vjp_fn = jax.vjp(f, params_j)

            def one(o):
                ct = jnp.zeros((n, O), v.dtype).at[:, o].set(v)
                (u,) = vjp_fn(ct)
                return jax.jvp(f, (params_j,), (u,))[1][:, o]

            return jax.lax.map(one, jnp.arange(O)).sum(axis=0)

        with _x64(dtype):
            self._mv = jax.jit(jax.vmap(mv, in_axes=1, out_axes=1))
        super().__init__(dtype=dtype, shape=(size, size))

    def _matmat(self, V):
        import jax.numpy as jnp

        V = np.asarray(V)
        with _x64(self._dtype64):
            out = np.asarray(self._mv(jnp.asarray(V, self._dtype64)))
        if self.ridge:
            out = out + self.ridge * V
        return out.astype(self._dtype64, copy=False)

    def _matvec(self, v):
        return self._matmat(np.asarray(v).reshape(-1, 1)).reshape(-1)

    def _adjoint(self):
        return self  # Θ is symmetric
