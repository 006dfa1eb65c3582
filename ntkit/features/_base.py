"""Shared machinery of the random-feature transformers.

Where a transform runs (the ``device`` parameter of every transformer)
----------------------------------------------------------------------
``transform(X)`` follows :func:`ntkit._device.resolve_device` with one exception for numpy data:

* jax ``X`` → computed on X's device by a jit-compiled function of device arrays; jax out, on
  that device, in X's dtype;
* numpy ``X`` with ``device="auto"`` → the host path (numpy / native) unless
  ``ntkit.config_context(device=...)`` names a device — even when jax sees a GPU. Estimators'
  ``"auto"`` moves numpy data to a GPU; transformers do not, because a feature map is one
  pass over the data (its cost is dominated by the transfer for all but the largest maps) and
  the host figures must not change with the machine;
* ``device="cpu"`` / ``"gpu"`` / a ``jax.Device`` → numpy X is validated on the host, moved
  once, mapped there, and the features come back as numpy.

Fitting draws the random parameters with the same numpy generator on every path (so the device
features are the same function as the host ones) and stores them as numpy; they are moved to a
device once, when a transform first needs them there, and kept with the fitted transformer.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._blas import matmul
from .._validation import InvalidParameterError, check_array_arg, check_data, check_int, check_scalar, is_jax_array

__all__ = ["RandomFeatureBase", "check_lengthscale", "orthogonal_directions", "seed_from", "jitted", "mm",
           "x64_scope", "device_finite", "to_host", "placement_for"]


# -- device helpers (jax is imported lazily: nothing happens at import) -------------------------------

@functools.lru_cache(maxsize=None)
def jitted(fn, static_argnums=(0,)):
    """``jax.jit(fn)`` built once per function (static configuration first)."""
    import jax

    return jax.jit(fn, static_argnums=static_argnums)


def mm(A, B):
    """``A @ B`` in full precision on every device (no TF32 / bf16 passes on GPUs)."""
    import jax
    import jax.numpy as jnp

    return jnp.matmul(A, B, precision=jax.lax.Precision.HIGHEST)


def x64_scope(dtype):
    """64-bit jax for float64 work (the context the primitive uses); a no-op otherwise."""
    from ..ops._backends._jax import x64_scope as scope

    return scope(dtype)


def to_host(a):
    """One explicit device→host transfer (``jax.device_get``), numpy out."""
    import jax

    return np.asarray(jax.device_get(a))


def device_finite(X, name="X"):
    """Raise the host path's ValueError when a jax array holds NaN or infinity (one explicit sync)."""
    import jax.numpy as jnp

    if X.size and not bool(to_host(jnp.isfinite(X).all())):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")


def placement_for(device, X, owner):
    """The transformers' rule (module docstring): ``"auto"`` keeps numpy data on the host unless
    ``config_context(device=...)`` names a device; otherwise :func:`ntkit._device.resolve_device`."""
    from .._device import resolve_device

    if isinstance(device, str) and device == "auto" and not is_jax_array(X):
        device = None
    return resolve_device(device, X, owner=owner)


def check_device_X(est, X, placement, *, reset=False, name="X"):
    """Validate X for a device computation and return it as a jax array on the placement's device.

    numpy (and other array-likes) go through the host validation of the host path (same messages,
    same dtype conversion) and are moved once; jax arrays are checked where they are (rank, rows,
    features, float32/float64 dtype, finiteness) and moved only if an explicit device differs.
    """
    from .._device import to_device

    if not is_jax_array(X):
        check_array_arg(X, name, ndim=2, min_rows=1)
        X = validate_data(est, X, reset=reset, dtype=[np.float64, np.float32])
        with x64_scope(X.dtype):
            return to_device(X, placement)
    check_array_arg(X, name, ndim=2, min_rows=1, n_features=None if reset else getattr(est, "n_features_in_", None))
    X = check_data(X, name, ndim=2, allow_jax=True, finite=False, min_rows=1)
    validate_data(est, X, reset=reset, skip_check_array=True)  # n_features_in_ (set or checked)
    with x64_scope(X.dtype):
        device_finite(X, name)
        return to_device(X, placement)


