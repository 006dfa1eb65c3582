"""The solvers' device path: kernel blocks, products, factorisations and CG on jax device arrays.

Everything here is a jit-compiled function of device-resident arrays. A solver's hot loop (an
EigenPro step, a CG iteration, a pass of kernel products over the data) is one call of such a
function: its inputs are already on the device, its outputs stay there, and nothing is copied to
the host until the solver reads one scalar per epoch or iteration (the loss it reports, with an
explicit ``jax.device_get``). Placement is decided by :mod:`ntkit._device`, not here.

Data are *prepared* once on the device (stationary kernels: centred on an anchor's mean and
divided by the lengthscale, as :mod:`ntkit.ops` does per call), their squared norms kept beside
them, and padded with zero rows to a whole number of blocks; padded rows carry a zero weight or
a zero mask, so they add nothing. Block sizes come from the device's memory budget.

Products use ``precision=HIGHEST`` (true float32 / float64; never TF32), so the device path
computes the same maths as the numpy path, in another summation order.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import numpy as np

from .._linalg import MAX_JITTER, NumericalWarning

__all__ = ["DeviceKernel", "Rows", "device_cholesky", "device_cg", "eig_top"]


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def mm(a, b):
    jax, jnp = _jax()
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


class _Key:
    """Hashable stand-in for a kernel in jit caches: equal when the static parameters are equal."""

    __slots__ = ("kernel", "params", "key")

    def __init__(self, kernel, params):
        self.kernel, self.params = kernel, params
        arrays = tuple((k, np.asarray(v).tobytes()) for k, v in sorted(params.items()) if isinstance(v, np.ndarray))
        self.key = (kernel._static_key(params), arrays)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Key) and self.key == other.key


class Rows(NamedTuple):
    """Prepared data rows on the device, padded to ``blocks * block`` rows.

    ``P`` (blocks·block, d) prepared rows, ``s`` their squared norms, ``mask`` 1 for real rows
    and 0 for padding (data dtype), ``n`` the number of real rows, ``block`` the block size.
    """

    P: Any
    s: Any
    mask: Any
    n: int
    block: int

    def blocked(self):
        """(blocks, block, d), (blocks, block), (blocks, block) views for ``lax.scan``."""
        nb = self.P.shape[0] // self.block
        return (self.P.reshape(nb, self.block, -1), self.s.reshape(nb, self.block),
                self.mask.reshape(nb, self.block))


@functools.lru_cache(maxsize=32)
def _prepare_fn(kk):
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params
    return jax.jit(lambda anchor, A: kernel._prepare(jnp, anchor, A, params)[1])


class DeviceKernel:
    """An ntkit kernel's block formula on device arrays, with its data preparation fixed by an anchor.

    ``anchor`` (rows on the device) fixes the preparation (the centring of stationary kernels), so
    that every block of one solver run uses the same prepared coordinates.
    """

    def __init__(self, kernel, anchor, dtype):
        _, jnp = _jax()
        self.kernel = kernel
        self.params = kernel._validated()
        self.n_features = int(anchor.shape[1])
        self.dtype = np.dtype(dtype)
        self.key = _Key(kernel, self.params)
        # the anchor's own preparation checks the data's range once (outside jit)
        self.anchor = jnp.asarray(anchor, dtype=self.dtype)
        kernel._prepare(jnp, self.anchor, None, self.params)

    def prepare(self, A):
        """Prepared rows of ``A`` (a device array) in this run's coordinates."""
        _, jnp = _jax()
        return _prepare_fn(self.key)(self.anchor, jnp.asarray(A, dtype=self.dtype))

    def rows(self, A, block=None) -> Rows:
        """Prepared, normed and padded rows of ``A`` (device array), in blocks of ``block`` rows."""
        _, jnp = _jax()
        P = self.prepare(A)
        n = int(P.shape[0])
        block = max(1, n if block is None else min(int(block), max(n, 1)))
        pad = (-n) % block
        if pad:
            P = jnp.concatenate([P, jnp.zeros((pad, P.shape[1]), P.dtype)])
        s = jnp.sum(P * P, axis=1)
        mask = (jnp.arange(n + pad) < n).astype(self.dtype)
        return Rows(P, s, mask, n, block)

    def block(self, A, sA, B, sB):
        """K(A, B) from prepared rows and their squared norms (traceable: use inside jit)."""
        _, jnp = _jax()
        return self.kernel._block_rows(jnp, A, B, mm(A, B.T), sA, sB, self.n_features, self.params)

    def diag(self, s):
        """k(x, x) from squared norms of prepared rows (traceable)."""
        _, jnp = _jax()
        return self.kernel._diag(jnp, s, self.n_features, self.params)


