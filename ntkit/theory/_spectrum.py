r"""The spectrum of a real kernel on data, for predicting its learning curves.

Treat the data set as the population: the eigenpairs of ``K/N`` (N = all points) estimate
the kernel operator's, and ``c_i = u_iᵀ y / √N`` the target's coefficients (eigenfunctions
``φ_i(x_j) = √N u_ij`` are orthonormal in L²(data)), so that ``Σ_i c_i² = ‖y‖²/N`` when all
modes are kept. Feed the result to :func:`ntkit.theory.risk_curve` to predict the test error
of KRR trained on N ≪ len(X) points drawn from the set and tested on the whole set.

On a device: a jax ``X`` (or numpy data inside ``ntkit.config_context(device=...)``) is worked
on where it lives — kernel blocks from :func:`ntkit.ops.gram` on device arrays, the eigensolver
``jnp.linalg.eigh``, the Nyström triangular solves ``jax.scipy.linalg.solve_triangular`` — with
the host path's precision (kernel blocks in X's dtype, everything after in float64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_array_arg, check_int, is_jax_array

__all__ = ["Spectrum", "estimate_spectrum"]


class Spectrum(NamedTuple):
    """Eigenvalues of K/N (descending) and the target's coefficients in their eigenvectors.

    numpy float64 arrays for numpy data; for jax data, jax arrays on the data's device in the
    data's dtype (float32 unless X or y is float64).
    """

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

    Returns
    -------
    Spectrum
        numpy in → numpy out (float64). jax in → computed on the data's device (see the module
        notes; the same landmarks as the host path for the same ``random_state``) and returned
        as jax arrays there, in float32 for float32 data (computed in float64) so that callers
        without ``jax_enable_x64`` get arrays they can use.

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
    # any rank: callables may take images; jax arrays are checked for NaN on their device
    check_array_arg(X, "X", ndim=tuple(range(1, 33)), finite=not is_jax_array(X))
    X = np.asarray(X) if not hasattr(X, "shape") else X
    check_array_arg(y, "y", ndim=(1, 2), finite=not is_jax_array(y))
    y = y if is_jax_array(y) else np.asarray(y, dtype=np.float64)
    n = X.shape[0]
    if y.shape[0] != n or y.ndim not in (1, 2):
        raise InvalidParameterError(f"y must have shape ({n},) or ({n}, n_outputs) to match X; got {y.shape}.")
    if not is_jax_array(y) and not np.all(np.isfinite(y)):
        raise InvalidParameterError("y contains NaN or Inf.")
    if isinstance(kernel, str):
        if kernel != "precomputed":
            raise InvalidParameterError(f"kernel must be an ntkit kernel, a callable or 'precomputed'; got {kernel!r}.")
        if X.shape != (n, n):
            raise InvalidParameterError(f"with kernel='precomputed', X must be the square Gram matrix; got {X.shape}.")
    if method == "auto":
        method = "dense" if n <= 6000 or kernel == "precomputed" else "nystrom"
    from .._device import resolve_device

    placement = resolve_device(None, X, y, owner="estimate_spectrum")
    if placement.on_device:
        return _estimate_spectrum_device(kernel, X, y, n_components, method, random_state, memory_budget,
                                         placement)
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


def _estimate_spectrum_device(kernel, X, y, n_components, method, random_state, memory_budget, placement):
    """:func:`estimate_spectrum` on ``placement.device`` (X, y validated for shape by the caller)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    from .._device import device_budget, to_device
    from ..kernels import Kernel
    from ..ops import gram, plan_blocks
    from ..ops._backends._jax import x64_scope

    n = X.shape[0]
    if not is_jax_array(X) and np.asarray(X).dtype.kind not in "f":
        X = np.asarray(X, dtype=np.float64)
    x_dtype = np.dtype(X.dtype)
    if x_dtype not in (np.float32, np.float64):
        raise TypeError(f"X must have dtype float32 or float64; got {x_dtype}.")
    y_float = [np.dtype(y.dtype)] if np.dtype(y.dtype).kind == "f" else []  # integer labels do not widen
    out_dtype = np.result_type(x_dtype, *y_float) if placement.jax_out else np.dtype(np.float64)
    if out_dtype.kind != "f":
        out_dtype = np.dtype(np.float64)

    def finite(A, what):
        if not bool(jax.device_get(jnp.isfinite(A).all())):
            raise InvalidParameterError(f"{what} contains NaN or Inf.")

    def block(A, B):  # K(A, B) in X's dtype on the device, then float64 (as KernelAccess does on the host)
        if isinstance(kernel, Kernel):
            K = gram(kernel, A, B)
        else:
            K = to_device(kernel(A, B), placement)
            if K.shape != (A.shape[0], B.shape[0]):
                raise ValueError(f"the kernel callable returned shape {tuple(K.shape)} for inputs of {A.shape[0]} "
                                 f"and {B.shape[0]} rows; it must return ({A.shape[0]}, {B.shape[0]}).")
        return K.astype(jnp.float64)

    with x64_scope(np.float64):
        Xd = to_device(X, placement)
        finite(Xd, "X")
        yd = to_device(y, placement, np.float64)
        finite(yd, "y")
        y2 = yd.reshape(n, -1)
        total = jnp.sum(y2 ** 2) / n
        if method == "dense":
            K = Xd.astype(jnp.float64) if isinstance(kernel, str) else block(Xd, Xd)
            if not bool(jax.device_get(jnp.isfinite(K).all())):
                raise InvalidParameterError("the kernel matrix contains NaN or Inf; check X and the kernel's "
                                            "parameters.")
            k = n if n_components is None else check_int(n_components, "n_components", "estimate_spectrum", low=1,
                                                         high=n)
            w, U = jnp.linalg.eigh(0.5 * (K + K.T) / n)
            w, U = w[::-1][:k], U[:, ::-1][:, :k]
            c = (U.T @ y2) / np.sqrt(n)
        else:
            if isinstance(kernel, str):
                raise InvalidParameterError("method='nystrom' needs a kernel, not a precomputed matrix.")
            m = check_int(min(2000, n) if n_components is None else n_components, "n_components",
                          "estimate_spectrum", low=1, high=n)
            rng = np.random.default_rng(random_state)
            Zi = np.sort(rng.choice(n, size=m, replace=False))  # the host path's landmarks
            Z = Xd[jax.device_put(Zi, placement.device)]
            W = block(Z, Z)
            W = 0.5 * (W + W.T)
            scale = max(float(jax.device_get(jnp.trace(W))) / m, 1e-300)
            for jitter in (1e-10, 1e-8, 1e-6, 1e-4):  # as the host's retry with jitter (duplicate landmarks)
                L = jnp.linalg.cholesky(W + jitter * scale * jnp.eye(m))
                if bool(jax.device_get(jnp.isfinite(L).all())):
                    break
            else:
                raise np.linalg.LinAlgError("the Nyström landmarks' kernel matrix is not positive definite even "
                                            "with jitter 1e-4 · mean diagonal; check the kernel.")
            step = plan_blocks(n, m, n_features=int(np.prod(X.shape[1:])), n_targets=y2.shape[1],
                               memory_budget=device_budget(placement.device, memory_budget)).block_rows
            CtC = jnp.zeros((m, m))
            Cty = jnp.zeros((m, y2.shape[1]))
            for i in range(0, n, step):
                Cb = block(Xd[i:i + step], Z)
                CtC = CtC + Cb.T @ Cb
                Cty = Cty + Cb.T @ y2[i:i + step]
            A = solve_triangular(L, solve_triangular(L, CtC, lower=True).T, lower=True) / n
            w, V = jnp.linalg.eigh(0.5 * (A + A.T))
            w, V = w[::-1], V[:, ::-1]
            keep = int(jax.device_get(jnp.sum(w > 1e-14 * w[0])))  # eigenvalues descend: a prefix
            w, V = w[:keep], V[:, :keep]
            c = (V.T @ solve_triangular(L, Cty, lower=True)) / (n * jnp.sqrt(w))[:, None]
        w = jnp.clip(w, 0.0, None)
        residual = max(float(jax.device_get(total - jnp.sum(c ** 2))), 0.0)
        c = c[:, 0] if len(y.shape) == 1 else c
        if placement.jax_out:
            with x64_scope(out_dtype):
                return Spectrum(w.astype(out_dtype), c.astype(out_dtype), n, method, residual)
        return Spectrum(np.asarray(jax.device_get(w)), np.asarray(jax.device_get(c)), n, method, residual)
