"""STKR's linear algebra: host and device array backends, the operator Ĝ = K(X̄, X̄)/N (streamed or
formed once within the budget), Nyström-started Rayleigh–Ritz eigenpairs, a Lanczos bound on λ_max and
preconditioned conjugate gradients.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import _linalg
from .._blas import matmul, one_blas_thread
from .._validation import is_jax_array
from ..kernels import Kernel
from ._access import KernelAccess, idx
from ._eigen import EIGH_MAX, top_eigensystem


class _HostLA:
    xp = np

    @staticmethod
    def mm(A, B):
        return matmul(A, B) if A.ndim == 2 and B.ndim == 2 else A @ B

    @staticmethod
    def orth(A):
        with one_blas_thread():  # threaded QR is not bit-reproducible (see ntkit._linalg)
            return np.linalg.qr(A)[0]

    @staticmethod
    def eigh(H):
        return _linalg.eigh(0.5 * (H + H.T))

    @staticmethod
    def solve_spd(A, B):
        with one_blas_thread():
            return np.linalg.solve(A, B)

    @staticmethod
    def pad(a, N):
        out = np.zeros((N,) + a.shape[1:], dtype=a.dtype)
        out[: a.shape[0]] = a
        return out

    @staticmethod
    def f64(a):
        return np.asarray(a, dtype=np.float64)

    @staticmethod
    def set_col(A, j, v):
        A[:, j] = v
        return A

    @staticmethod
    def out(a, dtype):
        return np.asarray(a, dtype=dtype)


class _JaxLA:
    def __init__(self, placement):
        import jax.numpy as jnp

        self.xp = jnp
        self.placement = placement

    def mm(self, A, B):
        return A @ B

    def orth(self, A):
        return self.xp.linalg.qr(A)[0]

    def eigh(self, H):
        return self.xp.linalg.eigh(0.5 * (H + H.T))

    def solve_spd(self, A, B):
        return self.xp.linalg.solve(A, B)

    def pad(self, a, N):
        xp = self.xp
        return xp.concatenate([a, xp.zeros((N - a.shape[0],) + a.shape[1:], dtype=a.dtype)])

    def set_col(self, A, j, v):
        return A.at[:, j].set(v)

    def f64(self, a):
        from .._device import to_device

        return to_device(a, self.placement, np.float64) if not is_jax_array(a) else a.astype(self.xp.float64)

    def out(self, a, dtype):
        return a.astype(dtype) if self.placement.jax_out else np.asarray(a, dtype=dtype)


class _Operator(NamedTuple):
    """Products with ``Ĝ = K(X̄, X̄)/N`` and its labeled blocks; float64 in and out (the kernel
    products themselves run in the data's dtype). ``P`` is the (N, n) injection of the labeled rows."""

    full: Callable    # v (N, t) → Ĝ v
    cols: Callable    # a (n, t) → Ĝ P a = K(X̄, X_l) a / N
    rows: Callable    # θ (N, t) → N Pᵀ Ĝ θ = K(X_l, X̄) θ
    ll: Callable      # a (n, t) → K(X_l, X_l) a
    at: Callable      # (Z, v) → K(X̄, Z) v, for points Z (Nyström extension)
    N: int
    n: int
    dense: bool


def _operator(kernel, Xbar, n, dtype, budget, la) -> _Operator:
    N = Xbar.shape[0]
    Xl = Xbar[:n]
    ntkit_kernel = isinstance(kernel, Kernel)
    acc = None if ntkit_kernel else KernelAccess(kernel, Xbar, memory_budget=budget, dtype=dtype)

    def kmv(A, Z, v):
        v = v.astype(dtype)
        if ntkit_kernel:
            from ..ops import kernel_matvec

            return la.f64(kernel_matvec(kernel, A, Z, v, memory_budget=budget))
        return la.f64(acc.matvec(A, Z, np.asarray(v)))

    dense = N * N * dtype.itemsize <= budget // 2
    if dense:  # the Gram matrix fits: form it once, every product is then a GEMV/GEMM
        if ntkit_kernel:
            from ..ops import gram

            G = gram(kernel, Xbar, memory_budget=budget // 2)
        else:
            G = acc.block(idx(np.arange(N)), idx(np.arange(N)))
        Gl = G[:, :n]

        def mm(M, v):
            return la.f64(la.mm(M, v.astype(dtype)))

        return _Operator(lambda v: mm(G, v) / N, lambda a: mm(Gl, a) / N, lambda t: mm(G[:n], t),
                         lambda a: mm(Gl[:n], a), lambda Z, v: kmv(Xbar, Z, v), N, n, True)
    return _Operator(lambda v: kmv(Xbar, Xbar, v) / N, lambda a: kmv(Xbar, Xl, a) / N,
                     lambda t: kmv(Xl, Xbar, t), lambda a: kmv(Xl, Xl, a), lambda Z, v: kmv(Xbar, Z, v), N, n,
                     False)


def _nystrom_start(op, kernel, Xbar, k, s, rng, la):
    """Orthonormal (N, k') basis and eigenvalue estimates from the top eigenpairs of a subsample:
    ``(λ, V, exact)``. With ``s ≥ N`` the subsample is X̄ itself, and up to ``EIGH_MAX`` points the
    pairs are exact (LAPACK ``eigh``)."""
    N = op.N
    seed = int(rng.integers(2**31))
    if s >= N:
        exact = N <= EIGH_MAX
        es = top_eigensystem(kernel, Xbar, min(k, N), method="eigh" if exact else "randomized", random_state=seed)
        return la.f64(es.eigenvalues), la.f64(es.eigenvectors), exact
    S = np.sort(rng.choice(N, size=s, replace=False))
    Xs = Xbar[S]
    es = top_eigensystem(kernel, Xs, min(k, s), random_state=seed)
    lam = la.f64(es.eigenvalues)
    keep = np.asarray(lam > 0)
    lam, U = lam[keep], la.f64(es.eigenvectors)[:, keep]
    # ψ_i on X̄ ∝ K(X̄, X_S) u_i: the Nyström extension of the subsample's eigenvectors
    V = la.orth(op.at(Xs, U))
    return lam, V, False


def _rayleigh_ritz(op, V, la):
    """Ritz pairs of Ĝ on span(V), largest first: (θ, Y, ĜY)."""
    xp = la.xp
    W = op.full(V)
    H = la.mm(V.T, W)
    w, Q = la.eigh(H)
    order = xp.argsort(w)[::-1]
    w, Q = w[order], Q[:, order]
    return w, la.mm(V, Q), la.mm(W, Q)


def _eigenpairs(op, kernel, Xbar, k, *, subsample, rng, la, refine, tol, maxiter, verbose, what, warn=True):
    """Approximate top-k eigenpairs of Ĝ, largest first: (λ (k',), V (N, k') orthonormal, history).

    ``refine``: subspace iterations with Rayleigh–Ritz until the relative eigen-residual
    ``‖Ĝv_i − θ_i v_i‖ / θ_1`` of the first ``k`` pairs is below ``tol`` (or ``maxiter``)."""
    xp = la.xp
    lam, V, exact = _nystrom_start(op, kernel, Xbar, k + (0 if op.N <= subsample else max(10, k // 2)),
                                   subsample, rng, la)
    history = []
    if exact:
        return lam[:k], V[:, :k], history
    if not refine:
        return lam, V, history
    for it in range(1, maxiter + 1):
        lam, Y, W = _rayleigh_ritz(op, V, la)       # Ritz pairs (lam, Y) on span(V), and W = Ĝ Y
        R = W[:, :k] - Y[:, :k] * lam[None, :k]
        res = float(xp.max(xp.sqrt(xp.sum(R * R, axis=0)))) / max(float(lam[0]), 1e-300)
        history.append(res)
        if verbose:
            print(f"stkr {what}: subspace iteration {it}: relative eigen-residual {res:.3e}")
        if res <= tol or it == maxiter:
            V = Y
            if res <= tol:
                break
        else:
            V = la.orth(W)                            # one step of subspace iteration
    else:
        if warn:
            warnings.warn(f"stkr: the top-{k} eigenpairs of K/N did not converge in maxiter={maxiter} subspace "
                          f"iterations (relative eigen-residual {history[-1]:.2e} > tol={tol:.1e}); the result "
                          "uses them as they are. Raise maxiter.", _linalg.NumericalWarning, stacklevel=4)
    return lam[:k], V[:, :k], history


#: Lanczos for λ_max(Ĝ): at most this many products with Ĝ, stopping at this relative accuracy.
LANCZOS_STEPS = 40


LANCZOS_RTOL = 1e-6


def _lambda_max(op, la):
    """``(lower, upper)`` bounds of λ_max(Ĝ) by Lanczos (full reorthogonalisation) from a fixed start
    (the constant vector plus a fixed-seed perturbation), so they depend on the data only: ``lower`` is
    the top Ritz value (≤ λ_max), ``upper`` adds its residual ``β_j |s_j|`` (the top Ritz value is
    within that of an eigenvalue, λ_max once the Ritz vector has converged). Stops when
    ``upper − lower ≤ LANCZOS_RTOL · lower``; one product with Ĝ per step."""
    xp = la.xp
    N = op.N
    steps = min(LANCZOS_STEPS, N)
    v = np.ones(N) + 0.1 * np.random.default_rng(0).standard_normal(N)
    Q = np.zeros((N, steps))
    Q[:, 0] = v / np.linalg.norm(v)
    Q = la.f64(Q)  # fixed shape: unused columns are 0 (one compiled product on a jax device)
    alphas, betas = [], []
    lower = upper = 0.0
    for j in range(steps):
        q = Q[:, j:j + 1]
        w = op.full(q)
        alphas.append(float(xp.sum(w * q)))
        for _ in range(2):  # full reorthogonalisation (twice is enough)
            w = w - la.mm(Q, la.mm(Q.T, w))
        b = float(xp.sqrt(xp.sum(w * w)))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        lower = float(theta[-1])
        upper = lower + b * abs(float(S[-1, -1]))
        if j + 1 == steps or b <= 1e-14 * max(lower, 1e-300) or upper - lower <= LANCZOS_RTOL * max(lower, 1e-300):
            break
        betas.append(b)
        Q = la.set_col(Q, j + 1, w[:, 0] / b)
    return lower, upper


def _pcg(apply, b, precond, tol, maxiter, la, *, on_negative=None, verbose=False, what="outer"):
    xp = la.xp
    x = xp.zeros_like(b)
    r = b
    z = precond(r)
    p = z
    rz = xp.sum(r * z, axis=0)
    bnorm = xp.sqrt(xp.sum(b * b, axis=0))
    bnorm = xp.where(bnorm > 0, bnorm, 1.0)
    history = []
    for it in range(1, maxiter + 1):
        Ap = apply(p)
        pAp = xp.sum(p * Ap, axis=0)
        if on_negative is not None and bool(xp.any((pAp <= 0) & (xp.sum(p * p, axis=0) > 0))):
            on_negative()
        a = xp.where(pAp > 0, rz / xp.where(pAp > 0, pAp, 1.0), 0.0)
        x = x + a * p
        r = r - a * Ap
        rel = float(xp.max(xp.sqrt(xp.sum(r * r, axis=0)) / bnorm))
        history.append(rel)
        if verbose:
            print(f"stkr {what} CG iteration {it}: relative residual {rel:.3e}")
        if rel <= tol:
            break
        z = precond(r)
        rz_new = xp.sum(r * z, axis=0)
        p = z + xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0) * p
        rz = rz_new
    return x, history
