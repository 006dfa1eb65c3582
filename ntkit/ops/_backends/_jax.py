"""The jax backend: jit-compiled blocks, padded to a fixed size so ragged edges never recompile."""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from .._blocks import plan_blocks


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def x64_scope(dtype):
    """Enable 64-bit jax locally when the data are float64 (dtype in = dtype out)."""
    jax, _ = _jax()
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _mm(jnp, A, B):
    import jax

    return jnp.matmul(A, B, precision=jax.lax.Precision.HIGHEST)


@functools.lru_cache(maxsize=64)
def _block_fn(kk, n_features):
    # ``kk.key`` is the kernel's static summary; ``kk.kernel`` rides along for the formula.
    jax, jnp = _jax()
    kernel, params = kk.kernel, dict(kk.key[1:])

    def block(X, Z):
        sx = jnp.sum(X * X, axis=1)
        sz = jnp.sum(Z * Z, axis=1)
        return kernel._block(jnp, _mm(jnp, X, Z.T), sx, sz, n_features, params)

    return jax.jit(block)


@functools.lru_cache(maxsize=64)
def _matvec_fn(kk, n_features, sym):
    jax, jnp = _jax()
    kernel, params = kk.kernel, dict(kk.key[1:])

    def mv(X, Zb, vb, row0):
        sx = jnp.sum(X * X, axis=1)
        rows = row0 + jnp.arange(X.shape[0])
        bc = Zb.shape[1]
        dvals = kernel._diag(jnp, sx, n_features, params) if sym else None

        def body(acc, zv):
            j, Zj, vj = zv
            szj = jnp.sum(Zj * Zj, axis=1)
            K = kernel._block(jnp, _mm(jnp, X, Zj.T), sx, szj, n_features, params)
            if sym:  # K(X, X): the exact diagonal, not the rounded expansion
                cols = j * bc + jnp.arange(bc)
                K = jnp.where(rows[:, None] == cols[None, :], dvals[:, None].astype(K.dtype), K)
            return acc + _mm(jnp, K, vj), None

        acc0 = jnp.zeros((X.shape[0], vb.shape[2]), dtype=X.dtype)
        return jax.lax.scan(body, acc0, (jnp.arange(Zb.shape[0]), Zb, vb))[0]

    return jax.jit(mv)


class _Key:
    """Hashable wrapper so lru_cache keys on the kernel's parameters, not its identity."""

    __slots__ = ("kernel", "key")

    def __init__(self, kernel, key):
        self.kernel, self.key = kernel, key

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Key) and self.key == other.key


def _pad_rows(jnp, A, size):
    extra = size - A.shape[0]
    return A if extra == 0 else jnp.concatenate([A, jnp.zeros((extra,) + A.shape[1:], A.dtype)])


def gram(kernel, params, X, Z, n_features, memory_budget):
    _, jnp = _jax()
    sym = Z is None
    Zs = X if sym else Z
    n, m = X.shape[0], Zs.shape[0]
    if n == 0 or m == 0:
        return jnp.zeros((n, m), dtype=X.dtype)
    fn = _block_fn(_Key(kernel, kernel._static_key(params)), n_features)
    plan = plan_blocks(n, m, n_features=X.shape[1], itemsize=X.dtype.itemsize, memory_budget=memory_budget)
    br = plan.block_rows
    if plan.block_cols < m:  # very small budgets: columns too
        rows = [jnp.concatenate([fn(X[i:i + br], Zs[j:j + plan.block_cols]) for j in range(0, m, plan.block_cols)], axis=1)
                for i in range(0, n, br)]
    else:
        rows = [fn(_pad_rows(jnp, X[i:i + br], br), Zs)[: min(br, n - i)] for i in range(0, n, br)]
    out = rows[0] if len(rows) == 1 else jnp.concatenate(rows, axis=0)
    if sym:
        sx = jnp.sum(X * X, axis=1)
        idx = jnp.arange(n)
        out = out.at[idx, idx].set(kernel._diag(jnp, sx, n_features, params).astype(out.dtype))
    return out


def matvec(kernel, params, X, Z, v, n_features, memory_budget):
    """``K(X, Z) @ v``; ``Z=None`` means Z = X (then the diagonal is the kernel's exact one)."""
    _, jnp = _jax()
    sym = Z is None
    Z = X if sym else Z
    n, m = X.shape[0], Z.shape[0]
    t = v.shape[1]
    if n == 0 or m == 0:
        return jnp.zeros((n, t), dtype=X.dtype)
    fn = _matvec_fn(_Key(kernel, kernel._static_key(params)), n_features, sym)
    plan = plan_blocks(n, m, n_features=X.shape[1], n_targets=t, itemsize=X.dtype.itemsize,
                       memory_budget=memory_budget)
    br, bc = plan.block_rows, min(plan.block_cols, 4096)
    nb = -(-m // bc)
    # Padded rows of Z meet zero rows of v, so they add nothing.
    Zb = _pad_rows(jnp, Z, nb * bc).reshape(nb, bc, Z.shape[1])
    vb = _pad_rows(jnp, v, nb * bc).reshape(nb, bc, t)
    parts = [fn(_pad_rows(jnp, X[i:i + br], br), Zb, vb, i)[: min(br, n - i)] for i in range(0, n, br)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def batched_gram(A, B, reduce):
    _, jnp = _jax()
    Bs = A if B is None else B
    import jax

    eq = "bnp,bmp->nm" if reduce == "sum" else "bnp,bmp->bnm"
    return jnp.einsum(eq, A, Bs, precision=jax.lax.Precision.HIGHEST)
