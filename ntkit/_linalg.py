"""Dense factorisations that survive the stack beneath us, with a documented policy for trouble.

Every direct factorisation in ntkit goes through this module.

**The crash.** On some machines OpenBLAS's multithreaded float64 Cholesky (LAPACK ``dpotrf``, as
called by scipy, numpy and jax alike) segfaulted from n ≈ 16 000 up (``shared/reference/
baselines.md``; not reproduced with scipy 1.17.1 / OpenBLAS 0.3.30–0.3.31, but ntkit does not
depend on that). :func:`cholesky` never hands LAPACK a factorisation larger than
:data:`BLOCK`: above it, it runs a blocked left-looking Cholesky whose diagonal blocks go to
``potrf`` and whose work is BLAS-3 products (GEMM, TRSM) of bounded width, spread over all BLAS
threads in fixed tiles (:func:`ntkit._blas.matmul`; so it is about as fast as ``dpotrf`` would
have been). LAPACK itself always runs on one BLAS thread (:func:`one_blas_thread`): that makes
every factorisation bit-reproducible, at any thread count, which OpenBLAS's threaded LAPACK is
not.

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

from ._blas import matmul, one_blas_thread

__all__ = ["NumericalWarning", "one_blas_thread", "aligned_copy", "cholesky", "cho_solve", "solve_psd", "eigh",
           "clip_psd", "report_negative", "BLOCK", "MAX_JITTER"]

#: Largest matrix handed to LAPACK's potrf in one call (the blocked path's panel width).
BLOCK = 2048
#: Relative jitter (times the mean diagonal) beyond which a matrix is declared not PSD.
MAX_JITTER = 1e-4


class NumericalWarning(RuntimeWarning):
    """A matrix was changed to make a computation possible, or a result is less accurate than asked.

    Jitter added to a diagonal, clipped eigenvalues, an iteration stopped before its tolerance, a
    kernel whose lengthscale is far from the data's scale; the message says how much."""


def aligned_copy(A, order="F", align=64):
    """A copy of ``A`` in a buffer whose start is ``align``-byte aligned.

    BLAS kernels may take different code paths (peeling, SIMD loads) depending on the alignment
    of the buffers they are handed; numpy buffers are only 16-byte aligned and the same array can
    land at different alignments from one call to the next. Handing LAPACK aligned copies removes
    that source of run-to-run variation (the larger one, threading, is :func:`one_blas_thread`'s).
    """
    A = np.asarray(A)
    itemsize = A.dtype.itemsize
    raw = np.empty(A.size * itemsize + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    out = raw[off:off + A.size * itemsize].view(A.dtype).reshape(A.shape, order=order)
    out[...] = A
    return out


def _potrf(D):
    """Lower Cholesky factor of a small symmetric block: LAPACK on one thread and an aligned buffer
    (bit-reproducible); ``(L, info)``."""
    F = aligned_copy(D, order="F")
    (potrf,) = scipy.linalg.get_lapack_funcs(("potrf",), (F,))
    with one_blas_thread():
        L, info = potrf(F, lower=1, clean=1, overwrite_a=1)
    return L, info


#: Rows per single-threaded triangular solve in the blocked factorisation's panel (fixed, so the
#: arithmetic does not depend on how many threads run the chunks).
_PANEL_ROWS = 1024


def _panel_solve(Ld, P):
    """``P ← P Ld⁻ᵀ`` in place (``X Ldᵀ = P ⇔ Ld Xᵀ = Pᵀ``): fixed chunks of rows, each a
    single-threaded TRSM, run on a thread pool. OpenBLAS's own threaded TRSM is not
    bit-reproducible (it gave different last bits from one call to the next)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def solve(s):
        chunk = np.asfortranarray(P[s:s + _PANEL_ROWS].T)
        P[s:s + _PANEL_ROWS] = scipy.linalg.solve_triangular(Ld, chunk, lower=True, overwrite_b=True,
                                                             check_finite=False).T

    starts = range(0, P.shape[0], _PANEL_ROWS)
    workers = min(len(starts), os.cpu_count() or 1)
    with one_blas_thread():
        if workers <= 1:
            for s in starts:
                solve(s)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(solve, starts))


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
            A[j0:, j0:j1] -= matmul(A[j0:, :j0], A[j0:j1, :j0].T)
        Ld, info = _potrf(A[j0:j1, j0:j1])
        if info:
            return j0 + int(info)
        A[j0:j1, j0:j1] = Ld
        if j1 < n:
            _panel_solve(Ld, A[j1:, j0:j1])
    for i0 in range(0, n, block):  # clear the strict upper triangle, block row by block row
        i1 = min(n, i0 + block)
        A[i0:i1, i1:] = 0
        A[i0:i1, i0:i1] = np.tril(A[i0:i1, i0:i1])
    return 0


def _factor(A, block):
    """Factor ``A`` (overwritten) in place; returns info as :func:`_factor_inplace`."""
    n = A.shape[0]
    if n <= block:
        L, info = _potrf(A)
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
    with one_blas_thread():  # threaded TRSV/TRSM with few right-hand sides is not bit-reproducible
        y = scipy.linalg.solve_triangular(U, B, lower=False, trans="T", overwrite_b=overwrite_b, check_finite=False)
        return scipy.linalg.solve_triangular(U, y, lower=False, trans="N", overwrite_b=True, check_finite=False)


def solve_psd(A, B, *, overwrite_a=False, jitter=True, what="the kernel matrix"):
    """``A⁻¹ B`` for symmetric positive (semi-)definite ``A`` via :func:`cholesky` (crash-safe,
    jitter with a warning when ``A`` is numerically singular)."""
    L, _ = cholesky(A, overwrite_a=overwrite_a, jitter=jitter, what=what, stacklevel=3)
    B = np.asarray(B)
    return cho_solve(L, B.astype(L.dtype, copy=False))


def eigh(A, *, subset_by_index=None, overwrite_a=False):
    """``scipy.linalg.eigh`` of a symmetric matrix (ascending) with one BLAS thread, on an aligned
    copy: repeated calls and any thread count agree bit for bit, and the multithreaded large-n
    crash cannot occur. ``overwrite_a`` is accepted for symmetry with scipy; ``A`` is never
    modified."""
    A = aligned_copy(A, order="F")  # bit-identical repeats (see aligned_copy); the copy is overwritten
    with one_blas_thread():  # deterministic (see one_blas_thread), and safe from the large-n crash
        return scipy.linalg.eigh(A, subset_by_index=subset_by_index, overwrite_a=True, check_finite=False)


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
    return matmul(U * w, U.T), w, U
