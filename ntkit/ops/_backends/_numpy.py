"""The numpy backend: blocked BLAS products and the kernel's own formula.

It is the reference the faster paths are tested against (itself tested
against the direct-difference oracles in ``tests/_reference.py``).
"""

from __future__ import annotations

import numpy as np

from ..._blas import matmul
from .._blocks import plan_blocks


def sqnorms(X):
    return np.einsum("ij,ij->i", X, X)


#: Squared distances below ``CANCELLATION_GUARD * n_features * eps * (|x|^2 + |z|^2)`` are
#: recomputed from direct differences: there the expansion |x|^2 + |z|^2 - 2<x,z> has lost
#: most of its digits (near-duplicate points; the diagonal of K(X, X)).
CANCELLATION_GUARD = 16.0

#: Blocks larger than this gain nothing (the BLAS product is already efficient) and fall out of cache.
MAX_BLOCK_BYTES = 32 * 2**20


def _capped(memory_budget):
    from ..._config import resolve_budget

    return min(resolve_budget(memory_budget), MAX_BLOCK_BYTES)


def block(kernel, params, X, Z, sx, sz, n_features):
    """One Gram block from the prepared rows ``X`` and ``Z`` and their squared norms."""
    dot = matmul(X, Z.T)
    if kernel.family != "stationary":
        return kernel._block_rows(np, X, Z, dot, sx, sz, n_features, params)
    d2 = np.add.outer(sx, sz)
    thresh = d2 * (CANCELLATION_GUARD * max(X.shape[1], 1) * np.finfo(X.dtype).eps)
    dot *= -2
    d2 += dot
    np.maximum(d2, 0, out=d2)
    ii, jj = np.nonzero(d2 <= thresh)
    if ii.size:
        diff = X[ii] - Z[jj]
        d2[ii, jj] = np.einsum("ij,ij->i", diff, diff)
    return kernel._from_sqdist(np, d2, params)


def gram(kernel, params, X, Z, n_features, memory_budget):
    sym = Z is None
    Zs = X if sym else Z
    n, m = X.shape[0], Zs.shape[0]
    out = np.empty((n, m), dtype=X.dtype)
    if n == 0 or m == 0:
        return out
    sx = sqnorms(X)
    sz = sx if sym else sqnorms(Zs)
    plan = plan_blocks(n, m, n_features=X.shape[1], itemsize=X.itemsize, memory_budget=_capped(memory_budget),
                       square=sym, entry_copies=kernel._workspace_copies(params))
    br, bc = plan.block_rows, plan.block_cols
    for i0 in range(0, n, br):
        ri = slice(i0, min(i0 + br, n))
        for j0 in range(i0 if sym else 0, m, bc):
            cj = slice(j0, min(j0 + bc, m))
            blk = block(kernel, params, X[ri], Zs[cj], sx[ri], sz[cj], n_features)
            out[ri, cj] = blk
            if sym and j0 != i0:
                out[cj, ri] = blk.T
    if sym:
        np.fill_diagonal(out, kernel._diag_rows(np, X, sx, n_features, params))
    return out


def matvec(kernel, params, X, Z, v, n_features, memory_budget):
    """``K(X, Z) @ v``; ``Z=None`` means Z = X (then the diagonal is the kernel's exact one)."""
    sym = Z is None
    Z = X if sym else Z
    n, m = X.shape[0], Z.shape[0]
    t = v.shape[1]
    out = np.zeros((n, t), dtype=X.dtype)
    if n == 0 or m == 0:
        return out
    sx = sqnorms(X)
    sz = sx if sym else sqnorms(Z)
    dvals = kernel._diag_rows(np, X, sx, n_features, params) if sym else None
    plan = plan_blocks(n, m, n_features=X.shape[1], n_targets=t, itemsize=X.itemsize,
                       memory_budget=_capped(memory_budget), entry_copies=kernel._workspace_copies(params))
    br, bc = plan.block_rows, plan.block_cols
    for i0 in range(0, n, br):
        ri = slice(i0, min(i0 + br, n))
        acc = out[ri]
        for j0 in range(0, m, bc):
            cj = slice(j0, min(j0 + bc, m))
            blk = block(kernel, params, X[ri], Z[cj], sx[ri], sz[cj], n_features)
            if sym:
                lo, hi = max(ri.start, cj.start), min(ri.stop, cj.stop)
                if lo < hi:
                    idx = np.arange(lo, hi)
                    blk[idx - ri.start, idx - cj.start] = dvals[idx]
            acc += matmul(blk, v[cj])
    return out


def batched_gram(A, B, reduce):
    sym = B is None
    Bs = A if sym else B
    if reduce == "sum":
        b, n, p = A.shape
        m = Bs.shape[1]
        if b == 0 or n == 0 or m == 0:
            return np.zeros((n, m), dtype=A.dtype)
        # Sum_b A_b B_b^T is one product of the (n, b*p) and (m, b*p) unfoldings.
        A2 = np.ascontiguousarray(A.transpose(1, 0, 2)).reshape(n, b * p)
        if sym:
            return matmul(A2, A2.T)
        B2 = np.ascontiguousarray(Bs.transpose(1, 0, 2)).reshape(m, b * p)
        return matmul(A2, B2.T)
    out = np.empty((A.shape[0], A.shape[1], Bs.shape[1]), dtype=np.result_type(A, Bs))
    for i in range(A.shape[0]):
        out[i] = matmul(A[i], Bs[i].T)
    return out
