"""Dense factorisations that survive the stack beneath us, with a documented policy for trouble.

Every direct factorisation in ntkit goes through this module.

**The crash.** On some machines OpenBLAS's multithreaded float64 Cholesky (LAPACK ``dpotrf``, as
called by scipy, numpy and jax alike) segfaults from n ≈ 16 000 up (``shared/reference/
baselines.md``). :func:`cholesky` never hands LAPACK a factorisation larger than
:data:`BLOCK`: above it, it runs a blocked left-looking Cholesky whose diagonal blocks go to
``potrf`` and whose work is BLAS-3 products (GEMM, TRSM) of bounded width, with all BLAS threads
(so it is about as fast as ``dpotrf`` would have been). :func:`eigh` runs LAPACK's symmetric
eigensolver with one BLAS thread for float64 above :data:`EIGH_THREADS_1` (the same library
family; slower, never crashing).

**Trouble.** A kernel matrix that is positive definite in exact arithmetic can fail to factor
(duplicate points, a lengthscale much longer than the data's spread, float32, an empirical NTK's
round-off). :func:`cholesky` then adds jitter ``ε·mean(diag)`` to the diagonal, ε rising tenfold
from 10·eps(dtype) to :data:`MAX_JITTER`, and warns with the amount added (a
:class:`NumericalWarning`). A matrix that still does not factor is not positive semi-definite
beyond round-off: the error says so. :func:`clip_psd` is the spectral remedy for indefinite
matrices (negative eigenvalues set to zero, with a warning that reports the clipped mass).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["NumericalWarning", "cholesky", "cho_solve", "solve_psd", "eigh", "clip_psd", "report_negative", "BLOCK", "MAX_JITTER"]

#: Largest matrix handed to LAPACK's potrf in one call (the blocked path's panel width).
BLOCK = 2048
#: Relative jitter (times the mean diagonal) beyond which a matrix is declared not PSD.
MAX_JITTER = 1e-4
#: float64 eigh above this size runs with one BLAS thread.
EIGH_THREADS_1 = 12_000


class NumericalWarning(RuntimeWarning):
    """ntkit changed a matrix to make a computation possible (jitter, clipped eigenvalues), or a
    result is less accurate than asked; the message says how much."""


def _potrf(D):
    """Lower Cholesky factor of a small symmetric block, LAPACK directly; ``(L, info)``."""
    (potrf,) = scipy.linalg.get_lapack_funcs(("potrf",), (D,))
    L, info = potrf(D, lower=1, clean=1, overwrite_a=0)
    return L, info


def _factor_inplace(A, block):
    """Blocked left-looking Cholesky of the C-contiguous symmetric ``A`` into its lower triangle.

    Column block j: ``A[j:, j] -= L[j:, :j] L[j, :j]ᵀ`` (one GEMM), ``L_jj = potrf(A_jj)``,
    ``L[j+1:, j] = A[j+1:, j] L_jjᵀ⁻¹`` (one TRSM). Temporaries are O(n·block); LAPACK never
    sees more than ``block`` columns. Returns 0, or the 1-based column where A stopped being
    positive definite.
    """
    n = A.shape[0]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        if j0:
            A[j0:, j0:j1] -= A[j0:, :j0] @ A[j0:j1, :j0].T
        Ld, info = _potrf(np.array(A[j0:j1, j0:j1], order="F"))
        if info:
            return j0 + int(info)
        A[j0:j1, j0:j1] = Ld
        if j1 < n:
            # X Ldᵀ = P  ⇔  Ld Xᵀ = Pᵀ: solve with the Fortran view of Pᵀ
            P = np.asfortranarray(A[j1:, j0:j1].T)
            A[j1:, j0:j1] = scipy.linalg.solve_triangular(Ld, P, lower=True, overwrite_b=True,
                                                          check_finite=False).T
    for i0 in range(0, n, block):  # clear the strict upper triangle, block row by block row
        i1 = min(n, i0 + block)
        A[i0:i1, i1:] = 0
        A[i0:i1, i0:i1] = np.tril(A[i0:i1, i0:i1])
    return 0


def _factor(A, block):
    """Factor ``A`` (overwritten) in place; returns info as :func:`_factor_inplace`."""
    n = A.shape[0]
    if n <= block:
        L, info = _potrf(np.asfortranarray(A))
        if not info:
            A[...] = L
        return int(info)
    return _factor_inplace(A, block)


def cholesky(A, *, overwrite_a=False, jitter=True, what="the kernel matrix", block=None, rebuild=None, stacklevel=2):
    """Lower Cholesky factor ``L`` (``A = L Lᵀ``) of a symmetric matrix, crash-safe at any size.

    Parameters
    ----------
    A : (n, n) float32 or float64 array
        Symmetric; only its lower triangle is read.
    overwrite_a : bool
        Factor in place (no second n×n array). ``A`` is then the factor, or garbage on failure.
    jitter : bool
        On failure, add ``ε·mean(diag)`` to the diagonal, ε = 10·eps(dtype), ×10 each try,
        up to :data:`MAX_JITTER`, and warn (:class:`NumericalWarning`) with the amount.
    what : str
        How the error and warning name the matrix.
    rebuild : callable, optional
        ``rebuild() -> A`` recomputes the matrix, so that a factorisation in place
        (``overwrite_a=True``) can still be retried with jitter without keeping a second copy.

    Returns
    -------
    L : (n, n) C-contiguous array, lower triangular, in ``A``'s dtype
    added : float
        The jitter added to the diagonal (0.0 when none).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit._linalg import cholesky
    >>> A = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> L, added = cholesky(A)
    >>> bool(np.allclose(L @ L.T, A)), added
    (True, 0.0)
    """
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{what} must be a square matrix; got shape {A.shape}.")
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
        overwrite_a = True
    n = A.shape[0]
    if n == 0:
        return np.zeros((0, 0), A.dtype), 0.0
    if not np.isfinite(np.diagonal(A)).all():
        raise ValueError(f"{what} has NaN or infinite diagonal entries; check the inputs and the kernel.")
    block = BLOCK if block is None else int(block)
    scale = float(np.mean(np.abs(np.diagonal(A))))
    W = A if overwrite_a and A.flags.c_contiguous else np.array(A, order="C", copy=True)
    src = None if (overwrite_a and W is A) else A  # to restore from when a try fails
    eps = float(np.finfo(A.dtype).eps)
    rel, added = 10 * eps, 0.0
    while True:
        info = _factor(W, block)
        if not info:
            break
        if not jitter or rel > MAX_JITTER or scale == 0.0:
            raise np.linalg.LinAlgError(
                f"{what} ({n} × {n}, {A.dtype}) is not positive definite (the factorisation failed at column "
                f"{info}{f' with jitter {added:.3g} added' if added else ''}). Add a ridge / regularisation, remove "
                "duplicate points, or use a positive semi-definite kernel; for an indefinite matrix "
                "ntkit._linalg.clip_psd clips its negative eigenvalues.")
        if src is None and rebuild is None:
            raise np.linalg.LinAlgError(
                f"{what} ({n} × {n}) did not factor and was overwritten in place (overwrite_a=True), so jitter "
                "cannot be retried; call again with overwrite_a=False or add a ridge.")
        added = rel * scale
        W[...] = src if src is not None else rebuild()
        W[np.diag_indices(n)] += added
        rel *= 10
    if added:
        warnings.warn(f"{what} ({n} × {n}, {A.dtype}) was not numerically positive definite; added jitter "
                      f"{added:.3g} to its diagonal ({added / scale:.1e} × its mean diagonal {scale:.3g}).",
                      NumericalWarning, stacklevel=stacklevel)
    return W, float(added)


def cho_solve(L, B, *, overwrite_b=False):
    """Solve ``L Lᵀ X = B`` for the lower factor ``L`` of :func:`cholesky` (no n×n copy of L)."""
    U = L.T  # Fortran-contiguous upper factor: LAPACK reads it without copying
    y = scipy.linalg.solve_triangular(U, B, lower=False, trans="T", overwrite_b=overwrite_b, check_finite=False)
    return scipy.linalg.solve_triangular(U, y, lower=False, trans="N", overwrite_b=True, check_finite=False)


def solve_psd(A, B, *, overwrite_a=False, jitter=True, what="the kernel matrix"):
    """``A⁻¹ B`` for symmetric positive (semi-)definite ``A`` via :func:`cholesky` (crash-safe,
    jitter with a warning when ``A`` is numerically singular)."""
    L, _ = cholesky(A, overwrite_a=overwrite_a, jitter=jitter, what=what, stacklevel=3)
    B = np.asarray(B)
    return cho_solve(L, B.astype(L.dtype, copy=False))


def eigh(A, *, subset_by_index=None, overwrite_a=False):
    """``scipy.linalg.eigh`` of a symmetric matrix (ascending), single-threaded BLAS for float64
    above :data:`EIGH_THREADS_1` (see the module note)."""
    A = np.asarray(A)
    kw = dict(subset_by_index=subset_by_index, overwrite_a=overwrite_a, check_finite=False)
    if A.dtype == np.float64 and A.shape[0] > EIGH_THREADS_1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return scipy.linalg.eigh(A, **kw)
    return scipy.linalg.eigh(A, **kw)


def report_negative(w, *, what="the kernel matrix", tol=None, dtype=np.float64, stacklevel=2):
    """Warn (:class:`NumericalWarning`) when eigenvalues ``w`` of a matrix that should be PSD fall
    below ``-tol`` (default ``n·eps(dtype)·max|λ|``, the size of round-off), with how many, the most
    negative and the share of the trace norm they carry. Returns the number of such eigenvalues."""
    w = np.asarray(w)
    top = float(np.max(np.abs(w))) if w.size else 0.0
    tol = len(w) * float(np.finfo(dtype).eps) * top if tol is None else float(tol)
    bad = int(np.sum(w < -tol))
    if bad:
        mass = float(-w[w < 0].sum() / max(np.abs(w).sum(), 1e-300))
        warnings.warn(f"{what} is indefinite beyond round-off: {bad} eigenvalues below -{tol:.2g} (most negative "
                      f"{w.min():.3g}, largest {top:.3g}) were clipped to 0; they carry {100 * mass:.2g}% of its "
                      "trace norm.", NumericalWarning, stacklevel=stacklevel + 1)
    return bad


def clip_psd(A, *, what="the kernel matrix", tol=None, stacklevel=2):
    """The nearest PSD matrix in Frobenius norm: ``U max(Λ, 0) Uᵀ`` of the symmetrised ``A``.

    Warns through :func:`report_negative` when eigenvalues beyond round-off were clipped.
    Returns ``(A_psd, eigenvalues, eigenvectors)`` with the clipped eigenvalues.

    Examples
    --------
    >>> import numpy as np, warnings
    >>> from ntkit._linalg import clip_psd
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     P, w, _ = clip_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))
    >>> w.tolist(), len(caught)
    ([0.0, 3.0], 1)
    """
    A = np.asarray(A)
    w, U = eigh(0.5 * (A + A.T), overwrite_a=True)
    report_negative(w, what=what, tol=tol, dtype=A.dtype, stacklevel=stacklevel + 1)
    w = np.where(w < 0, 0.0, w).astype(A.dtype)
    return (U * w) @ U.T, w, U