# ----------------------------------------------------------------------------- products
@functools.lru_cache(maxsize=64)
def _matvec_fn(kk, n_features):
    """``K(A, Rows) @ V`` with a scan over the column blocks of ``Rows`` (V padded like the rows)."""
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def f(A, sA, Pb, sb, mb, Vb):
        def body(acc, blk):
            Pj, sj, mj, Vj = blk
            K = kernel._block_rows(jnp, A, Pj, mm(A, Pj.T), sA, sj, n_features, params)
            return acc + mm(K, Vj * mj[:, None]), None

        acc0 = jnp.zeros((A.shape[0], Vb.shape[2]), dtype=A.dtype)
        return jax.lax.scan(body, acc0, (Pb, sb, mb, Vb))[0]

    return jax.jit(f)


def kmv(dk: DeviceKernel, A, sA, rows: Rows, V):
    """``K(A, rows) @ V`` for prepared ``A`` (a, d) and ``V`` (rows.n or padded, t); O(a·block) memory."""
    _, jnp = _jax()
    npad = rows.P.shape[0]
    if V.shape[0] != npad:
        V = jnp.concatenate([V, jnp.zeros((npad - V.shape[0],) + V.shape[1:], V.dtype)])
    Pb, sb, mb = rows.blocked()
    Vb = V.reshape(Pb.shape[0], rows.block, -1)
    return _matvec_fn(dk.key, dk.n_features)(A, sA, Pb, sb, mb, Vb)


