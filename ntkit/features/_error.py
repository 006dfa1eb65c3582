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
from .._validation import check_data, is_jax_array

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
        Dense n × n matrices are formed: keep n to a few thousand. A jax X is worked on where it
        lives: features, ``K(X, X)`` (through :func:`ntkit.ops.gram`), the difference and its
        norms are computed on X's device in float64 (spectral norms by a dense ``eigvalsh``
        there, whatever n); only the six norms come back to the host.

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
    if is_jax_array(X):
        return _approximation_error_device(transformer, kernel, X)
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


def _approximation_error_device(transformer, kernel, X):
    """:func:`approximation_error` for a jax X, on X's device."""
    import jax.numpy as jnp

    from .._device import Placement, _array_device, to_device
    from ..kernels import Kernel
    from ..ops import gram
    from ._base import device_finite, mm, to_host, x64_scope

    X = check_data(X, "X", allow_jax=True, finite=False, min_rows=1)
    with x64_scope(X.dtype):
        device_finite(X, "X")
    try:
        check_is_fitted(transformer)
    except NotFittedError:
        transformer.fit(X)
    F = transformer.transform(X)
    here = Placement(_array_device(X), True)
    with x64_scope(np.float64):
        F = to_device(F, here, np.float64)
        X64 = X.astype(np.float64)
        K = gram(kernel, X64) if isinstance(kernel, Kernel) else to_device(kernel(X64, X64), here, np.float64)
        E = K - mm(F, F.T)
        E = 0.5 * (E + E.T)
        norms = to_host(jnp.stack([jnp.linalg.norm(E), jnp.linalg.norm(K), jnp.abs(jnp.linalg.eigvalsh(E)).max(),
                                   jnp.abs(jnp.linalg.eigvalsh(0.5 * (K + K.T))).max(), jnp.abs(E).max(),
                                   jnp.abs(K).max()]))
    fro_E, fro_K, spec_E, spec_K, max_E, max_K = (float(v) for v in norms)
    if max_K == 0.0:
        raise ValueError(f"the kernel matrix K(X, X) is identically zero on X (shape {tuple(X.shape)}), so relative "
                         "errors are undefined; pass points where the kernel does not vanish.")
    return ApproximationError(fro_E / fro_K, spec_E / spec_K, max_E / max_K)
