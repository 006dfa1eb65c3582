"""Shared machinery of the random-feature transformers."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._blas import matmul
from .._validation import InvalidParameterError, check_array_arg, check_int, check_scalar

__all__ = ["RandomFeatureBase", "check_lengthscale", "orthogonal_directions", "seed_from"]


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

    Subclasses implement ``_draw(rng, X)`` (store fitted attributes, return nothing) and
    ``_map(X)`` (float64 or float32 array in, same dtype out), and may override
    ``_n_output()``.
    """

    def _check_n_components(self):
        return check_int(self.n_components, "n_components", type(self).__name__, low=1)

    def fit(self, X, y=None):
        """Draw the random parameters for inputs like X (only X's shape and dtype are used,
        except by data-dependent maps such as Nystroem)."""
        check_array_arg(X, "X", ndim=2, min_rows=1)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
        self._draw(seed_from(self.random_state), X)
        return self

    def transform(self, X):
        """The feature map, shape (n_samples, n_components), in the dtype of X."""
        check_is_fitted(self)
        check_array_arg(X, "X", ndim=2, min_rows=1)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._map(X)

    def kernel_estimate(self, X, Z=None):
        """``Φ(X) Φ(Z)ᵀ``, the kernel these features estimate (dense; small inputs)."""
        F = self.transform(X)
        if Z is not None:  # transform's messages say "X": check Z under its own name first
            check_is_fitted(self)
            check_array_arg(Z, "Z", ndim=2, min_rows=1, n_features=self.n_features_in_, finite=True)
        G = F if Z is None else self.transform(Z)
        return matmul(F, G.T)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
