"""What the kernel estimators share: default kernels a grid search can reach, the data-scaled
lengthscale, target normalisation (the intercept) and the warning for a kernel that cannot learn.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone

from .._linalg import NumericalWarning
from ..kernels import Kernel
from ..kernels._base import StationaryKernel

__all__ = ["DefaultKernelMixin", "resolve_kernel", "TargetScaler", "check_kernel_scale"]

#: Rows of the training data the kernel-scale check looks at.
SCALE_CHECK_ROWS = 256


class DefaultKernelMixin:
    """``kernel=None`` stands for a default kernel that nested parameters can still reach.

    ``__init__`` stores ``None``; ``set_params(kernel__lengthscale=...)`` (what ``GridSearchCV``
    calls on a clone) first puts a fresh default kernel in its place, so every documented
    ``kernel__<param>`` search works from the defaults without a mutable default argument.
    Subclasses define ``_default_kernel()``.
    """

    def set_params(self, **params):
        nested = [k for k in params if k.startswith("kernel__")]
        if nested and "kernel" not in params and getattr(self, "kernel", None) is None:
            self.kernel = self._default_kernel()
        return super().set_params(**params)


def data_lengthscale(X) -> float:
    """``sqrt(n_features · X.var())``: the root-mean-square distance of a point from the data's mean
    (scikit-learn's ``gamma="scale"`` rule, as a lengthscale); 1.0 for constant data.

    This is what ``lengthscale="scale"`` of a stationary kernel means in ntkit's estimators.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.estimators import data_lengthscale
    >>> X = np.random.default_rng(0).normal(size=(10000, 4))
    >>> round(data_lengthscale(X), 1)
    2.0
    """
    from .._validation import check_data

    X = np.asarray(check_data(X, "X", ndim=2, allow_jax=False), dtype=np.float64)
    v = float(X.var()) if X.size else 0.0
    ls = float(np.sqrt(X.shape[1] * v)) if v > 0 and np.isfinite(v) else 1.0
    return ls if ls > 0 and np.isfinite(ls) else 1.0


def resolve_kernel(kernel, X):
    """A copy of ``kernel`` with ``lengthscale="scale"`` replaced by :func:`data_lengthscale` of X
    (other kernels are returned unchanged)."""
    if isinstance(kernel, StationaryKernel) and isinstance(kernel.lengthscale, str):
        if kernel.lengthscale != "scale":
            from .._validation import InvalidParameterError

            raise InvalidParameterError(
                f"The 'lengthscale' parameter of {type(kernel).__name__} must be a positive float, an array of "
                f"them, or 'scale'. Got {kernel.lengthscale!r} instead.")
        return clone(kernel).set_params(lengthscale=data_lengthscale(X))
    return kernel


class TargetScaler:
    """``normalize_y``: fit on ``(y − mean) / std`` per output and map predictions back.

    Kernel ridge regression has no intercept: with raw targets its predictions shrink towards 0,
    not towards the mean, as the ridge grows or away from the training data. Centring fits the
    intercept (the usual Gaussian-process practice, ``GaussianProcessRegressor(normalize_y=True)``);
    scaling only rescales the coefficients (predictions are linear in y).
    """

    def __init__(self, Y, enabled):
        Y = np.asarray(Y, dtype=np.float64)
        if enabled and len(Y):
            self.mean = Y.mean(axis=0)
            std = Y.std(axis=0)
            self.std = np.where(std > 0, std, 1.0)
        else:
            self.mean = np.zeros(Y.shape[1:])
            self.std = np.ones(Y.shape[1:])

    def forward(self, Y):
        return (np.asarray(Y, dtype=np.float64) - self.mean) / self.std

    def inverse(self, F):
        return F * self.std + self.mean


def check_kernel_scale(kernel, X, owner, stacklevel=3):
    """Warn (``NumericalWarning``) when a stationary kernel is ≈ 0 or ≈ 1 between distinct training
    points: its lengthscale is far from the data's scale and the fit will interpolate (predicting
    ≈ the mean away from the training points) or be numerically rank-deficient.

    Looks at up to :data:`SCALE_CHECK_ROWS` rows (the first ones: deterministic, no RNG)."""
    if not isinstance(kernel, StationaryKernel) or X.shape[0] < 3:
        return
    A = np.asarray(X[:SCALE_CHECK_ROWS], dtype=np.float64)
    # pairs of distinct rows only (duplicates would look like a huge lengthscale)
    A = np.unique(A, axis=0)
    if A.shape[0] < 3:
        return
    K = kernel(A)
    off = K[~np.eye(K.shape[0], dtype=bool)]
    med = float(np.median(off))
    ls = kernel.lengthscale
    ls_txt = f"{ls:.3g}" if np.ndim(ls) == 0 else "per-feature lengthscales"
    scale = data_lengthscale(X)
    if med < 1e-6:
        warnings.warn(
            f"{owner}: the kernel is ≈ 0 between distinct training points (median off-diagonal value {med:.1e}): "
            f"its lengthscale ({ls_txt}) is small against the data's scale (≈ {scale:.3g}), so the model interpolates "
            "the training set and predicts ≈ the mean away from it. Use lengthscale='scale' (or a value near "
            f"{scale:.3g}), or standardise X.", NumericalWarning, stacklevel=stacklevel)
    elif med > 1 - 1e-6:
        warnings.warn(
            f"{owner}: the kernel is ≈ 1 between all training points (median off-diagonal value 1 - {1 - med:.1e}): "
            f"its lengthscale ({ls_txt}) is large against the data's scale (≈ {scale:.3g}), so the kernel matrix is "
            "numerically low-rank and the fit sees little of the data's structure. Use lengthscale='scale' (or a "
            f"value near {scale:.3g}), or standardise X.", NumericalWarning, stacklevel=stacklevel)


def is_kernel(k) -> bool:
    return isinstance(k, Kernel)
