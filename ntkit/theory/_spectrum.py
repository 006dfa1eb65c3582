r"""The spectrum of a real kernel on data, for predicting its learning curves.

Treat the data set as the population: the eigenpairs of ``K/N`` (N = all points) estimate
the kernel operator's, and ``c_i = u_iᵀ y / √N`` the target's coefficients (eigenfunctions
``φ_i(x_j) = √N u_ij`` are orthonormal in L²(data)), so that ``Σ_i c_i² = ‖y‖²/N`` when all
modes are kept. Feed the result to :func:`ntkit.theory.risk_curve` to predict the test error
of KRR trained on N ≪ len(X) points drawn from the set and tested on the whole set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_array_arg, check_int

__all__ = ["Spectrum", "estimate_spectrum"]


class Spectrum(NamedTuple):
    """Eigenvalues of K/N (descending) and the target's coefficients in their eigenvectors."""

    eigenvalues: np.ndarray
    target_coeffs: np.ndarray
    n_samples: int
    method: str
    residual_power: float  # ‖y‖²/N − Σ c²: target power outside the returned modes


def estimate_spectrum(kernel, X, y, *, n_components=None, method="auto", random_state=None, memory_budget=None):
    """Eigenvalues of ``K/N`` and target coefficients ``c_i = u_iᵀ y / √N`` from data.

    Parameters
    ----------
    kernel : ntkit kernel, callable ``k(A, B)`` (e.g. an empirical NTK) or "precomputed"
        With "precomputed", ``X`` is the N × N Gram matrix.
    X : array (N, d); y : array (N,) or (N, n_outputs)
    n_components : int, optional
        Modes to keep (default: all for "dense", 2000 landmarks for "nystrom").
    method : {"auto", "dense", "nystrom"}
        "dense": ``scipy.linalg.eigh`` of the N × N matrix (N ≤ 6000 for "auto"). "nystrom":
        ``n_components`` uniformly sampled landmarks Z; the spectrum of the Nyström
        approximation ``K(X,Z) K(Z,Z)⁻¹ K(Z,X) / N``, with K(X, Z) streamed in blocks within
        ``memory_budget`` (only m × m matrices are stored).
    random_state : int, optional
        Seeds the landmark sample.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.theory import estimate_spectrum
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = np.sin(X[:, 0])
    >>> sp = estimate_spectrum(RBF(1.0), X, y)
    >>> bool(abs(np.sum(sp.target_coeffs**2) - np.mean(y**2)) < 1e-10)
    True
    """
    from ..ops import plan_blocks
    from ..solvers._access import KernelAccess, idx

    if method not in ("auto", "dense", "nystrom"):
        raise InvalidParameterError(f"method must be 'auto', 'dense' or 'nystrom'; got {method!r}.")
    check_array_arg(X, "X", ndim=tuple(range(1, 33)), finite=True)  # any rank: callables may take images
    X = np.asarray(X) if not hasattr(X, "shape") else X
    check_array_arg(y, "y", ndim=(1, 2), finite=True)
    y = np.asarray(y, dtype=np.float64)
    n = X.shape[0]
    if y.shape[0] != n or y.ndim not in (1, 2):
        raise InvalidParameterError(f"y must have shape ({n},) or ({n}, n_outputs) to match X; got {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise InvalidParameterError("y contains NaN or Inf.")
    if isinstance(kernel, str):
        if kernel != "precomputed":
            raise InvalidParameterError(f"kernel must be an ntkit kernel, a callable or 'precomputed'; got {kernel!r}.")
        if X.shape != (n, n):
            raise InvalidParameterError(f"with kernel='precomputed', X must be the square Gram matrix; got {X.shape}.")
    if method == "auto":
        method = "dense" if n <= 6000 or kernel == "precomputed" else "nystrom"
    acc = KernelAccess(kernel, X, memory_budget=memory_budget, dtype=np.float64)
    y2 = y.reshape(n, -1)
    total = float(np.sum(y2**2) / n)
    if method == "dense":
        K = acc.block(idx(np.arange(n)), idx(np.arange(n))).astype(np.float64)
        if not np.all(np.isfinite(K)):
            raise InvalidParameterError("the kernel matrix contains NaN or Inf; check X and the kernel's parameters.")
        K = 0.5 * (K + K.T)
        k = n if n_components is None else check_int(n_components, "n_components", "estimate_spectrum", low=1,
                                                     high=n)
        K /= n
        w, U = _linalg.eigh(K, subset_by_index=[n - k, n - 1], overwrite_a=True)
        w, U = w[::-1], U[:, ::-1]
        c = matmul(U.T, y2) / np.sqrt(n)
    else:
        if kernel == "precomputed":
            raise InvalidParameterError("method='nystrom' needs a kernel, not a precomputed matrix.")
        m = check_int(min(2000, n) if n_components is None else n_components, "n_components", "estimate_spectrum",
                      low=1, high=n)
        rng = np.random.default_rng(random_state)
        Zi = np.sort(rng.choice(n, size=m, replace=False))
        Z = np.asarray(X[Zi])
        zacc = KernelAccess(kernel, Z, memory_budget=memory_budget, dtype=np.float64)
        def landmark_gram():
            W = zacc.block(idx(np.arange(m)), idx(np.arange(m))).astype(np.float64)
            W = 0.5 * (W + W.T)
            W[np.diag_indices(m)] += 1e-10 * max(np.trace(W) / m, 1e-300)
            return W

        # factored in place; rebuild lets the factorisation retry with jitter (duplicate landmarks)
        L = _linalg.cholesky(landmark_gram(), overwrite_a=True, rebuild=landmark_gram,
                             what="the Nyström landmarks' kernel matrix")[0]
        CtC = np.zeros((m, m))
        Cty = np.zeros((m, y2.shape[1]))
        step = plan_blocks(n, m, n_features=int(np.prod(X.shape[1:])), n_targets=y2.shape[1],
                           memory_budget=memory_budget).block_rows
        for i in range(0, n, step):
            Cb = zacc.block(np.asarray(X[i:i + step]), idx(np.arange(m))).astype(np.float64)
            CtC += matmul(Cb.T, Cb)
            Cty += matmul(Cb.T, y2[i:i + step])
        A = scipy.linalg.solve_triangular(L, scipy.linalg.solve_triangular(L, CtC, lower=True).T, lower=True) / n
        w, V = _linalg.eigh(0.5 * (A + A.T), overwrite_a=True)
        w, V = w[::-1], V[:, ::-1]
        keep = w > 1e-14 * w[0]
        w, V = w[keep], V[:, keep]
        c = matmul(V.T, scipy.linalg.solve_triangular(L, Cty, lower=True)) / (n * np.sqrt(w))[:, None]
    w = np.clip(w, 0.0, None)  # round-off negatives of a PSD matrix
    c = c[:, 0] if y.ndim == 1 else c
    return Spectrum(w, c, n, method, max(total - float(np.sum(c**2)), 0.0))
