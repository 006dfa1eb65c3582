"""Nyström kernel ridge regression by preconditioned conjugate gradients (Falkon-style)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .. import _linalg
from .._blas import matmul
from .._config import _config, resolve_budget
from .._validation import check_data, check_int, check_scalar
from ._access import KernelAccess, idx
from .._validation import is_jax_array
from ..kernels import Kernel
from ._eigenpro import _check_common, _check_device_common, _host, _predict, _x64_scope
from ._eigenpro_precond import _seed

__all__ = ["nystrom_pcg", "NystromResult"]


class NystromResult(NamedTuple):
    """``f(x) = Σ_j weights[j] k(x, centers[j])``; ``history`` holds the relative CG residual per iteration."""

    weights: np.ndarray
    centers: np.ndarray
    history: list
    n_iter: int
    kernel: Any
    ridge: float

    def predict(self, X):
        """``K(X, centers) @ weights`` (on the device of jax arrays; jax out for jax ``X``)."""
        return _predict(self.kernel, self.centers, self.weights, X)


def nystrom_pcg(kernel, X, y, *, n_centers=1000, centers=None, ridge=1e-6, maxiter=100, tol=1e-7, random_state=None,
                memory_budget=None, verbose=None, device=None):
    r"""Nyström KRR: ``min_α ‖K_nm α − y‖² + ridge·n·αᵀK_mm α`` on m centers, by preconditioned CG.

    Solves ``(K_nmᵀ K_nm + ridge·n·K_mm) α = K_nmᵀ y`` with the preconditioner of Rudi et al.
    (Falkon): ``T = chol(K_mm + ε m I)``, ``A = chol(T Tᵀ / m + ridge I)``. Each CG iteration
    costs two passes of kernel products over the data (``ntkit.ops.kernel_matvec``, K_nm is
    never stored); the preconditioner costs O(m³) once. The penalty uses the jittered
    ``K_mm + ε m I`` (ε = 1e-13 in float64, 1e-5 in float32, times max(1, max k(z, z))) — correcting
    for ε exactly would cancel catastrophically when K_mm is near-singular — so the result is
    the exact solution of that system up to ``tol``; it differs from the unjittered Nyström
    solution by O(ε m) relative (for kernels with k(z, z) of order 1 or more; rescale a kernel
    of much smaller scale in float32).

    Parameters
    ----------
    kernel : ntkit kernel or callable ``k(A, B)``
    X : array (n, d); y : array (n,) or (n, c)
    n_centers : int
        Centers drawn uniformly from X (ignored when ``centers`` is given).
    centers : array (m, d), optional
    ridge : float
        λ in the objective above (Falkon's convention: the penalty scales with n).
    maxiter : int, default=100; tol : float, default=1e-7
        CG stops when every output's relative residual is below ``tol``; stopping at ``maxiter``
        above it gives a :class:`~ntkit.NumericalWarning` with the residual reached.
    device : None, "auto", "cpu", "gpu" or jax.Device
        Where it runs (the rule of :mod:`ntkit._device`; ``None`` follows the data). On a device
        the data pass and every CG iteration are jitted functions of device arrays (one scalar,
        the residual, is read back per iteration); jax in gives jax weights on that device.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.solvers import nystrom_pcg
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 4)); y = np.sin(X[:, 0])
    >>> res = nystrom_pcg(RBF(2.0), X, y, n_centers=500, ridge=1e-3, random_state=0)
    >>> bool(res.history[-1] < 1e-6)
    True
    """
    if isinstance(kernel, str):
        raise ValueError("nystrom_pcg needs a kernel function (centers are evaluated against new points).")
    from .._device import resolve_device

    placement = resolve_device(device, X, centers, owner="nystrom_pcg")
    on_device = placement.on_device and isinstance(kernel, Kernel)
    if placement.on_device and not on_device and device not in (None, "auto"):
        raise ValueError("nystrom_pcg on a jax device needs an ntkit kernel (ntkit.kernels); a callable kernel runs "
                         "on the host: pass numpy arrays and device=None.")
    if on_device:
        X, y, ridge, _ = _check_device_common(X, y, ridge, 1)
    else:
        X, y, ridge, _ = _check_common(_host(X), _host(y), ridge, 1, kernel)
    maxiter = check_int(maxiter, "maxiter", "nystrom_pcg", low=1)
    tol = check_scalar(tol, "tol", "nystrom_pcg", low=0.0)
    if verbose is None:
        verbose = bool(_config.get()["verbose"])
    dtype = np.dtype(np.float64) if np.dtype(X.dtype) == np.float64 else np.dtype(np.float32)
    n = X.shape[0]
    if centers is None:
        m = check_int(n_centers, "n_centers", "nystrom_pcg", low=1)
        m = min(m, n)
        rows = np.sort(np.random.default_rng(_seed(random_state)).choice(n, size=m, replace=False))
        centers = X[rows].astype(dtype) if is_jax_array(X) else np.asarray(X[rows], dtype=dtype)
    else:
        centers = check_data(centers, "centers", ndim=2, allow_jax=on_device, min_rows=1)
        if centers.shape[1] != X.shape[1]:
            raise ValueError(f"centers have {centers.shape[1]} features but X has {X.shape[1]}; they must match.")
        centers = centers.astype(dtype) if is_jax_array(centers) else np.asarray(centers, dtype=dtype)
        m = len(centers)
    if ridge <= 0:
        raise ValueError("nystrom_pcg needs ridge > 0 (the preconditioner factors T Tᵀ/m + ridge·I).")
    if on_device:
        from .._device import device_budget
        from ._nystrom_device import nystrom_pcg_device

        with _x64_scope():
            weights, ctr, history, it = nystrom_pcg_device(
                kernel, X, y, centers, placement=placement, dtype=dtype, ridge=ridge, maxiter=maxiter, tol=tol,
                budget=device_budget(placement.device, memory_budget), verbose=verbose)
        _warn_unconverged(history, tol, maxiter)
        if y.ndim == 1:
            weights = weights[:, 0]
        if not placement.jax_out:
            weights, ctr = np.asarray(weights), np.asarray(ctr)
        return NystromResult(weights, ctr, history, it, kernel, float(ridge))
    budget = resolve_budget(memory_budget)
    allc = idx(np.arange(m))
    zacc = KernelAccess(kernel, centers, memory_budget=budget, dtype=dtype)
    Kmm = zacc.block(allc, allc).astype(np.float64)
    eps = 1e-13 if dtype == np.float64 else 1e-5
    eps_m = eps * m * max(1.0, float(np.max(np.diag(Kmm))))
    Kmm[np.diag_indices(m)] += eps_m
    T = _linalg.cholesky(Kmm, overwrite_a=True, what="K(centers, centers)")[0].T  # TᵀT = K_mm + εm I
    M = matmul(T, T.T) / m
    M[np.diag_indices(m)] += ridge
    A = _linalg.cholesky(M, overwrite_a=True, what="the preconditioner's T Tᵀ/m + ridge·I")[0].T
    solve = scipy.linalg.solve_triangular

    def Tinv(v):
        return solve(T, v, lower=False)

    def TinvT(v):
        return solve(T, v, lower=False, trans="T")

    def Ainv(v):
        return solve(A, v, lower=False)

    def AinvT(v):
        return solve(A, v, lower=False, trans="T")

    Xd = np.asarray(X, dtype=dtype) if not isinstance(X, np.memmap) else X
    xacc = KernelAccess(kernel, Xd, memory_budget=budget, dtype=dtype)

    alln = idx(np.arange(n))

    def knm_t_knm(v):  # K_nmᵀ K_nm v, streamed: K_nm is never stored
        u = zacc.matvec(Xd, allc, v.astype(dtype))
        return xacc.matvec(centers, alln, u).astype(np.float64)

    def op(beta):  # B̃ᵀ H B̃ β with K_mm → TᵀT = K_mm + εm·I in the penalty: T⁻ᵀ(TᵀT)T⁻¹ = I
        v = Ainv(beta)
        vt = Tinv(v)
        cc = knm_t_knm(vt) / n
        return AinvT(TinvT(cc) + ridge * v)

    Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    kty = xacc.matvec(centers, alln, Y.astype(dtype)).astype(np.float64)
    b = AinvT(TinvT(kty)) / np.sqrt(n)
    beta = np.zeros_like(b)
    r = b.copy()
    z = r.copy()  # not an alias: r is updated in place below
    rs = np.sum(r * r, axis=0)
    bnorm = np.sqrt(np.sum(b * b, axis=0))
    bnorm[bnorm == 0] = 1.0
    history = []
    it = 0
    for it in range(1, maxiter + 1):
        Az = op(z)
        denom = np.sum(z * Az, axis=0)
        a = np.where(denom > 0, rs / np.where(denom > 0, denom, 1), 0.0)
        beta += a * z
        r -= a * Az
        rs_new = np.sum(r * r, axis=0)
        rel = float(np.max(np.sqrt(rs_new) / bnorm))
        history.append(rel)
        if verbose:
            print(f"nystrom_pcg iteration {it}: relative residual {rel:.3e}")
        if rel < tol:
            break
        z = r + (rs_new / np.where(rs > 0, rs, 1)) * z
        rs = rs_new
    _warn_unconverged(history, tol, maxiter)
    alpha = Tinv(Ainv(beta)) / np.sqrt(n)
    weights = alpha.astype(dtype)
    if np.asarray(y).ndim == 1:
        weights = weights[:, 0]
    return NystromResult(weights, centers, history, it, kernel, float(ridge))


def _warn_unconverged(history, tol, maxiter):
    if history and history[-1] >= tol:
        import warnings

        from .._linalg import NumericalWarning

        warnings.warn(f"nystrom_pcg stopped after maxiter={maxiter} CG iterations at relative residual "
                      f"{history[-1]:.2e}, above tol={tol:g}: the weights are not converged. Raise maxiter, or ridge "
                      "(better conditioned), or accept a larger tol.", NumericalWarning, stacklevel=3)