def seed_from(random_state):
    """A numpy Generator from an int, None, a Generator or a legacy RandomState."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def check_lengthscale(ls, owner, n_features):
    """A positive float, or one positive lengthscale per feature; returns a float64 array (1,) or (d,)."""
    arr = np.asarray(ls, dtype=object if isinstance(ls, str) else None)
    if arr.dtype == object or arr.ndim > 1 or arr.dtype.kind not in "fiu":
        raise InvalidParameterError(f"The 'lengthscale' parameter of {owner} must be a positive float or a 1-D "
                                    f"array of positive floats; got {ls!r}.")
    if arr.ndim == 0:
        return np.array([check_scalar(float(arr), "lengthscale", owner, low=0.0, closed="right")])
    arr = arr.astype(np.float64)
    if arr.shape[0] != n_features:
        raise InvalidParameterError(f"lengthscale has {arr.shape[0]} entries but X has {n_features} features; give "
                                    "one lengthscale per feature or a single float.")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise InvalidParameterError(f"The 'lengthscale' parameter of {owner} must be positive and finite; got {ls!r}.")
    return arr


def orthogonal_directions(rng, n_rows, d):
    """``n_rows`` unit vectors in R^d, exactly orthogonal within each block of d (QR of a Gaussian).

    Blocks are independent; the last one is truncated. Each row is uniformly distributed on the
    sphere (Haar-distributed Q, sign-corrected by diag(R)).
    """
    out = np.empty((n_rows, d))
    for start in range(0, n_rows, d):
        G = rng.standard_normal((d, d))
        Q, R = np.linalg.qr(G)
        Q = Q * np.sign(np.diag(R))[None, :]  # Haar measure
        stop = min(n_rows, start + d)
        out[start:stop] = Q.T[: stop - start]
    return out


class RandomFeatureBase(TransformerMixin, BaseEstimator):
    """fit validates X, sets ``n_features_in_`` and draws the random parameters; transform maps.

    Subclasses implement ``_draw(rng, X)`` (store fitted attributes, return nothing; X is numpy,
    or a jax array when fit was given one — only its shape and a few statistics are read),
    ``_map(X)`` (the host map: float64 or float32 array in, same dtype out) and, for the device
    path, ``_device_arrays()`` (dict of the fitted numpy arrays the map reads), ``_device_static()``
    (hashable configuration) and the pure function ``_jax_map(static, arrays, X)`` that is
    jit-compiled (see the module docstring for where each runs).
    """

    def _check_n_components(self):
        return check_int(self.n_components, "n_components", type(self).__name__, low=1)

    def _placement(self, X):
        return placement_for(getattr(self, "device", "auto"), X, type(self).__name__)

    def fit(self, X, y=None):
        """Draw the random parameters for inputs like X (only X's shape and dtype are used,
        except by data-dependent maps such as Nystroem). A jax X is read where it lives."""
        placement = self._placement(X)  # also validates ``device``
        if is_jax_array(X):
            X = check_device_X(self, X, placement, reset=True)
            with x64_scope(X.dtype):
                self._draw(seed_from(self.random_state), X)
        else:
            check_array_arg(X, "X", ndim=2, min_rows=1)
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
            self._draw(seed_from(self.random_state), X)
        self._on_device = {}  # device copies of the fitted arrays, filled by transform
        return self

    def transform(self, X):
        """The feature map, shape (n_samples, n_components), in the dtype of X.

        numpy in → numpy out; jax in → jax out on X's device (see the module docstring for the
        ``device`` rule).
        """
        check_is_fitted(self)
        placement = self._placement(X)
        if not placement.on_device:
            check_array_arg(X, "X", ndim=2, min_rows=1)
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            return self._map(X)
        Xd = check_device_X(self, X, placement)
        with x64_scope(Xd.dtype):
            F = self._map_device(Xd, placement.device)
        return F if placement.jax_out else to_host(F)

    # -- the device path ---------------------------------------------------------------------------
    def _device_params(self, device, dtype):
        """The fitted arrays as jax arrays on ``device`` in ``dtype`` (moved once, then cached)."""
        import jax

        cache = self.__dict__.setdefault("_on_device", {})
        key = (device, np.dtype(dtype).str)
        if key not in cache:
            def cast(v):  # float leaves in the computation's dtype, index arrays as they are
                v = np.asarray(v)
                return v.astype(dtype) if v.dtype.kind == "f" else v

            cache[key] = jax.device_put(jax.tree_util.tree_map(cast, self._device_arrays()), device)
        return cache[key]

    def _map_device(self, X, device):
        """Φ(X) for a jax X on ``device`` (inside the x64 scope of X's dtype): one jitted call."""
        params = self._device_params(device, X.dtype)
        return jitted(type(self)._jax_map)(self._device_static(), params, X)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_on_device", None)  # device buffers are a cache: never pickled
        return state

    def kernel_estimate(self, X, Z=None):
        """``Φ(X) Φ(Z)ᵀ``, the kernel these features estimate (dense; small inputs)."""
        F = self.transform(X)
        if Z is not None:  # transform's messages say "X": check Z under its own name first
            check_is_fitted(self)
            check_array_arg(Z, "Z", ndim=2, min_rows=1, n_features=self.n_features_in_, finite=not is_jax_array(Z))
        G = F if Z is None else self.transform(Z)
        if is_jax_array(F):
            with x64_scope(F.dtype):
                return mm(F, G.T)
        return matmul(F, G.T)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
