"""The kernel protocol.

A kernel is a small object that stores hyper-parameters (``__init__`` stores,
nothing else) and knows three things:

* how to prepare the data once (``_prepare``: centring and lengthscale scaling
  for stationary kernels),
* how to turn one block of inner products ``<x, z>`` and squared norms into
  kernel values (``_block``), written once against an array namespace ``xp``
  so the same formula serves numpy and jax,
* its exact diagonal (``_diag``) and, if the native engine implements it, its
  native id and parameters (``_native_spec``).

Evaluation itself always goes through :func:`ntkit.ops.gram` /
:func:`ntkit.ops.kernel_matvec`, the one primitive of the library.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .._validation import check_data, is_jax_array

__all__ = ["Kernel", "StationaryKernel", "DotProductKernel"]


#: The Gram evaluator behind ``Kernel.__call__``: :func:`ntkit.ops.gram`, installed by ``ntkit.ops`` when it is
#: imported (``import ntkit`` imports it). Kernels sit below the primitive: nothing in ``ntkit.kernels``
#: imports ``ntkit.ops``; the primitive depends on the kernels, never the other way round.
_GRAM = None


def register_gram(fn) -> None:
    """Install ``fn(kernel, X, Z, *, backend)`` as the evaluator of ``Kernel.__call__`` (done by ``ntkit.ops``)."""
    global _GRAM
    _GRAM = fn


def _is_tracer(a) -> bool:
    """True for a jax tracer (a kernel under jit/grad): it has no concrete values to check."""
    import sys

    jax = sys.modules.get("jax")
    return jax is not None and isinstance(a, jax.core.Tracer)


class Kernel(BaseEstimator):
    """Base class of ntkit kernels.

    Subclasses implement ``_validated()`` (checked hyper-parameters as a dict),
    ``_block(xp, dot, sx, sz, n_features, params)``, ``_diag(xp, sx, n_features, params)``
    and optionally ``_native_spec(params)``. Instances are callable:
    ``k(X, Z=None)`` returns the Gram matrix and ``k.diag(X)`` its diagonal.
    ``get_params`` / ``set_params`` / ``sklearn.base.clone`` work as for estimators.
    """

    #: "stationary" kernels depend on x - z only; "dot" kernels on <x,z>, |x|, |z|.
    family = "dot"

    def _validated(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, xp, X, Z, params):
        """Transform the data once before blocks are formed (identity by default)."""
        return X, Z

    def _block(self, xp, dot, sx, sz, n_features, params):  # pragma: no cover - abstract
        raise NotImplementedError

    def _block_rows(self, xp, X, Z, dot, sx, sz, n_features, params):
        """``_block`` given the prepared rows as well: what the primitive and the device solvers call.

        The arc-cosine and ReLU network kernels use the rows to recompute near-parallel and
        near-opposite pairs exactly (:mod:`ntkit.kernels._angles`); the others ignore them.
        """
        return self._block(xp, dot, sx, sz, n_features, params)

    def _diag(self, xp, sx, n_features, params):  # pragma: no cover - abstract
        raise NotImplementedError

    def _diag_rows(self, xp, X, sx, n_features, params):
        """``_diag`` given the prepared rows as well (a kernel of images needs them; the others ignore them)."""
        return self._diag(xp, sx, n_features, params)

    def _workspace_copies(self, params):
        """Workspace entries one Gram entry needs while a block is evaluated, or None for the primitive's
        default (a few): what :func:`ntkit.ops.plan_blocks` sizes blocks by."""
        return None

    def _native_spec(self, params):
        """``(kernel_id, params)`` for :mod:`ntkit_native`, or None when not implemented there."""
        return None

    def _static_key(self, params) -> tuple:
        """Hashable summary of everything ``_block`` depends on (for jit caches)."""
        return (type(self).__name__,) + tuple(
            (k, v) for k, v in sorted(params.items()) if not isinstance(v, np.ndarray)
        )

    def __call__(self, X, Z=None, *, backend="auto"):
        """Gram matrix ``K(X, Z)`` of shape (n, m); ``K(X, X)`` when Z is None."""
        if _GRAM is None:  # only when ntkit.kernels was loaded without its parent package's __init__
            raise RuntimeError("ntkit.ops is not imported: `import ntkit` (or ntkit.ops) installs the Gram evaluator "
                               "that kernels call")
        return _GRAM(self, X, Z, backend=backend)

    def diag(self, X):
        """The diagonal ``k(x_i, x_i)``, shape (n,), without forming the Gram matrix.

        >>> import numpy as np
        >>> from ntkit.kernels import RBF
        >>> RBF(2.0).diag(np.zeros((3, 4)))
        array([1., 1., 1.])
        """
        X = check_data(X, "X")
        params = self._validated()
        if is_jax_array(X):
            import jax.numpy as jnp

            Xp, _ = self._prepare(jnp, X, None, params)
            return self._diag_rows(jnp, Xp, jnp.sum(Xp * Xp, axis=1), X.shape[1], params)
        Xp, _ = self._prepare(np, X, None, params)
        sx = np.einsum("ij,ij->i", Xp, Xp)
        return np.asarray(self._diag_rows(np, Xp, sx, X.shape[1], params), dtype=X.dtype)

    @property
    def is_stationary(self) -> bool:
        return self.family == "stationary"


class StationaryKernel(Kernel):
    """Kernels of ``r = |x - z| / lengthscale``.

    ``lengthscale`` is a positive float, or an array of shape (n_features,)
    for one lengthscale per feature (automatic relevance determination).
    The data are centred (on the mean of X) and divided by the lengthscale
    before inner products are formed: the kernel does not change, but the
    ``|x|^2 + |z|^2 - 2<x,z>`` expansion loses far fewer digits for data far
    from the origin.
    """

    family = "stationary"

    def _check_lengthscale(self, X_features=None):
        ls = self.lengthscale
        owner = type(self).__name__
        from .._validation import InvalidParameterError, check_scalar

        if isinstance(ls, str) and ls == "scale":
            raise InvalidParameterError(
                f"{owner}(lengthscale='scale') is resolved by ntkit's estimators at fit time (sqrt(n_features · "
                "X.var()) of the training data); ntkit.ops and the solvers need a number: pass "
                "ntkit.estimators.data_lengthscale(X) or another positive float.")

        if isinstance(ls, (list, tuple, np.ndarray)) and np.ndim(ls) >= 1:
            arr = np.asarray(ls, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise InvalidParameterError(
                    f"The 'lengthscale' parameter of {owner} must be a positive float or a 1-D array of "
                    f"positive finite floats (one per feature). Got {ls!r} instead."
                )
            return arr
        return check_scalar(ls, "lengthscale", owner, low=0.0, closed="right")

    def _prepare(self, xp, X, Z, params):
        ls = params["lengthscale"]
        if isinstance(ls, np.ndarray) and ls.shape[0] != X.shape[1]:
            raise ValueError(
                f"lengthscale has {ls.shape[0]} entries but X has {X.shape[1]} features; "
                "give one lengthscale per feature or a single float."
            )
        if X.shape[0] == 0:
            shift = xp.zeros((X.shape[1],), dtype=X.dtype)
        else:
            shift = xp.mean(X, axis=0)
        scale = xp.asarray(1.0 / ls, dtype=X.dtype) if isinstance(ls, np.ndarray) else X.dtype.type(1.0 / ls)
        Xp = (X - shift) * scale
        Zp = None if Z is None else (Z - shift.astype(Z.dtype)) * scale
        # |x|² of the scaled data must stay finite, or the distance expansion gives inf - inf = NaN
        # kernel values: a tiny lengthscale (or huge data) is an input error, not a result. float32
        # data beyond float32's range are not an error: ntkit.ops recomputes them in float64
        # (ntkit.ops._gram.F32_SAFE_SQNORM), so only float64 is checked here.
        limit = float(np.sqrt(np.finfo(np.dtype(X.dtype)).max)) / (2.0 * max(1.0, float(X.shape[1])) ** 0.5)
        for P in (Xp, Zp) if np.dtype(X.dtype) != np.float32 else ():
            if P is not None and P.size and not _is_tracer(P):
                top = float(xp.max(xp.abs(P)))
                if not top < limit:
                    raise ValueError(
                        f"the data divided by the lengthscale reach {top:.3g}, beyond the {np.dtype(X.dtype)} range of "
                        f"squared distances (|x - mean| / lengthscale must stay below {limit:.3g}); use a larger "
                        "lengthscale or rescale X.")
        return Xp, Zp

    def _diag(self, xp, sx, n_features, params):
        return xp.ones_like(sx)

    def _from_sqdist(self, xp, d2, params):  # pragma: no cover - abstract
        """Kernel values from squared distances of the prepared (unit-lengthscale) data."""
        raise NotImplementedError

    def _block(self, xp, dot, sx, sz, n_features, params):
        return self._from_sqdist(xp, self._sqdist(xp, dot, sx, sz), params)

    @staticmethod
    def _sqdist(xp, dot, sx, sz):
        d2 = sx[:, None] + sz[None, :] - 2 * dot
        return xp.where(d2 < 0, 0, d2)  # clamp round-off below 0; NaN stays NaN (XLA's max may drop it)


class DotProductKernel(Kernel):
    """Kernels of ``<x, z>``, ``|x|^2`` and ``|z|^2`` (not translation invariant)."""

    family = "dot"