def kmv_rows(dk: DeviceKernel, A, rows: Rows, V, budget):
    """``K(A, rows) @ V`` for raw device rows ``A`` of any length: row blocks sized by ``budget``."""
    _, jnp = _jax()
    itemsize = dk.dtype.itemsize
    br = max(1, int(budget // (3 * itemsize * max(rows.block, 1))))
    out = []
    for i in range(0, A.shape[0], br):
        Ai = dk.prepare(A[i:i + br])
        out.append(kmv(dk, Ai, jnp.sum(Ai * Ai, axis=1), rows, V))
    if not out:
        return jnp.zeros((0, V.shape[1]), dk.dtype)
    return out[0] if len(out) == 1 else jnp.concatenate(out)


def col_block(n_rows, n_cols, itemsize, budget, minimum=256):
    """Columns per block so that an (n_rows × block) kernel block and its temporaries fit ``budget``."""
    b = int(budget // (3 * itemsize * max(int(n_rows), 1)))
    return int(max(1, min(max(int(n_cols), 1), max(minimum, b))))


# ----------------------------------------------------------------------------- factorisations
def device_cholesky(A, *, what="the kernel matrix", stacklevel=3):
    """Lower Cholesky factor of a symmetric positive definite device matrix, with the jitter policy of
    :func:`ntkit._linalg.cholesky` (ε·mean(diag), ε from 10·eps rising tenfold to
    :data:`~ntkit._linalg.MAX_JITTER`, a :class:`~ntkit.NumericalWarning` saying how much).
    Returns ``(L, added)``; one scalar is read back per attempt."""
    jax, jnp = _jax()
    n = A.shape[0]
    if n == 0:
        return A, 0.0
    d = jnp.diagonal(A)
    scale = float(jax.device_get(jnp.mean(jnp.abs(d))))
    if not np.isfinite(scale):
        raise ValueError(f"{what} has NaN or infinite diagonal entries; check the inputs and the kernel.")
    eps = float(np.finfo(np.dtype(A.dtype)).eps)
    rel, added = 10 * eps, 0.0
    while True:
        L = jnp.linalg.cholesky(A if not added else A + added * jnp.eye(n, dtype=A.dtype))
        if bool(jax.device_get(jnp.all(jnp.isfinite(jnp.diagonal(L))))):
            break
        if rel > MAX_JITTER or scale == 0.0:
            raise np.linalg.LinAlgError(
                f"{what} ({n} × {n}, {np.dtype(A.dtype)}) is not positive definite on the device"
                f"{f' (jitter {added:.3g} added)' if added else ''}. Add a ridge / regularisation, remove duplicate "
                "points, or use a positive semi-definite kernel.")
        added = rel * scale
        rel *= 10
    if added:
        warnings.warn(f"{what} ({n} × {n}, {np.dtype(A.dtype)}) was not numerically positive definite; added jitter "
                      f"{added:.3g} to its diagonal ({added / scale:.1e} × its mean diagonal {scale:.3g}).",
                      NumericalWarning, stacklevel=stacklevel)
    return L, float(added)


def tri_inv(L, lower=True):
    """Explicit inverse of a triangular device matrix (its products then run as GEMV/GEMM at memory
    speed; triangular inversion is as accurate as a triangular solve, Higham §8)."""
    jax, jnp = _jax()
    eye = jnp.eye(L.shape[0], dtype=L.dtype)
    return jax.scipy.linalg.solve_triangular(L, eye, lower=lower)


def eig_top(K, k, rng, method="auto", eigh_max=4000):
    """Top-``k`` eigenpairs (descending) of a symmetric device matrix, as ``_eig_of_gram`` does on the
    host: dense ``eigh`` up to ``eigh_max`` rows, else subspace iteration from the same random start
    (drawn by ``rng`` on the host and sent once)."""
    jax, jnp = _jax()
    s = K.shape[0]
    k = min(k, s)
    if method == "auto":
        method = "eigh" if s <= eigh_max else "randomized"
    if method == "eigh" and next(iter(K.devices())).platform == "cpu":
        # jax's CPU device shares host memory: LAPACK's subset eigensolver (as the host path) is
        # much faster there than XLA's full eigh
        from .. import _linalg

        w, V = _linalg.eigh(np.asarray(K), subset_by_index=[s - k, s - 1])
        dev = next(iter(K.devices()))
        w, V = jax.device_put(w, dev), jax.device_put(V, dev)
    elif method == "eigh":
        w, V = jnp.linalg.eigh(K)
        w, V = w[s - k:], V[:, s - k:]
    elif method == "randomized":
        kk = min(s, k + 20)
        Q = jnp.asarray(rng.standard_normal((s, kk)).astype(np.dtype(K.dtype)))
        Q = jax.device_put(Q, next(iter(K.devices())))
        for _ in range(4):
            Q, _ = jnp.linalg.qr(mm(K, Q))
        B = mm(Q.T, mm(K, Q))
        w, U = jnp.linalg.eigh((B + B.T) / 2)
        V = mm(Q, U)
        w, V = w[-k:], V[:, -k:]
    else:
        from .._validation import InvalidParameterError

        raise InvalidParameterError(f"method must be 'auto', 'eigh' or 'randomized'; got {method!r}.")
    return w[::-1], V[:, ::-1]


# ----------------------------------------------------------------------------- conjugate gradients
@functools.lru_cache(maxsize=8)
def _cg_update():
    jax, jnp = _jax()

    def first(b, r, rs):
        return b, r, rs

    def update(x, r, p, rs, Ap, bnorm):
        denom = jnp.sum(p * Ap, axis=0)
        a = jnp.where(denom > 0, rs / jnp.where(denom > 0, denom, 1), 0.0)
        x = x + a * p
        r = r - a * Ap
        rs_new = jnp.sum(r * r, axis=0)
        rel = jnp.max(jnp.sqrt(rs_new) / bnorm)
        p = r + (rs_new / jnp.where(rs > 0, rs, 1)) * p
        return x, r, p, rs_new, rel

    return jax.jit(update)


def device_cg(matvec, B, *, tol, maxiter, precond=None, verbose=False, label="CG"):
    """Block conjugate gradients (each column its own CG) for an SPD ``matvec`` on device arrays.

    One jitted update per iteration and one scalar read back (the largest relative residual),
    for the stopping rule and the history. Returns ``(X, history)``.
    """
    jax, jnp = _jax()
    bnorm = jnp.sqrt(jnp.sum(B * B, axis=0))
    bnorm = jnp.where(bnorm == 0, 1.0, bnorm)
    x = jnp.zeros_like(B)
    r = B
    p = r if precond is None else precond(r)
    rs = jnp.sum(r * (p if precond is not None else r), axis=0)
    upd = _cg_update()
    history = []
    for it in range(1, maxiter + 1):
        Ap = matvec(p)
        if precond is None:
            x, r, p, rs, rel = upd(x, r, p, rs, Ap, bnorm)
        else:  # preconditioned variant (kept in Python: it is only used with small preconditioners)
            denom = jnp.sum(p * Ap, axis=0)
            a = jnp.where(denom > 0, rs / jnp.where(denom > 0, denom, 1), 0.0)
            x = x + a * p
            r = r - a * Ap
            z = precond(r)
            rs_new = jnp.sum(r * z, axis=0)
            rel = jnp.max(jnp.sqrt(jnp.sum(r * r, axis=0)) / bnorm)
            p = z + (rs_new / jnp.where(rs > 0, rs, 1)) * p
            rs = rs_new
        rel = float(jax.device_get(rel))
        history.append(rel)
        if verbose:
            print(f"{label} iteration {it}: relative residual {rel:.3e}")
        if rel < tol:
            break
    return x, history
