"""How well a feature map reproduces its kernel."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .._blas import matmul
from .._leverage import _gram
from .._validation import check_data

__all__ = ["ApproximationError", "approximation_error"]


class ApproximationError(NamedTuple):
    """Relative errors of ``K̂ = Φ Φᵀ`` against ``K``: ``‖K − K̂‖ / ‖K‖`` in each norm."""

    frobenius: float
    spectral: float
    max_entry: float


def _spectral_norm(A):
    """Largest |eigenvalue| of a symmetric matrix (Lanczos for large ones, dense for small)."""
    if len(A) <= 500:
        return float(np.abs(scipy.linalg.eigvalsh(A)).max())
    v0 = np.random.default_rng(0).standard_normal(len(A))  # fixed start: deterministic result
    ev = scipy.sparse.linalg.eigsh(A, k=1, which="LM", v0=v0, tol=1e-10, return_eigenvectors=False)
    return float(np.abs(ev).max())


def approximation_error(transformer, kernel, X):
    """Relative Frobenius, spectral and max-entry errors of a feature map on the points X.

    Parameters
    ----------
    transformer : fitted or unfitted feature transformer (fitted on X if it is not)
    kernel : Kernel or callable
        The kernel the features estimate.
    X : array (n, d)
        Dense n × n matrices are formed: keep n to a few thousand.

    Returns
    -------
    ApproximationError
        ``frobenius = ‖K − ΦΦᵀ‖_F / ‖K‖_F``, ``spectral = ‖K − ΦΦᵀ‖₂ / ‖K‖₂``,
        ``max_entry = max|K − ΦΦᵀ| / max|K|``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import Nystroem, approximation_error
    >>> from ntkit.kernels import RBF
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> err = approximation_error(Nystroem(RBF(1.0), n_components=100), RBF(1.0), X)
    >>> bool(err.frobenius < 1e-8)
    True
    """
    X = check_data(X, "X", allow_jax=False, min_rows=1)
    try:
        check_is_fitted(transformer)
    except NotFittedError:
        transformer.fit(X)
    F = np.asarray(transformer.transform(X), dtype=np.float64)
    K = _gram(kernel, X.astype(np.float64))
    if not np.any(K):  # relative errors of an all-zero kernel matrix are 0/0
        raise ValueError(f"the kernel matrix K(X, X) is identically zero on X (shape {X.shape}), so relative errors "
                         "are undefined; pass points where the kernel does not vanish.")
    E = K - matmul(F, F.T)
    E = 0.5 * (E + E.T)
    spec_E, spec_K = _spectral_norm(E), _spectral_norm(K)
    return ApproximationError(float(np.linalg.norm(E) / np.linalg.norm(K)), float(spec_E / spec_K),
                              float(np.abs(E).max() / np.abs(K).max()))
